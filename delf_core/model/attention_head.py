"""DELF attention head: per-position scores and the attention-weighted pooled feature."""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers


@keras.saving.register_keras_serializable(package="delf_core")
class AttentionHead(layers.Layer):
    """Attention network of DELF (Noh et al., ICCV 2017, §4.2), `AttentionModel` upstream.

    `attn_conv1` (1x1, 512) -> `bn_conv1` -> ReLU -> `attn_conv2` (1x1, 1) gives the score
    map; `prob = softplus(score)` keeps weights positive without bounding them. The pooled
    feature is the spatial mean of the L2-normalised targets weighted by `prob`, the input
    of the attention classifier.

    The original declares an L2 1e-4 kernel regulariser on both convs but never adds
    `model.losses` to the training loss, so it has no effect; it is left out here, which
    trains exactly as the original does.

    Args:
        hidden_channels: Channels of `attn_conv1`.
        **kwargs: Passed to `keras.layers.Layer`.
    """

    def __init__(self, hidden_channels: int = 512, **kwargs):
        kwargs.setdefault("name", "attention")
        super().__init__(**kwargs)
        self.hidden_channels = int(hidden_channels)
        self.attn_conv1 = layers.Conv2D(self.hidden_channels, 1, padding="same", name="attn_conv1")
        self.bn_conv1 = layers.BatchNormalization(name="bn_conv1")
        self.attn_conv2 = layers.Conv2D(1, 1, padding="same", name="attn_conv2")

    def build(self, input_shape):
        self.attn_conv1.build((None, None, None, input_shape[-1]))
        self.bn_conv1.build((None, None, None, self.hidden_channels))
        self.attn_conv2.build((None, None, None, self.hidden_channels))

    def call(self, inputs, targets=None, training=False):
        """Scores `inputs` and pools `targets` (default: `inputs`) with the scores.

        Args:
            inputs: Feature map [B, h, w, C] the scores are computed from.
            targets: Feature map [B, h, w, C'] that is pooled; `inputs` when None.
            training: Whether BatchNormalization uses batch statistics.

        Returns:
            A dict with `feature` [B, C'], `prob` [B, h, w, 1] (softplus of the score)
            and `score` [B, h, w, 1].
        """
        if targets is None:
            targets = inputs
        x = tf.nn.relu(self.bn_conv1(self.attn_conv1(inputs), training=training))
        score = self.attn_conv2(x)
        prob = tf.nn.softplus(score)
        # float32: under a mixed-float16 policy the squared sum over 1024 channels overflows.
        targets = tf.math.l2_normalize(tf.cast(targets, tf.float32), axis=-1)
        feature = tf.reduce_mean(targets * tf.cast(prob, tf.float32), axis=[1, 2])
        feature = tf.cast(feature, self.compute_dtype)
        return {"feature": feature, "prob": prob, "score": score}

    def get_config(self):
        config = super().get_config()
        config.update(hidden_channels=self.hidden_channels)
        return config
