"""The feature extractor of a DelfConfig: resize, run the exported model, post-process."""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from delf_core.features.config import DelfConfig, check_delf_config, global_scales_indices
from delf_core.features.feature_io import LocalFeatures
from delf_core.features.pca import PcaParameters, apply_pca_and_whitening, load_pca_parameters
from delf_core.features.preprocess import box_centers, is_too_small, resize_image

# Tensor names of models exported by the original TF1 code, which has no signatures.
_TF1_FEEDS = {
    "image": "input_image:0",
    "scales": "input_scales:0",
    "abs_thres": "input_abs_thres:0",
    "max_feature_num": "input_max_feature_num:0",
    "global_scales_ind": "input_global_scales_ind:0",
}
_TF1_LOCAL_FETCHES = ("boxes:0", "features:0", "scales:0", "scores:0")
_TF1_GLOBAL_FETCH = "global_descriptors:0"


@dataclasses.dataclass(frozen=True)
class Features:
    """What one image gives: local features and/or a global descriptor.

    Attributes:
        local: Locations (y, x) in pixels of the image given (or of the resized image
            with `use_resized_coordinates`), L2-normalised (PCA-reduced) descriptors,
            scales and attention scores; None when local features are off.
        global_descriptor: The L2-normalised [D] descriptor; None when off.
    """

    local: LocalFeatures | None
    global_descriptor: np.ndarray | None


def _l2_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    norm = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def _empty_local(depth: int = 0) -> LocalFeatures:
    return LocalFeatures(
        locations=np.zeros([0, 2], np.float32),
        scales=np.zeros([0], np.float32),
        descriptors=np.zeros([0, depth], np.float32),
        attention=np.zeros([0], np.float32),
        orientations=np.zeros([0], np.float32),
    )


