"""Generalized-mean (GeM) pooling over the spatial axes, with a fixed power."""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers


@keras.saving.register_keras_serializable(package="delf_core")
class GeMPooling(layers.Layer):
    """GeM pooling (Radenović et al., TPAMI 2019): `mean(max(x, eps)^p)^(1/p)` over H, W.

    DELG (Cao et al., ECCV 2020, §3.1) keeps `p` fixed at 3 rather than learning it.
    `eps` keeps the fractional power's gradient finite at the zeros a ReLU map holds.

    Args:
        power: The exponent `p`.
        eps: Lower clamp applied before the power.
        **kwargs: Passed to `keras.layers.Layer`.
    """

    def __init__(self, power: float = 3.0, eps: float = 1e-6, **kwargs):
        kwargs.setdefault("name", "gem")
        # Cubes of activations overflow float16: stays float32 under a mixed policy.
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.power = float(power)
        self.eps = float(eps)

    def call(self, inputs):
        """Pools [B, H, W, C] to [B, C]."""
        x = tf.pow(tf.maximum(inputs, self.eps), self.power)
        return tf.pow(tf.reduce_mean(x, axis=[1, 2]), 1.0 / self.power)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(power=self.power, eps=self.eps)
        return config
