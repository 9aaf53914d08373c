"""The training losses of DELF/DELG (REFERENCE §4.4), averaged over the global batch."""

from __future__ import annotations

import tensorflow as tf

from delf_core.training.config import TrainConfig


def _cross_entropy(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Per-example softmax cross-entropy, in float32 even under mixed precision."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=labels, logits=tf.cast(logits, tf.float32)
    )


def compute_losses(
    outputs: dict[str, tf.Tensor], labels: tf.Tensor, global_batch_size: int, config: TrainConfig
) -> dict[str, tf.Tensor]:
    """The descriptor, attention and reconstruction losses and their weighted sum.

    Each is a per-example loss averaged over the global batch, so summing the replicas'
    values gives the batch mean whatever the number of replicas.

    Args:
      outputs: the model's output dict (`desc_logits`, `attn_logits`, `block3`, and
        `reconstruction` when the autoencoder is on).
      labels: int labels of this replica's examples.
      global_batch_size: examples in one step over all replicas.
      config: the loss weights and whether the autoencoder is on.

    Returns:
      {"desc", "attn", "recon", "total"}: scalars of this replica.
    """
    desc = tf.nn.compute_average_loss(
        _cross_entropy(labels, outputs["desc_logits"]), global_batch_size=global_batch_size
    )
    attn = tf.nn.compute_average_loss(
        _cross_entropy(labels, outputs["attn_logits"]), global_batch_size=global_batch_size
    )
    recon = tf.constant(0.0)
    if config.use_autoencoder:
        # MSE over channels, then the mean over positions of each example: the
        # original's loss on one replica, and independent of the replica count.
        target = tf.cast(tf.stop_gradient(outputs["block3"]), tf.float32)
        error = tf.square(target - tf.cast(outputs["reconstruction"], tf.float32))
        per_example = tf.reduce_mean(error, axis=[1, 2, 3])
        recon = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch_size)
    total = desc + config.attention_loss_weight * attn + config.reconstruction_loss_weight * recon
    return {"desc": desc, "attn": attn, "recon": recon, "total": total}


def correct_predictions(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """How many of this replica's examples have their label as the top logit."""
    predicted = tf.argmax(logits, axis=-1, output_type=labels.dtype)
    return tf.reduce_sum(tf.cast(tf.equal(predicted, labels), tf.float32))
