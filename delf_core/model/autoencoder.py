"""Autoencoder that reduces DELG local descriptors from block3's 1024 channels to 128."""

from __future__ import annotations

import keras
from keras import layers


@keras.saving.register_keras_serializable(package="delf_core")
class Autoencoder(layers.Layer):
    """1x1 conv bottleneck of DELG (Cao et al., ECCV 2020, §3.2), `AutoencoderModel` upstream.

    `autoenc_conv1` projects linearly to `reduced_dimension` channels: these are the local
    descriptors. `autoenc_conv2` expands back with a ReLU, because the map it reconstructs
    (block3, a ReLU output) is non-negative.

    Args:
        reduced_dimension: Channels of the reduced (descriptor) map.
        expand_dimension: Channels of the reconstruction; block3's channel count.
        kernel_size: Kernel size of both convs.
        **kwargs: Passed to `keras.layers.Layer`.
    """

    def __init__(
        self,
        reduced_dimension: int = 128,
        expand_dimension: int = 1024,
        kernel_size: int = 1,
        **kwargs,
    ):
        kwargs.setdefault("name", "autoencoder")
        super().__init__(**kwargs)
        self.reduced_dimension = int(reduced_dimension)
        self.expand_dimension = int(expand_dimension)
        self.kernel_size = int(kernel_size)
        self.autoenc_conv1 = layers.Conv2D(
            self.reduced_dimension, self.kernel_size, padding="same", name="autoenc_conv1"
        )
        self.autoenc_conv2 = layers.Conv2D(
            self.expand_dimension,
            self.kernel_size,
            padding="same",
            activation="relu",
            name="autoenc_conv2",
        )

    def build(self, input_shape):
        self.autoenc_conv1.build((None, None, None, input_shape[-1]))
        self.autoenc_conv2.build((None, None, None, self.reduced_dimension))

    def call(self, inputs):
        """Reduces and reconstructs a feature map.

        Args:
            inputs: Feature map [B, h, w, C].

        Returns:
            A dict with `reduced` [B, h, w, reduced_dimension] (linear) and `expanded`
            [B, h, w, expand_dimension] (ReLU).
        """
        reduced = self.autoenc_conv1(inputs)
        return {"reduced": reduced, "expanded": self.autoenc_conv2(reduced)}

    def get_config(self):
        config = super().get_config()
        config.update(
            reduced_dimension=self.reduced_dimension,
            expand_dimension=self.expand_dimension,
            kernel_size=self.kernel_size,
        )
        return config
