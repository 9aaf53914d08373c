"""SavedModel modules with the original exporters' signatures, and `export_model`."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile

import tensorflow as tf

from delf_core import __version__, storage
from delf_core.export.config import GLOBAL, MANIFEST_NAME, ExportConfig
from delf_core.export.extraction import extract_global, extract_local_and_global
from delf_core.export.restore import restore_feature_model
from delf_core.model import DelfModel

log = logging.getLogger(__name__)

_IMAGE = tf.TensorSpec([None, None, 3], tf.uint8, name="input_image")
_SCALES = tf.TensorSpec([None], tf.float32, name="input_scales")
_MAX_FEATURE_NUM = tf.TensorSpec([], tf.int32, name="input_max_feature_num")
_ABS_THRES = tf.TensorSpec([], tf.float32, name="input_abs_thres")
_GLOBAL_SCALES_IND = tf.TensorSpec([None], tf.int32, name="input_global_scales_ind")


class ExportExistsError(FileExistsError):
    """The export path exists already; exports are never overwritten."""


class _FeatureModule(tf.Module):
    """Holds the feature layers' weights and runs `DelfModel.extract`.

    The Keras model itself is not tracked: saving it would add a default signature
    that calls it with classifiers it does not have. Its layers carry every weight.
    """

    def __init__(self, model: DelfModel, name: str):
        super().__init__(name=name)
        self._layers = model.feature_layers()
        self._extract_fn = model.extract
        self._depths = {
            "local_depth": model.local_descriptor_dim,
            "global_depth": model.global_descriptor_dim,
        }


class LocalFeatureModule(_FeatureModule):
    """`export_local_model`: local features of an image pyramid."""

    def __init__(self, model: DelfModel, config: ExportConfig, name="local_feature_module"):
        super().__init__(model, name=name)
        self._stride = float(config.feature_stride)
        self._iou = config.iou

    def _extract(self, image, scales, max_feature_num, abs_thres, global_scales_ind=None):
        return extract_local_and_global(
            self._extract_fn, image, scales, max_feature_num, abs_thres, global_scales_ind,
            stride=self._stride, iou=self._iou, **self._depths,
        )  # fmt: skip

    @tf.function(input_signature=[_IMAGE, _SCALES, _MAX_FEATURE_NUM, _ABS_THRES])
    def ExtractFeatures(self, input_image, input_scales, input_max_feature_num, input_abs_thres):  # noqa: N802
        return self._extract(input_image, input_scales, input_max_feature_num, input_abs_thres)


class LocalAndGlobalFeatureModule(LocalFeatureModule):
    """`export_local_and_global_model`: local features and per-scale global descriptors."""

    def __init__(self, model: DelfModel, config: ExportConfig):
        super().__init__(model, config, name="local_and_global_feature_module")

    @tf.function(
        input_signature=[_IMAGE, _SCALES, _MAX_FEATURE_NUM, _ABS_THRES, _GLOBAL_SCALES_IND]
    )
    def ExtractFeatures(  # noqa: N802
        self, input_image, input_scales, input_max_feature_num, input_abs_thres,
        input_global_scales_ind,
    ):  # fmt: skip
        return self._extract(
            input_image, input_scales, input_max_feature_num, input_abs_thres,
            input_global_scales_ind,
        )  # fmt: skip


class GlobalFeatureModule(_FeatureModule):
    """`export_global_model`: global descriptors at chosen scales, or at fixed ones."""

    def __init__(self, model: DelfModel, config: ExportConfig):
        super().__init__(model, name="global_feature_module")
        self._pool_type = config.multi_scale_pool_type
        self._normalize = config.normalize_global_descriptor
        self._output = "global_descriptors" if self._pool_type == "None" else "global_descriptor"
        self._fixed_scales = config.input_scales_list

    def _extract(self, image, scales, scales_ind):
        descriptors = extract_global(
            self._extract_fn,
            image,
            scales,
            scales_ind,
            global_depth=self._depths["global_depth"],
            pool_type=self._pool_type,
            normalize=self._normalize,
        )
        return {self._output: descriptors}

    @tf.function(input_signature=[_IMAGE, _SCALES, _GLOBAL_SCALES_IND])
    def ExtractFeatures(self, input_image, input_scales, input_global_scales_ind):  # noqa: N802
        return self._extract(input_image, input_scales, input_global_scales_ind)

    @property
    def serving_function(self):
        return self.ExtractFeatures


class FixedScalesGlobalFeatureModule(GlobalFeatureModule):
    """`export_global_model --input_scales_list=...`: the signature takes only the image."""

    @tf.function(input_signature=[_IMAGE])
    def ExtractFeaturesFixedScales(self, input_image):  # noqa: N802
        scales = tf.constant(self._fixed_scales, tf.float32)
        return self._extract(input_image, scales, tf.range(tf.shape(scales)[0]))

    @property
    def serving_function(self):
        return self.ExtractFeaturesFixedScales


def _module(model: DelfModel, config: ExportConfig) -> tuple[tf.Module, object]:
    if config.kind == GLOBAL:
        fixed = config.input_scales_list is not None
        module = (FixedScalesGlobalFeatureModule if fixed else GlobalFeatureModule)(model, config)
        return module, module.serving_function
    if config.has_global:
        module = LocalAndGlobalFeatureModule(model, config)
    else:
        module = LocalFeatureModule(model, config)
    return module, module.ExtractFeatures


def _manifest(config: ExportConfig) -> dict:
    return {
        "step": f"export_{config.kind}_model",
        "delf_version": __version__,
        "params": dataclasses.asdict(config),
        "checkpoint": tf.train.latest_checkpoint(config.ckpt_path)
        if tf.io.gfile.isdir(config.ckpt_path)
        else config.ckpt_path,
    }


def _write_manifest(folder: str, manifest: dict) -> None:
    with tf.io.gfile.GFile(os.path.join(folder, MANIFEST_NAME), "w") as handle:
        handle.write(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def _save(module: tf.Module, path: str, serving) -> None:
    # Saving warns once per Keras input name it renames (hundreds of them): noise.
    tf_logger = logging.getLogger("tensorflow")
    level = tf_logger.level
    tf_logger.setLevel(logging.ERROR)
    try:
        tf.saved_model.save(module, path, signatures={"serving_default": serving})
    finally:
        tf_logger.setLevel(level)


def export_model(config: ExportConfig) -> str:
    """Restores the checkpoint and writes the SavedModel of `config.kind`.

    A local export is written under a temporary name and renamed, so it appears whole
    or not at all; elsewhere (gs://) `export_manifest.json`, written last, marks it
    complete.

    Args:
        config: The export.

    Returns:
        The export path.

    Raises:
        ExportExistsError: `export_path` exists.
        FileNotFoundError, CheckpointMismatchError: See `restore_feature_model`.
    """
    target = config.export_path.rstrip("/")
    if tf.io.gfile.exists(target):
        raise ExportExistsError(
            f"--export_path={target} exists already; remove it or choose another path"
        )
    model = restore_feature_model(config)
    module, serving = _module(model, config)
    manifest = _manifest(config)
    if "://" in target:
        _save(module, target, serving)
        _write_manifest(target, manifest)
        return target
    parent = os.path.dirname(os.path.abspath(target))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.", dir=parent)
    try:
        _save(module, staging, serving)
        _write_manifest(staging, manifest)
        # mkdtemp's folder is private (0700); an export is read by other users too.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)
        storage.durable_replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("exported %s features of %s to %s", config.kind, config.ckpt_path, target)
    return target
