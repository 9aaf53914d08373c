"""Cosine classifier with a fixed scale and an optional ArcFace margin (DELG's global head)."""

from __future__ import annotations

import math

import keras
import tensorflow as tf
from keras import layers

# Keeps acos finite and its gradient bounded at |cos| = 1.
_ACOS_EPS = 1e-7


def arcface_margin(cosine: tf.Tensor, labels: tf.Tensor, margin: float) -> tf.Tensor:
    """Adds the ArcFace angular margin (Deng et al., CVPR 2019) to the true-class cosines.

    For the true class, θ = acos(cos) becomes cos(θ + m) when θ <= π − m; past that point
    cos(θ + m) would grow again, so the cosine is left unchanged there, as in DELG's code.
    Other classes are unchanged.

    Args:
        cosine: Cosine similarities [B, num_classes].
        labels: Integer class ids [B].
        margin: The additive angular margin m, in radians.

    Returns:
        The cosines with the margin applied, [B, num_classes].
    """
    num_classes = tf.shape(cosine)[-1]
    labels = tf.reshape(tf.cast(labels, tf.int32), [-1])
    is_true = tf.cast(tf.one_hot(labels, num_classes, dtype=tf.int32), tf.bool)
    theta = tf.acos(tf.clip_by_value(cosine, -1.0 + _ACOS_EPS, 1.0 - _ACOS_EPS))
    apply = tf.logical_and(is_true, theta <= math.pi - margin)
    return tf.where(apply, tf.cos(theta + margin), cosine)


@keras.saving.register_keras_serializable(package="delf_core")
class CosineClassifier(layers.Layer):
    """Logits `s * cos(x, W_c)` over class weights `cosine_weights` [D, num_classes].

    The scale `s` is a non-trainable variable initialised to `scale_factor_init`
    (≈ sqrt(2048) by default), so it is saved and restored with the model.

    Args:
        num_classes: Number of classes.
        scale_factor_init: Initial (and, as non-trainable, fixed) scale `s`.
        arcface_margin: ArcFace margin m; 0 disables it.
        **kwargs: Passed to `keras.layers.Layer`.
    """

    def __init__(
        self,
        num_classes: int,
        scale_factor_init: float = 45.25,
        arcface_margin: float = 0.1,
        **kwargs,
    ):
        kwargs.setdefault("name", "cosine_classifier")
        # acos near ±1 and logits scaled by ~45 need float32 under a mixed policy.
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.scale_factor_init = float(scale_factor_init)
        self.arcface_margin = float(arcface_margin)
        # Named after its weight, as Keras layers do, so that it can be reseeded.
        self.cosine_weights_initializer = keras.initializers.GlorotUniform()

    def build(self, input_shape):
        self.cosine_weights = self.add_weight(
            name="cosine_weights",
            shape=(input_shape[-1], self.num_classes),
            initializer=self.cosine_weights_initializer,
            trainable=True,
        )
        self.scale_factor = self.add_weight(
            name="scale_factor",
            shape=(),
            initializer=keras.initializers.Constant(self.scale_factor_init),
            trainable=False,
        )

    def call(self, inputs, labels=None, training=False):
        """Computes scaled cosine logits.

        Args:
            inputs: Embeddings [B, D] (need not be normalised).
            labels: Integer class ids [B]; the margin is applied only when given.
            training: Python bool; the margin is applied only when training.

        Returns:
            Logits [B, num_classes].
        """
        x = tf.math.l2_normalize(inputs, axis=1)
        w = tf.math.l2_normalize(self.cosine_weights, axis=0)
        cosine = tf.matmul(x, w)
        if training and labels is not None and self.arcface_margin > 0:
            cosine = arcface_margin(cosine, labels, self.arcface_margin)
        return self.scale_factor * cosine

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_classes=self.num_classes,
            scale_factor_init=self.scale_factor_init,
            arcface_margin=self.arcface_margin,
        )
        return config
