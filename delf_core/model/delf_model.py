"""DELF/DELG model: ResNet-50 backbone, attention and autoencoder heads, global classifiers."""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf
from keras import layers

from delf_core.model.attention_head import AttentionHead
from delf_core.model.autoencoder import Autoencoder
from delf_core.model.cosine_classifier import CosineClassifier
from delf_core.model.gem_pooling import GeMPooling
from delf_core.model.resnet50 import BLOCK4_CHANNELS, ResNet50
from delf_core.model_options import BLOCK3_CHANNELS, ModelOptions
from delf_core.step_config import same_as


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture of a DELF or DELG model; defaults are those of the original `train.py`.

    Attributes:
        num_classes: Number of landmark classes of both classifiers; None builds a
            feature extractor without classifiers (for export), which `extract` runs.
        block3_strides: Subsample block3 to stride 32 (see `ResNet50`).
        delg_global_features: DELG (GeM + embedding + cosine/ArcFace) instead of DELF's
            average pooling + softmax classifier.
        delg_gem_power: GeM power p.
        delg_embedding_layer_dim: Dimension of the DELG global descriptor.
        delg_scale_factor_init: Cosine-classifier scale s.
        delg_arcface_margin: ArcFace margin m (radians).
        use_autoencoder: Reduce local descriptors with the autoencoder.
        autoencoder_dimensions: Local descriptor dimension with the autoencoder.
        local_feature_map_channels: Channels the autoencoder reconstructs; must equal
            block3's 1024, which the reconstruction loss compares against.
    """

    num_classes: int | None
    block3_strides: bool = same_as(ModelOptions, "block3_strides")
    delg_global_features: bool = same_as(ModelOptions, "delg_global_features")
    delg_gem_power: float = same_as(ModelOptions, "delg_gem_power")
    delg_embedding_layer_dim: int = same_as(ModelOptions, "delg_embedding_layer_dim")
    delg_scale_factor_init: float = same_as(ModelOptions, "delg_scale_factor_init")
    delg_arcface_margin: float = same_as(ModelOptions, "delg_arcface_margin")
    use_autoencoder: bool = same_as(ModelOptions, "use_autoencoder")
    autoencoder_dimensions: int = same_as(ModelOptions, "autoencoder_dimensions")
    local_feature_map_channels: int = same_as(ModelOptions, "local_feature_map_channels")

    def __post_init__(self):
        for name in (
            "num_classes",
            "delg_embedding_layer_dim",
            "autoencoder_dimensions",
            "local_feature_map_channels",
        ):
            value = getattr(self, name)
            if value is None and name == "num_classes":
                continue
            if int(value) != value or value < 1:
                raise ValueError(f"ModelConfig.{name} must be a positive integer, got {value!r}")
            object.__setattr__(self, name, int(value))
        if self.use_autoencoder and self.local_feature_map_channels != BLOCK3_CHANNELS:
            raise ValueError(
                "ModelConfig.local_feature_map_channels must be "
                f"{BLOCK3_CHANNELS} (block3's channels, which the autoencoder reconstructs), "
                f"got {self.local_feature_map_channels}"
            )
        if self.delg_gem_power <= 0:
            raise ValueError(f"ModelConfig.delg_gem_power must be > 0, got {self.delg_gem_power}")


@keras.saving.register_keras_serializable(package="delf_core")
class DelfModel(keras.Model):
    """DELF (global average pooling + softmax) or DELG (GeM + cosine/ArcFace) model.

    Both share the ResNet-50 backbone, the attention head on block3 and the optional
    autoencoder. One call returns every output the training losses, the summaries and the
    exporters need, as a dict.

    All variables exist after `build_for(image_size)` (or `build(input_shape)`), so a
    checkpoint can be restored, or ImageNet weights loaded, before any training step.

    Args:
        config: The architecture.
        **kwargs: Passed to `keras.Model`.
    """

    def __init__(self, config: ModelConfig, **kwargs):
        kwargs.setdefault("name", "delg" if config.delg_global_features else "delf")
        super().__init__(**kwargs)
        self.config = config
        self.backbone = ResNet50(block3_strides=config.block3_strides, name="backbone")
        self.attention = AttentionHead(name="attention")
        self.autoencoder = None
        if config.use_autoencoder:
            self.autoencoder = Autoencoder(
                reduced_dimension=config.autoencoder_dimensions,
                expand_dimension=config.local_feature_map_channels,
                name="autoencoder",
            )
        if config.delg_global_features:
            self.gem = GeMPooling(power=config.delg_gem_power, name="gem")
            # "FC whitening" of the GeM vector: DELG §3.1.
            self.embedding_layer = layers.Dense(
                config.delg_embedding_layer_dim, name="embedding_layer"
            )
        if self.has_classifiers:
            self.att_fc = layers.Dense(config.num_classes, name="att_fc")
            if config.delg_global_features:
                self.cosine_classifier = CosineClassifier(
                    config.num_classes,
                    scale_factor_init=config.delg_scale_factor_init,
                    arcface_margin=config.delg_arcface_margin,
                    name="cosine_classifier",
                )
            else:
                self.desc_fc = layers.Dense(config.num_classes, name="desc_fc")

    @property
    def has_classifiers(self) -> bool:
        """False for a feature extractor built with `num_classes=None`."""
        return self.config.num_classes is not None

    @property
    def local_descriptor_dim(self) -> int:
        """Depth of `local_features`: the autoencoder's bottleneck, else block3's."""
        if self.config.use_autoencoder:
            return self.config.autoencoder_dimensions
        return BLOCK3_CHANNELS

    @property
    def global_descriptor_dim(self) -> int:
        """Dimension of `global_descriptor`."""
        if self.config.delg_global_features:
            return self.config.delg_embedding_layer_dim
        return BLOCK4_CHANNELS

    def build(self, input_shape):
        self.backbone.build(input_shape)
        block3 = (None, None, None, BLOCK3_CHANNELS)
        self.attention.build(block3)
        pooled_channels = BLOCK3_CHANNELS
        if self.autoencoder is not None:
            self.autoencoder.build(block3)
            pooled_channels = self.config.local_feature_map_channels
        if self.config.delg_global_features:
            self.embedding_layer.build((None, BLOCK4_CHANNELS))
        if not self.has_classifiers:
            return
        self.att_fc.build((None, pooled_channels))
        if self.config.delg_global_features:
            self.cosine_classifier.build((None, self.config.delg_embedding_layer_dim))
        else:
            self.desc_fc.build((None, BLOCK4_CHANNELS))

    def build_from_config(self, config):
        # A first call with labels records two input shapes; only the images' matter.
        if config:
            shape = config.get("input_shape") or config["shapes_dict"]["images_shape"]
            self.build(shape)

    def build_for(self, image_size: int | tuple[int, int]) -> None:
        """Creates every variable by one inference call on a zero batch of that size.

        Args:
            image_size: Side, or (height, width), of the training images.
        """
        height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
        images = tf.zeros([1, height, width, 3])
        if self.has_classifiers:
            self(images, training=False)
        else:
            self.build(images.shape)
            self.extract(images)

    def _global_descriptor(self, block4):
        if self.config.delg_global_features:
            return self.embedding_layer(self.gem(block4))
        return tf.reduce_mean(block4, axis=[1, 2])

    def _global(self, block4, labels, training):
        descriptor = self._global_descriptor(block4)
        if self.config.delg_global_features:
            logits = self.cosine_classifier(descriptor, labels=labels, training=training)
        else:
            logits = self.desc_fc(descriptor)
        return descriptor, logits

    def feature_layers(self) -> dict[str, keras.layers.Layer]:
        """The layers whose weights `extract` uses: what a feature export must store."""
        names = ("backbone", "attention", "autoencoder", "embedding_layer")
        return {name: getattr(self, name) for name in names if getattr(self, name, None)}

    def extract(self, images) -> dict[str, tf.Tensor]:
        """What feature extraction needs, in inference mode, without the classifiers.

        Args:
            images: Float images [B, H, W, 3], scaled as the input pipeline does.

        Returns:
            A dict with `attention_prob` [B, h, w, 1], `local_features` [B, h, w, d]
            (the autoencoder's reduced map, else block3) and `global_descriptor` [B, D].
        """
        maps = self.backbone(images, training=False)
        attention = self.attention(maps["block3"], training=False)
        local = maps["block3"]
        if self.autoencoder is not None:
            local = self.autoencoder(local)["reduced"]
        return {
            "attention_prob": attention["prob"],
            "local_features": local,
            "global_descriptor": self._global_descriptor(maps["block4"]),
        }

    def call(self, images, labels=None, training=False):
        """Runs the whole model.

        Args:
            images: Float images [B, H, W, 3], scaled as the input pipeline does.
            labels: Integer class ids [B]; DELG applies the ArcFace margin only when
                training with labels.
            training: Python bool; BatchNormalization mode and the ArcFace margin.

        Returns:
            A dict with `block3` [B, h, w, 1024] (gradient-stopped), `global_descriptor`
            [B, D], `desc_logits` and `attn_logits` [B, num_classes], `attention_prob`
            and `attention_score` [B, h, w, 1], `local_features` [B, h, w, d] (the
            autoencoder's reduced map, else block3) and, with the autoencoder,
            `reconstruction` [B, h, w, 1024].
        """
        if not self.has_classifiers:
            raise ValueError("a model built with num_classes=None only runs extract()")
        maps = self.backbone(images, training=training)
        # Attention and autoencoder losses must not train the backbone: DELG §3.2.
        block3 = tf.stop_gradient(maps["block3"])
        descriptor, desc_logits = self._global(maps["block4"], labels, training)
        out = {"block3": block3, "global_descriptor": descriptor, "desc_logits": desc_logits}
        if self.autoencoder is not None:
            coded = self.autoencoder(block3)
            # Scores from block3, pooling over the reconstruction (the original's newest
            # version), so the attention classifier also trains the autoencoder.
            attention = self.attention(block3, targets=coded["expanded"], training=training)
            out["local_features"] = coded["reduced"]
            out["reconstruction"] = coded["expanded"]
        else:
            attention = self.attention(block3, training=training)
            out["local_features"] = block3
        out["attn_logits"] = self.att_fc(attention["feature"])
        out["attention_prob"] = attention["prob"]
        out["attention_score"] = attention["score"]
        return out

    def validation_logits(self, images) -> dict[str, tf.Tensor]:
        """Logits of the original's validation path: no margin, no autoencoder.

        Args:
            images: Float images [B, H, W, 3].

        Returns:
            A dict with `desc_logits` and `attn_logits` [B, num_classes].
        """
        maps = self.backbone(images, training=False)
        _, desc_logits = self._global(maps["block4"], None, False)
        attention = self.attention(maps["block3"], training=False)
        return {"desc_logits": desc_logits, "attn_logits": self.att_fc(attention["feature"])}

    def get_config(self):
        config = super().get_config()
        config["model_config"] = dataclasses.asdict(self.config)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        model_config = ModelConfig(**config.pop("model_config"))
        return cls(model_config, **config)
