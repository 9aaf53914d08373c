"""ResNet-50 backbone of DELF/DELG that returns its intermediate feature maps by name."""

from __future__ import annotations

import keras
from keras import layers, ops

# (stage, [filters of 2a, 2b, 2c], number of blocks): He et al., "Deep Residual Learning", Table 1.
STAGES = (
    (2, (64, 64, 256), 3),
    (3, (128, 128, 512), 4),
    (4, (256, 256, 1024), 6),
    (5, (512, 512, 2048), 3),
)
# Which named map each stage's output is recorded as.
_STAGE_OUTPUT = {2: "block1", 3: "block2", 4: "block3", 5: "block4"}
BLOCK4_CHANNELS = 2048


def _block_letter(index: int) -> str:
    return "abcdefghijklmnopqrstuvwxyz"[index]


@keras.saving.register_keras_serializable(package="delf_core")
class BottleneckBlock(layers.Layer):
    """Bottleneck residual block: 1x1 (strided) -> 3x3 'same' -> 1x1, BN after each conv.

    The stride sits on the first 1x1 'valid' conv and on the projection shortcut, as in
    the original Caffe ResNet and DELF's `resnet50.py`, so layer names and weight shapes
    are those of the ImageNet checkpoint: `res{stage}{block}_branch2a/2b/2c/1` and
    `bn{stage}{block}_branch2a/2b/2c/1`.

    Args:
        filters: Output channels of the 2a, 2b and 2c convolutions.
        stage: Stage number (2..5).
        block: Block letter within the stage ('a', 'b', ...).
        strides: Stride of the first 1x1 conv and of the shortcut.
        projection: Whether the shortcut is a 1x1 conv + BN (`branch1`) instead of identity.
        kernel_size: Kernel size of the middle conv.
        **kwargs: Passed to `keras.layers.Layer`.
    """

    def __init__(
        self,
        filters: tuple[int, int, int] | list[int],
        stage: int,
        block: str,
        strides: int = 1,
        projection: bool = False,
        kernel_size: int = 3,
        **kwargs,
    ):
        kwargs.setdefault("name", f"res{stage}{block}")
        super().__init__(**kwargs)
        self.filters = tuple(int(f) for f in filters)
        self.stage = int(stage)
        self.block = str(block)
        self.strides = int(strides)
        self.projection = bool(projection)
        self.kernel_size = int(kernel_size)
        conv = f"res{stage}{block}_branch"
        bn = f"bn{stage}{block}_branch"
        f1, f2, f3 = self.filters
        self.conv2a = layers.Conv2D(f1, 1, strides=self.strides, name=conv + "2a")
        self.bn2a = layers.BatchNormalization(name=bn + "2a")
        self.conv2b = layers.Conv2D(f2, self.kernel_size, padding="same", name=conv + "2b")
        self.bn2b = layers.BatchNormalization(name=bn + "2b")
        self.conv2c = layers.Conv2D(f3, 1, name=conv + "2c")
        self.bn2c = layers.BatchNormalization(name=bn + "2c")
        if self.projection:
            self.conv1 = layers.Conv2D(f3, 1, strides=self.strides, name=conv + "1")
            self.bn1 = layers.BatchNormalization(name=bn + "1")

    def weight_layers(self) -> list[layers.Layer]:
        """Returns the conv and BN layers in checkpoint order (2a, 2b, 2c, then 1)."""
        found = [self.conv2a, self.bn2a, self.conv2b, self.bn2b, self.conv2c, self.bn2c]
        if self.projection:
            found += [self.conv1, self.bn1]
        return found

    def build(self, input_shape):
        f1, f2, f3 = self.filters
        shape = (None, None, None)
        self.conv2a.build((*shape, input_shape[-1]))
        self.bn2a.build((*shape, f1))
        self.conv2b.build((*shape, f1))
        self.bn2b.build((*shape, f2))
        self.conv2c.build((*shape, f2))
        self.bn2c.build((*shape, f3))
        if self.projection:
            self.conv1.build((*shape, input_shape[-1]))
            self.bn1.build((*shape, f3))

    def call(self, inputs, training=False):
        x = ops.relu(self.bn2a(self.conv2a(inputs), training=training))
        x = ops.relu(self.bn2b(self.conv2b(x), training=training))
        x = self.bn2c(self.conv2c(x), training=training)
        shortcut = inputs
        if self.projection:
            shortcut = self.bn1(self.conv1(inputs), training=training)
        return ops.relu(x + shortcut)

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        if self.strides > 1:
            h = None if h is None else (h - 1) // self.strides + 1
            w = None if w is None else (w - 1) // self.strides + 1
        return (b, h, w, self.filters[2])

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=list(self.filters),
            stage=self.stage,
            block=self.block,
            strides=self.strides,
            projection=self.projection,
            kernel_size=self.kernel_size,
        )
        return config