class Extractor:
    """Extracts the features a `DelfConfig` asks for with the model it names.

    The SavedModel is loaded once; calls are then independent, so one extractor serves
    a whole list of images (or a Beam worker).

    Args:
        config: The parsed config (see `load_delf_config`).

    Raises:
        ValueError: The config is inconsistent (see `check_delf_config`), or the model
            lacks the inputs or outputs it asks for.
    """

    def __init__(self, config: DelfConfig):
        check_delf_config(config)
        self.config = config
        self._scales = tf.constant(list(config.image_scales), tf.float32)
        self._global_scales_ind = tf.constant(global_scales_indices(config), tf.int32)
        local = config.delf_local_config
        self._local_pca = self._pca(local.use_pca, local.pca_parameters, config.use_local_features)
        glob = config.delf_global_config
        self._global_pca = self._pca(glob.use_pca, glob.pca_parameters, config.use_global_features)
        model = tf.saved_model.load(config.model_path)
        self._run = self._tf2_runner(model) if config.is_tf2_exported else self._tf1_runner(model)

    @staticmethod
    def _pca(use_pca: bool, params, wanted: bool) -> PcaParameters | None:
        return load_pca_parameters(params) if wanted and use_pca else None

    def _inputs(self, image: np.ndarray) -> dict[str, tf.Tensor]:
        local = self.config.delf_local_config
        inputs = {"image": tf.constant(image), "scales": self._scales}
        if self.config.use_local_features:
            inputs["abs_thres"] = tf.constant(local.score_threshold, tf.float32)
            inputs["max_feature_num"] = tf.constant(local.max_feature_num, tf.int32)
        if self.config.use_global_features:
            inputs["global_scales_ind"] = self._global_scales_ind
        return inputs

    def _tf2_runner(self, model):
        if "serving_default" not in model.signatures:
            raise ValueError(f"{self.config.model_path} has no serving_default signature")
        signature = model.signatures["serving_default"]
        accepted = set(signature.structured_input_signature[1])
        produced = set(signature.structured_outputs)
        needed = {"input_image", "input_scales"}
        if self.config.use_local_features:
            needed |= {"input_abs_thres", "input_max_feature_num"}
        if self.config.use_global_features:
            needed |= {"input_global_scales_ind"}
        missing = sorted(needed - accepted)
        if missing:
            raise ValueError(
                f"{self.config.model_path} does not take {missing}: export it with the "
                "exporter of the features the config turns on"
            )
        if self.config.use_global_features and "global_descriptors" not in produced:
            raise ValueError(
                f"{self.config.model_path} gives no per-scale `global_descriptors` "
                "(a fixed-scale or pooled export cannot be used for extraction)"
            )

        def run(inputs: dict[str, tf.Tensor]) -> dict[str, np.ndarray]:
            outputs = signature(**{f"input_{name}": value for name, value in inputs.items()})
            return {name: value.numpy() for name, value in outputs.items()}

        return run

    def _tf1_runner(self, model):
        names = ["image", "scales"]
        fetches = []
        if self.config.use_local_features:
            names += ["abs_thres", "max_feature_num"]
            fetches += list(_TF1_LOCAL_FETCHES)
        if self.config.use_global_features:
            names.append("global_scales_ind")
            fetches.append(_TF1_GLOBAL_FETCH)
        pruned = model.prune([_TF1_FEEDS[name] for name in names], fetches)
        keys = [name.split(":")[0] for name in fetches]

        def run(inputs: dict[str, tf.Tensor]) -> dict[str, np.ndarray]:
            outputs = pruned(*(inputs[name] for name in names))
            return {key: value.numpy() for key, value in zip(keys, outputs, strict=True)}

        return run

    def __call__(self, image: np.ndarray, resize_factor: float = 1.0) -> Features:
        """Features of one uint8 [H, W, 3] RGB image.

        Args:
            image: The image as loaded (see `load_rgb`).
            resize_factor: Scales the config's max/min image sizes (query crops).

        Returns:
            The features; empty ones when the resized image is under 10 pixels a side.
        """
        resized, scale_factors = resize_image(image, self.config, resize_factor)
        use_local = self.config.use_local_features
        use_global = self.config.use_global_features
        if is_too_small(resized):
            return Features(
                local=_empty_local() if use_local else None,
                global_descriptor=np.zeros([0], np.float32) if use_global else None,
            )
        outputs = self._run(self._inputs(resized))
        local = self._local(outputs, scale_factors) if use_local else None
        descriptor = self._global(outputs["global_descriptors"]) if use_global else None
        return Features(local=local, global_descriptor=descriptor)

    def _global(self, per_scale: np.ndarray) -> np.ndarray:
        """Normalise per scale, optional PCA, sum over scales, normalise: [D]."""
        descriptors = _l2_normalize(per_scale.astype(np.float32))
        params = self.config.delf_global_config.pca_parameters
        if self._global_pca is not None:
            descriptors = apply_pca_and_whitening(
                descriptors, self._global_pca, params.pca_dim, params.use_whitening
            )
            descriptors = _l2_normalize(descriptors)
        return _l2_normalize(descriptors.sum(axis=0)).astype(np.float32)

    def _local(self, outputs: dict[str, np.ndarray], scale_factors: np.ndarray) -> LocalFeatures:
        descriptors = _l2_normalize(outputs["features"].astype(np.float32))
        params = self.config.delf_local_config.pca_parameters
        if self._local_pca is not None and len(descriptors):
            descriptors = apply_pca_and_whitening(
                descriptors, self._local_pca, params.pca_dim, params.use_whitening
            )
            descriptors = _l2_normalize(descriptors)
        locations = box_centers(outputs["boxes"]).astype(np.float32)
        if not self.config.delf_local_config.use_resized_coordinates:
            # Back to the pixels of the image given; feature scales stay as they are.
            locations = locations / np.asarray(scale_factors, np.float32)
        count = len(locations)
        return LocalFeatures(
            locations=locations.reshape(count, 2),
            scales=outputs["scales"].astype(np.float32).reshape(count),
            descriptors=descriptors.astype(np.float32),
            attention=outputs["scores"].astype(np.float32).reshape(count),
            orientations=np.zeros([count], np.float32),
        )
