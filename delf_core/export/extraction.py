"""The multi-scale extraction graph: image pyramid, receptive boxes, attention selection."""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from delf_core.features.preprocess import receptive_boxes_tf

ExtractFn = Callable[[tf.Tensor], dict]

# Receptive field of a block3 cell of ResNet-50, and the padding that centres it on the
# cell: (RECEPTIVE_FIELD - 1) / 2 == PADDING, so a box's centre is stride * (i, j).
RECEPTIVE_FIELD = 291
PADDING = 145


def normalize_image(image: tf.Tensor) -> tf.Tensor:
    """uint8 [H, W, 3] to float32 in [-1, 1), the training input's scaling."""
    return (tf.cast(image, tf.float32) - 128.0) / 128.0


def run_at_scale(extract: ExtractFn, image: tf.Tensor, scale: tf.Tensor) -> dict[str, tf.Tensor]:
    """`extract`'s outputs on `image` (normalised, [H, W, 3]) resized by `scale`."""
    size = tf.cast(tf.round(tf.cast(tf.shape(image)[:2], tf.float32) * scale), tf.int32)
    resized = tf.image.resize(image[tf.newaxis], size, method="bilinear")
    outputs = extract(resized)
    return {name: tf.cast(value[0], tf.float32) for name, value in outputs.items()}


def select_local(
    outputs: dict[str, tf.Tensor], scale: tf.Tensor, stride: float, abs_thres: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """Boxes, descriptors, feature scales and scores of the cells at or above `abs_thres`."""
    prob = outputs["attention_prob"]
    local = outputs["local_features"]
    depth = local.shape[-1]
    height, width = tf.shape(prob)[0], tf.shape(prob)[1]
    boxes = receptive_boxes_tf(height, width, RECEPTIVE_FIELD, stride, PADDING) / scale
    scores = tf.reshape(prob, [-1])
    keep = tf.reshape(tf.where(scores >= abs_thres), [-1])
    kept_scores = tf.gather(scores, keep)
    return (
        tf.gather(boxes, keep),
        tf.gather(tf.reshape(local, [-1, depth]), keep),
        tf.fill(tf.shape(kept_scores), 1.0 / scale),
        kept_scores,
    )


def top_features(
    boxes: tf.Tensor,
    descriptors: tf.Tensor,
    scales: tf.Tensor,
    scores: tf.Tensor,
    max_feature_num: tf.Tensor,
    iou: float,
) -> dict[str, tf.Tensor]:
    """At most `max_feature_num` features by descending score, after NMS at `iou`.

    NMS suppresses a box whose IoU with a kept one is above `iou`; no IoU exceeds 1, so
    at the default 1.0 it is exactly a top-k, taken directly.
    """
    count = tf.maximum(tf.minimum(max_feature_num, tf.shape(scores)[0]), 0)
    if iou >= 1.0:
        keep = tf.math.top_k(scores, k=count, sorted=True).indices
    else:
        keep = tf.image.non_max_suppression(boxes, scores, count, iou_threshold=iou)
    return {
        "boxes": tf.reshape(tf.gather(boxes, keep), [-1, 4]),
        "features": tf.reshape(tf.gather(descriptors, keep), [-1, descriptors.shape[-1]]),
        "scales": tf.reshape(tf.gather(scales, keep), [-1]),
        "scores": tf.reshape(tf.gather(scores, keep), [-1, 1]),
    }


def _selected(num_scales: tf.Tensor, scales_ind: tf.Tensor) -> tf.Tensor:
    """Boolean [num_scales]: which scale indices are listed in `scales_ind`."""
    listed = tf.equal(tf.range(num_scales)[:, tf.newaxis], scales_ind[tf.newaxis, :])
    return tf.reduce_any(listed, axis=1)


def extract_local_and_global(
    extract: ExtractFn,
    image: tf.Tensor,
    scales: tf.Tensor,
    max_feature_num: tf.Tensor | None,
    abs_thres: tf.Tensor | None,
    global_scales_ind: tf.Tensor | None,
    *,
    stride: float,
    iou: float,
    local_depth: int,
    global_depth: int,
) -> dict[str, tf.Tensor]:
    """Runs the model once per scale; local features from all, global from the listed.

    Args:
        extract: A feature model's `DelfModel.extract`.
        image: uint8 [H, W, 3].
        scales: float32 [S], the pyramid, in order.
        max_feature_num, abs_thres: Local selection; None for no local features.
        global_scales_ind: int32 indices into `scales` whose global descriptors are
            kept, in scale order; None for no global descriptors.
        stride: Pixels between local-feature centres at scale 1.
        iou: NMS threshold of the local features.
        local_depth, global_depth: Descriptor sizes, which give the outputs static shapes.

    Returns:
        `boxes` [N, 4], `features` [N, d], `scales` [N], `scores` [N, 1] with local
        features, and `global_descriptors` [S_sel, D] with global ones.
    """
    with_local = abs_thres is not None
    with_global = global_scales_ind is not None
    normalized = normalize_image(image)
    num_scales = tf.shape(scales)[0]

    def parts() -> tf.TensorArray:
        return tf.TensorArray(tf.float32, size=num_scales, infer_shape=False)

    boxes, descriptors, feature_scales, scores, global_descriptors = (parts() for _ in range(5))
    for i in tf.range(num_scales):
        scale = scales[i]
        outputs = run_at_scale(extract, normalized, scale)
        if with_local:
            local = select_local(outputs, scale, stride, abs_thres)
            boxes = boxes.write(i, local[0])
            descriptors = descriptors.write(i, local[1])
            feature_scales = feature_scales.write(i, local[2])
            scores = scores.write(i, local[3])
        if with_global:
            global_descriptors = global_descriptors.write(i, outputs["global_descriptor"])
    result = {}
    if with_local:
        result = top_features(
            boxes.concat(),
            tf.reshape(descriptors.concat(), [-1, local_depth]),
            feature_scales.concat(),
            scores.concat(),
            max_feature_num,
            iou,
        )
    if with_global:
        keep = _selected(num_scales, global_scales_ind)
        stacked = tf.reshape(global_descriptors.stack(), [-1, global_depth])
        result["global_descriptors"] = tf.boolean_mask(stacked, keep)
    return result


def extract_global(
    extract: ExtractFn,
    image: tf.Tensor,
    scales: tf.Tensor,
    global_scales_ind: tf.Tensor,
    *,
    global_depth: int,
    pool_type: str = "None",
    normalize: bool = False,
) -> tf.Tensor:
    """Global descriptors at the listed scales only, optionally pooled and normalised.

    Returns:
        [S_sel, D] when `pool_type` is "None", else the pooled [D]; L2-normalised along
        the descriptor axis when `normalize`.
    """
    normalized = normalize_image(image)
    chosen = tf.gather(scales, global_scales_ind)
    count = tf.shape(chosen)[0]
    found = tf.TensorArray(tf.float32, size=count, infer_shape=False)
    for i in tf.range(count):
        found = found.write(i, run_at_scale(extract, normalized, chosen[i])["global_descriptor"])
    descriptors = tf.reshape(found.stack(), [-1, global_depth])
    if pool_type == "average":
        descriptors = tf.reduce_mean(descriptors, axis=0)
    elif pool_type == "sum":
        descriptors = tf.reduce_sum(descriptors, axis=0)
    if normalize:
        descriptors = tf.math.l2_normalize(descriptors, axis=-1)
    return descriptors