@keras.saving.register_keras_serializable(package="delf_core")
class ResNet50(keras.Model):
    """ResNet-50 (channels_last) as in DELF's `model/resnet50.py`, returning named maps.

    Stem: `conv1` 7x7/2 'same' -> `bn_conv1` -> ReLU -> 3x3/2 'valid' max pool (no zero
    padding, unlike `keras.applications`). BatchNormalization keeps Keras' defaults
    (momentum 0.99, epsilon 1e-3), as the original does.

    With `block3_strides=True` a 1x1/2 max pool subsamples conv4_x's output (and `block3`
    is recorded after it) while conv5's first block uses stride 1. A 1x1 stride-2 conv
    equals subsampling then a 1x1 conv, so `block4` is the same with either setting and
    the same weights; only `block3`'s stride changes (32 instead of 16), which makes the
    local features coarser and cheaper.

    Spatial sizes for a 321x321 input (both settings): block0 161, block0mp 80, block1 80,
    block2 40, block3 10 (strided) or 20, block4 10.

    Args:
        block3_strides: Whether to subsample after conv4_x (see above).
        **kwargs: Passed to `keras.Model`.
    """

    def __init__(self, block3_strides: bool = True, **kwargs):
        kwargs.setdefault("name", "resnet50")
        super().__init__(**kwargs)
        self.block3_strides = bool(block3_strides)
        self.conv1 = layers.Conv2D(64, 7, strides=2, padding="same", name="conv1")
        self.bn_conv1 = layers.BatchNormalization(name="bn_conv1")
        self.max_pool = layers.MaxPooling2D(3, strides=2, padding="valid")
        self.subsampling_layer = layers.MaxPooling2D(1, strides=2, padding="valid")
        self._block_names: list[list[str]] = []
        for stage, filters, count in STAGES:
            names = []
            for i in range(count):
                letter = _block_letter(i)
                strides = 1
                if i == 0 and stage in (3, 4):
                    strides = 2
                elif i == 0 and stage == 5:
                    strides = 1 if self.block3_strides else 2
                block = BottleneckBlock(
                    filters, stage, letter, strides=strides, projection=(i == 0)
                )
                setattr(self, f"l{stage}{letter}", block)
                names.append(f"l{stage}{letter}")
            self._block_names.append(names)

    def blocks(self) -> list[BottleneckBlock]:
        """Returns every bottleneck block in forward order."""
        return [getattr(self, name) for names in self._block_names for name in names]

    def weight_layers(self) -> dict[str, layers.Layer]:
        """Returns every layer that holds weights, by its checkpoint name, in forward order."""
        found = {"conv1": self.conv1, "bn_conv1": self.bn_conv1}
        for block in self.blocks():
            found.update((layer.name, layer) for layer in block.weight_layers())
        return found

    def build(self, input_shape):
        self.conv1.build((None, None, None, input_shape[-1]))
        self.bn_conv1.build((None, None, None, 64))
        channels = 64
        for block in self.blocks():
            block.build((None, None, None, channels))
            channels = block.filters[2]

    def call(self, inputs, training=False):
        """Runs the backbone.

        Args:
            inputs: Float images [B, H, W, 3].
            training: Whether BatchNormalization uses batch statistics.

        Returns:
            A dict of maps `block0` (stem after ReLU), `block0mp` (after the max pool),
            `block1`..`block4` (outputs of conv2_x..conv5_x; `block3` after the optional
            subsampling).
        """
        out = {}
        x = ops.relu(self.bn_conv1(self.conv1(inputs), training=training))
        out["block0"] = x
        x = self.max_pool(x)
        out["block0mp"] = x
        for (stage, _, _), names in zip(STAGES, self._block_names, strict=True):
            for name in names:
                x = getattr(self, name)(x, training=training)
            if stage == 4 and self.block3_strides:
                x = self.subsampling_layer(x)
            out[_STAGE_OUTPUT[stage]] = x
        return out

    def get_config(self):
        config = super().get_config()
        config.update(block3_strides=self.block3_strides)
        return config
