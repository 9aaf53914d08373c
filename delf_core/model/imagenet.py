"""Loads Keras' ImageNet ResNet-50 HDF5 weights into the backbone, stem included."""

from __future__ import annotations

import re

import h5py
import numpy as np

from delf_core import storage
from delf_core.model.resnet50 import ResNet50

# Our (Caffe-style) names -> keras.applications' names, e.g. res2a_branch2b ->
# conv2_block1_2_conv; the DELF tarball's file may use either naming.
_BLOCK_LAYER = re.compile(r"^(res|bn)(\d)([a-z])_branch(2a|2b|2c|1)$")
_BRANCH_INDEX = {"1": 0, "2a": 1, "2b": 2, "2c": 3}
_STEM = {"conv1": "conv1_conv", "bn_conv1": "conv1_bn"}


def applications_name(name: str) -> str:
    """The keras.applications name of one of our backbone layers (`bn2a_branch1` -> ...)."""
    if name in _STEM:
        return _STEM[name]
    match = _BLOCK_LAYER.match(name)
    if not match:
        raise ValueError(f"not a ResNet-50 backbone layer name: {name!r}")
    kind, stage, letter, branch = match.groups()
    block = ord(letter) - ord("a") + 1
    suffix = "conv" if kind == "res" else "bn"
    return f"conv{stage}_block{block}_{_BRANCH_INDEX[branch]}_{suffix}"


def _attribute_list(group: h5py.Group, name: str) -> list[str] | None:
    # Keras splits attributes over 64 KiB into name0, name1, ...
    if name in group.attrs:
        chunks = [group.attrs[name]]
    elif f"{name}0" in group.attrs:
        chunks, i = [], 0
        while f"{name}{i}" in group.attrs:
            chunks.append(group.attrs[f"{name}{i}"])
            i += 1
    else:
        return None
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for c in chunks for v in c]


def _short_name(weight_name: str) -> str:
    return weight_name.rsplit("/", 1)[-1].split(":", 1)[0]


def _read_layer(root: h5py.Group, file_layer: str, layer, h5_path: str) -> list[np.ndarray]:
    group = root[file_layer]
    names = _attribute_list(group, "weight_names") or []
    variables = layer.weights
    if len(names) != len(variables):
        raise ValueError(
            f"ImageNet weights file {h5_path}: layer {file_layer!r} holds {len(names)} "
            f"weights, backbone layer {layer.name!r} has {len(variables)}; "
            "is this a ResNet-50 weights file?"
        )
    expected = [v.name for v in variables]
    short = [_short_name(n) for n in names]
    if sorted(short) == sorted(expected):
        names = [names[short.index(e)] for e in expected]
    # Otherwise keep the file's order, as Keras' own HDF5 loader does.
    values = []
    for name, variable in zip(names, variables, strict=True):
        value = np.asarray(group[name])
        if tuple(value.shape) != tuple(variable.shape):
            raise ValueError(
                f"ImageNet weights file {h5_path}: {file_layer}/{name} has shape "
                f"{tuple(value.shape)}, backbone layer {layer.name!r} expects "
                f"{tuple(variable.shape)} for {variable.name!r}; "
                "is this a ResNet-50 weights file?"
            )
        values.append(value)
    return values


def _weights_root(handle: h5py.File, h5_path: str) -> h5py.Group:
    if _attribute_list(handle, "layer_names") is not None:
        return handle
    # A whole model saved as HDF5 keeps its weights in this group.
    if "model_weights" in handle and _attribute_list(handle["model_weights"], "layer_names"):
        return handle["model_weights"]
    raise ValueError(
        f"{h5_path} is not a Keras HDF5 weights file (no 'layer_names' attribute); "
        "expected resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    )


def load_imagenet_weights(backbone: ResNet50, h5_path: str) -> dict[str, str]:
    """Loads every conv and BN layer of `backbone` from a Keras ResNet-50 HDF5 file.

    Reads the legacy Keras weights layout (root attribute `layer_names`, one group per
    layer with attribute `weight_names`) of
    `resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5`, named either as our layers
    (`res2a_branch2a`, `bn_conv1`) or as keras.applications' (`conv2_block1_1_conv`,
    `conv1_bn`). Unlike the original `restore_weights`, the stem (`conv1`, `bn_conv1`) is
    loaded too, and no training step is needed first: the backbone is built here if it
    is not. Nothing is assigned unless the whole file fits.

    Args:
        backbone: The backbone to fill.
        h5_path: Local path or URL of the HDF5 file.

    Returns:
        For each backbone layer name, the name of the file's layer it was loaded from.

    Raises:
        ValueError: The file is not an HDF5 weights file, lacks a layer, or a weight's
            shape does not fit (e.g. a file from another architecture).
    """
    if not backbone.built:
        backbone.build((None, None, None, 3))
    fs, path = storage.resolve(h5_path)
    try:
        with fs.open(path, "rb") as stream, h5py.File(stream, "r") as handle:
            root = _weights_root(handle, h5_path)
            available = set(_attribute_list(root, "layer_names"))
            loaded, values = {}, {}
            for name, layer in backbone.weight_layers().items():
                candidates = (name, applications_name(name))
                file_layer = next((c for c in candidates if c in available and c in root), None)
                if file_layer is None:
                    raise ValueError(
                        f"ImageNet weights file {h5_path} has no layer {name!r} "
                        f"(nor {candidates[1]!r}); is this a ResNet-50 weights file?"
                    )
                values[name] = _read_layer(root, file_layer, layer, h5_path)
                loaded[name] = file_layer
    except OSError as error:
        raise ValueError(
            f"{h5_path} is not a readable HDF5 weights file ({error}); "
            "expected resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
        ) from error
    for name, layer in backbone.weight_layers().items():
        for variable, value in zip(layer.weights, values[name], strict=True):
            variable.assign(value)
    return loaded
