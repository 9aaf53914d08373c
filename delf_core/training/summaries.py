"""TensorBoard summaries under `<logdir>/train_logs`, with the original's names."""

from __future__ import annotations

import os

import tensorflow as tf

LOG_DIR = "train_logs"
_PERCENTILES = (25, 50, 75)


def writer(logdir: str, is_chief: bool) -> tf.summary.SummaryWriter:
    """The chief's writer; other workers get one that writes nothing."""
    if not is_chief:
        return tf.summary.create_noop_writer()
    return tf.summary.create_file_writer(os.path.join(logdir, LOG_DIR), flush_millis=10000)


def write_scalars(summary_writer, step: int, values: dict[str, float]) -> None:
    with summary_writer.as_default(step=step):
        for name, value in values.items():
            tf.summary.scalar(name, value)


def write_step(summary_writer, step: int, metrics: dict[str, float], model, images) -> None:
    """The step's scalars, plus what the model makes of one batch: the images, their
    attention maps and statistics, and how sparse each backbone map is."""
    outputs = model(images, training=False)
    # The softplus attention, the value extraction thresholds.
    scores = tf.cast(outputs["attention_prob"], tf.float32)
    sorted_scores = tf.sort(tf.reshape(scores, [-1]))
    count = tf.cast(tf.size(sorted_scores) - 1, tf.float32)
    values = dict(metrics)
    values["loss/desc/crossentropy"] = metrics.get("loss/desc", 0.0)
    values["loss/attn/crossentropy"] = metrics.get("loss/attn", 0.0)
    values["loss/recon/mse"] = metrics.get("loss/recon", 0.0)
    values["image_range/max"] = float(tf.reduce_max(images))
    values["image_range/min"] = float(tf.reduce_min(images))
    values["attention/max"] = float(sorted_scores[-1])
    values["attention/min"] = float(sorted_scores[0])
    values["attention/mean"] = float(tf.reduce_mean(sorted_scores))
    for percent in _PERCENTILES:
        index = tf.cast(tf.round(count * percent / 100.0), tf.int32)
        values[f"attention/percent_{percent}"] = float(sorted_scores[index])
    for name, feature_map in model.backbone(images, training=False).items():
        values[f"sparsity/{name}"] = float(tf.math.zero_fraction(feature_map))
    scale = getattr(getattr(model, "cosine_classifier", None), "scale_factor", None)
    if scale is not None:
        values["desc/scale_factor"] = float(scale.numpy())
    write_scalars(summary_writer, step, values)
    with summary_writer.as_default(step=step):
        tf.summary.image("batch_images", (images + 1.0) / 2.0, max_outputs=4)
        tf.summary.image("batch_attention", scores / tf.reduce_max(scores + 1e-3), max_outputs=4)
