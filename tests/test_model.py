"""Tests of delf_core.model: shapes, heads against numpy, ImageNet loading, the contract."""

from __future__ import annotations

import dataclasses
import functools
import math

import fsspec
import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from delf_core.model import (
    MODEL_VARIANTS,
    AttentionHead,
    Autoencoder,
    BottleneckBlock,
    CosineClassifier,
    DelfModel,
    GeMPooling,
    ModelConfig,
    ResNet50,
    create_model,
    load_imagenet_weights,
)
from delf_core.model.cosine_classifier import arcface_margin
from delf_core.training.config import TrainConfig
from delf_core.training.losses import compute_losses, correct_predictions
from delf_core.training.step import build_model_and_optimizer, make_train_step
from tests.model_contract import assert_outputs_close, run_layer_contract

SIZE, BATCH, CLASSES = 64, 2, 5


def _images(seed: int = 0) -> tf.Tensor:
    return tf.random.stateless_uniform([BATCH, SIZE, SIZE, 3], seed=[seed, 1], minval=-1, maxval=1)


LABELS = tf.constant([1, 3], dtype=tf.int64)


# ----------------------------------------------------------------------------------------
# Shapes


@pytest.mark.parametrize("block3_strides", [True, False])
def test_backbone_maps_and_sizes_at_321(block3_strides):
    backbone = ResNet50(block3_strides=block3_strides)
    maps = backbone(tf.zeros([1, 321, 321, 3]))
    # 'same' 7x7/2 conv: ceil(321/2) = 161; 'valid' 3x3/2 pool: 80; then /2 per stage.
    block3 = 10 if block3_strides else 20
    assert {k: tuple(v.shape) for k, v in maps.items()} == {
        "block0": (1, 161, 161, 64),
        "block0mp": (1, 80, 80, 64),
        "block1": (1, 80, 80, 256),
        "block2": (1, 40, 40, 512),
        "block3": (1, block3, block3, 1024),
        "block4": (1, 10, 10, 2048),
    }


def test_block3_strides_leaves_block4_unchanged():
    strided, plain = ResNet50(block3_strides=True), ResNet50(block3_strides=False)
    images = _images()
    strided(images)
    plain(images)
    plain.set_weights(strided.get_weights())
    a, b = strided(images), plain(images)
    assert_outputs_close(a["block4"], b["block4"], rtol=1e-5)
    assert_outputs_close(a["block3"], b["block3"][:, ::2, ::2, :], rtol=1e-5)


@pytest.mark.parametrize("delg", [False, True], ids=["delf", "delg"])
@pytest.mark.parametrize("autoencoder", [True, False], ids=["ae", "noae"])
@pytest.mark.parametrize("block3_strides", [True, False], ids=["strided", "unstrided"])
def test_output_shapes(delg, autoencoder, block3_strides):
    config = ModelConfig(
        num_classes=CLASSES,
        delg_global_features=delg,
        use_autoencoder=autoencoder,
        block3_strides=block3_strides,
        delg_embedding_layer_dim=64,
    )
    model = DelfModel(config)
    out = model(_images(), labels=LABELS, training=True)
    h = 2 if block3_strides else 4  # 64 -> 32 -> 15 -> 15 -> 8 -> 4 (-> 2)
    expected = {
        "block3": (BATCH, h, h, 1024),
        "global_descriptor": (BATCH, 64 if delg else 2048),
        "desc_logits": (BATCH, CLASSES),
        "attn_logits": (BATCH, CLASSES),
        "attention_prob": (BATCH, h, h, 1),
        "attention_score": (BATCH, h, h, 1),
        "local_features": (BATCH, h, h, 128 if autoencoder else 1024),
    }
    if autoencoder:
        expected["reconstruction"] = (BATCH, h, h, 1024)
    assert {k: tuple(v.shape) for k, v in out.items()} == expected
    assert (model.autoencoder is not None) == autoencoder
    assert model.global_descriptor_dim == expected["global_descriptor"][1]
    validation = model.validation_logits(_images())
    assert {k: tuple(v.shape) for k, v in validation.items()} == {
        "desc_logits": (BATCH, CLASSES),
        "attn_logits": (BATCH, CLASSES),
    }


def test_validation_logits_match_inference_without_autoencoder():
    model = create_model("delg_r50", num_classes=CLASSES, use_autoencoder=False)
    images = _images()
    out = model(images, training=False)
    validation = model.validation_logits(images)
    assert_outputs_close(validation["desc_logits"], out["desc_logits"], rtol=1e-5)
    assert_outputs_close(validation["attn_logits"], out["attn_logits"], rtol=1e-5)


def test_build_for_creates_every_variable_and_checkpoints_restore(tmp_path):
    model = create_model("delg_r50", num_classes=CLASSES)
    assert not model.weights
    model.build_for(SIZE)
    count = len(model.weights)
    model(_images(), labels=LABELS, training=True)
    assert len(model.weights) == count
    path = tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt"))
    restored = create_model("delg_r50", num_classes=CLASSES)
    restored.build_for(SIZE)
    tf.train.Checkpoint(model=restored).read(path).assert_consumed()
    assert_outputs_close(restored(_images()), model(_images()), rtol=1e-6)


@pytest.mark.parametrize("delg", [False, True])
def test_feature_model_without_classifiers_extracts_what_the_full_model_computes(delg, tmp_path):
    variant = "delg_r50" if delg else "delf_r50"
    full = create_model(variant, num_classes=CLASSES)
    full.build_for(SIZE)
    features = create_model(variant, num_classes=None)
    features.build_for(SIZE)
    assert not any("fc" in w.path or "cosine" in w.path for w in features.weights)
    # Same weights, by checkpoint, without the classifiers.
    path = tf.train.Checkpoint(model=full).write(str(tmp_path / "ckpt"))
    tf.train.Checkpoint(model=features).read(
        path
    ).assert_existing_objects_matched().expect_partial()
    images = _images()
    out, extracted = full(images, training=False), features.extract(images)
    for name in ("attention_prob", "local_features", "global_descriptor"):
        assert_outputs_close(extracted[name], out[name], rtol=1e-5)
    assert extracted["local_features"].shape[-1] == features.local_descriptor_dim
    assert extracted["global_descriptor"].shape[-1] == features.global_descriptor_dim
    with pytest.raises(ValueError, match="only runs extract"):
        features(images)


def test_mixed_float16_outputs_are_finite():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = create_model("delg_r50", num_classes=CLASSES, delg_embedding_layer_dim=64)
        out = model(_images(), labels=LABELS, training=True)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert out["desc_logits"].dtype == tf.float32
    for name, value in out.items():
        assert np.all(np.isfinite(tf.cast(value, tf.float32).numpy())), name


# ----------------------------------------------------------------------------------------
# Heads against numpy


def test_gem_pooling_matches_numpy():
    x = np.random.default_rng(0).normal(size=(2, 3, 4, 5)).astype(np.float32)
    got = GeMPooling(power=3.0)(x).numpy()
    want = np.mean(np.maximum(x, 1e-6) ** 3.0, axis=(1, 2)) ** (1 / 3.0)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert not GeMPooling().trainable_weights


def test_attention_head_pools_normalised_targets():
    rng = np.random.default_rng(1)
    inputs = rng.normal(size=(2, 3, 3, 8)).astype(np.float32)
    targets = rng.normal(size=(2, 3, 3, 6)).astype(np.float32)
    head = AttentionHead()
    out = head(inputs, targets=targets)
    prob = np.log1p(np.exp(out["score"].numpy()))
    np.testing.assert_allclose(out["prob"].numpy(), prob, rtol=1e-5)
    normed = targets / np.linalg.norm(targets, axis=-1, keepdims=True)
    np.testing.assert_allclose(out["feature"].numpy(), (normed * prob).mean(axis=(1, 2)), atol=1e-6)
    assert head.losses == []  # the original's L2 was declared but never applied


def _numpy_cosine_logits(x, w, labels, scale, margin):
    x, w = x.astype(np.float64), w.astype(np.float64)
    cos = (x / np.linalg.norm(x, axis=1, keepdims=True)) @ (w / np.linalg.norm(w, axis=0))
    if labels is not None:
        for row, label in enumerate(labels):
            theta = math.acos(np.clip(cos[row, label], -1.0, 1.0))
            if theta <= math.pi - margin:
                cos[row, label] = math.cos(theta + margin)
    return scale * cos


def test_cosine_classifier_and_arcface_match_numpy():
    rng = np.random.default_rng(2)
    x, w = rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=(4, 3)).astype(np.float32)
    x[2] = -w[:, 0]  # θ = π for row 2's true class 0: past π − m, left unchanged
    labels = np.array([1, 2, 0])
    plain = _numpy_cosine_logits(x, w, None, 45.25, 0.1)
    arc = _numpy_cosine_logits(x, w, labels, 45.25, 0.1)
    assert arc[2, 0] == pytest.approx(plain[2, 0]) and arc[0, 1] < plain[0, 1]
    close = functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-4)
    layer, no_margin = CosineClassifier(3, 45.25, 0.1), CosineClassifier(3, 45.25, 0.0)
    for target in (layer, no_margin):
        target(x)
        target.cosine_weights.assign(w)
        assert not target.scale_factor.trainable
    close(layer(x).numpy(), plain)
    close(layer(x, labels=labels).numpy(), plain)
    close(layer(x, labels=labels, training=True).numpy(), arc)
    close(no_margin(x, labels=labels, training=True).numpy(), plain)
    cosine = tf.constant([[1.0, -1.0, 0.3]])
    with tf.GradientTape() as tape:
        tape.watch(cosine)
        out = arcface_margin(cosine, tf.constant([0]), 0.1)
    assert np.all(np.isfinite(tape.gradient(out, cosine).numpy()))  # finite at cos = 1


# ----------------------------------------------------------------------------------------
# Gradients


def test_no_gradient_from_local_heads_into_backbone():
    model = create_model("delf_r50", num_classes=CLASSES)
    model.build_for(SIZE)
    with tf.GradientTape(persistent=True) as tape:
        out = model(_images(), labels=LABELS, training=True)
        losses = compute_losses(out, LABELS, BATCH, TrainConfig())
        local, glob = losses["attn"] + losses["recon"], losses["desc"]
    backbone = model.backbone.trainable_weights
    assert all(g is None for g in tape.gradient(local, backbone))
    head = model.attention.trainable_weights + model.autoencoder.trainable_weights
    assert all(g is not None for g in tape.gradient(local, head))
    assert all(g is not None for g in tape.gradient(glob, backbone))


# ----------------------------------------------------------------------------------------
# Registry


def test_registry_and_config_errors():
    assert set(MODEL_VARIANTS) == {"delf_r50", "delg_r50"}
    assert create_model("delg_r50", num_classes=3).config.delg_global_features
    assert not create_model("delf_r50", num_classes=3).config.delg_global_features
    with pytest.raises(ValueError, match="unknown model variant 'nope'"):
        create_model("nope", num_classes=3)
    with pytest.raises(ValueError, match="num_clases"):
        create_model("delf_r50", num_clases=3)
    with pytest.raises(ValueError, match="local_feature_map_channels"):
        ModelConfig(num_classes=3, local_feature_map_channels=512)
    with pytest.raises(ValueError, match="num_classes"):
        ModelConfig(num_classes=0)
    assert ModelConfig(num_classes=3, autoencoder_dimensions=128.0).autoencoder_dimensions == 128


# ----------------------------------------------------------------------------------------
# The trainer's losses and step


def test_losses_against_values_worked_by_hand():
    labels = tf.constant([0, 1])
    outputs = {
        "desc_logits": tf.zeros([2, 2]),  # p = 1/2 each: ln 2 per example
        "attn_logits": tf.constant([[math.log(3.0), 0.0], [0.0, 0.0]]),  # ln(4/3), ln 2
        "block3": tf.zeros([2, 1, 1, 2]),
        "reconstruction": tf.constant([[[[1.0, 1.0]]], [[[3.0, 0.0]]]]),  # MSE 1 and 4.5
    }
    config = TrainConfig(attention_loss_weight=0.5, reconstruction_loss_weight=10.0)
    want = {"desc": math.log(2.0), "attn": math.log(8 / 3) / 2, "recon": 2.75}
    want["total"] = want["desc"] + 0.5 * want["attn"] + 10.0 * want["recon"]
    got = compute_losses(outputs, labels, 2, config)
    assert {k: float(v) for k, v in got.items()} == pytest.approx(want, rel=1e-6)
    # Divided by the global batch: two replicas of this batch each give half.
    halves = compute_losses(outputs, labels, 4, config)
    assert {k: float(v) for k, v in halves.items()} == pytest.approx(
        {k: v / 2 for k, v in want.items()}, rel=1e-6
    )
    no_ae = compute_losses(outputs, labels, 2, dataclasses.replace(config, use_autoencoder=False))
    assert float(no_ae["recon"]) == 0.0
    assert float(no_ae["total"]) == pytest.approx(want["desc"] + 0.5 * want["attn"], rel=1e-6)
    # The reconstruction target is block3 held fixed: its loss moves only the autoencoder.
    block3, recon = outputs["block3"], outputs["reconstruction"]
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([block3, recon])
        loss = compute_losses(outputs, labels, 2, config)["recon"]
    assert tape.gradient(loss, block3) is None
    assert tape.gradient(loss, recon) is not None
    # Row 0 is right; row 1 is a tie, which argmax gives to class 0.
    assert float(correct_predictions(labels, outputs["attn_logits"])) == 1.0


def _step_on_a_tiny_batch(name: str, **overrides):
    """The trainer's model, optimizer and step for `name`, after one step on one batch."""
    config = TrainConfig(
        delg_global_features=name == "delg_r50",
        image_size=SIZE,
        batch_size=BATCH,
        max_iters=100,
        **overrides,
    )
    strategy = tf.distribute.get_strategy()
    model, optimizer = build_model_and_optimizer(config, CLASSES, strategy)
    step = make_train_step(model, optimizer, strategy, config, CLASSES)
    before = [w.numpy().copy() for w in model.trainable_weights]
    metrics = step(_batches(strategy, LABELS), tf.constant(1))
    return model, optimizer, step, before, {k: float(v) for k, v in metrics.items()}


def _batches(strategy: tf.distribute.Strategy, labels: tf.Tensor):
    """The trainer's input: a distributed iterator, here of the same batch over and over."""
    data = tf.data.Dataset.from_tensors((_images(), labels)).repeat()
    return iter(strategy.experimental_distribute_dataset(data))


@pytest.mark.integration
@pytest.mark.parametrize("name", sorted(MODEL_VARIANTS))
def test_registered_variant_forward_train_step_and_contract(name, tmp_path):
    # A clip far below the gradient's norm makes the step's size known: lr * clip_norm.
    # Their product is 1, so that no weight's share of the step is lost to rounding.
    lr, clip = 100.0, 0.01
    model, optimizer, step, before, metrics = _step_on_a_tiny_batch(
        name, initial_lr=lr, clip_norm=clip
    )
    assert set(metrics) == {
        "loss/desc",
        "loss/attn",
        "loss/recon",
        "loss/total",
        "train_accuracy/desc",
        "train_accuracy/attn",
    }
    assert all(np.isfinite(v) for v in metrics.values()), metrics
    assert metrics["loss/recon"] > 0 and metrics["loss/total"] > metrics["loss/desc"] > 0
    assert all(0.0 <= metrics[f"train_accuracy/{h}"] <= 1.0 for h in ("desc", "attn"))
    assert int(optimizer.iterations) == 1
    after = [w.numpy() for w in model.trainable_weights]
    unchanged = [
        w.path
        for w, b, a in zip(model.trainable_weights, before, after, strict=True)
        if np.array_equal(b, a)
    ]
    assert not unchanged  # every trainable weight got a gradient
    # First SGD step from zero momentum: the weights move by lr times the clipped gradient.
    moved = math.sqrt(sum(float(np.sum((a - b) ** 2)) for b, a in zip(before, after, strict=True)))
    assert moved == pytest.approx(lr * clip, rel=1e-3)
    out_of_range = tf.constant([0, CLASSES], tf.int64)
    with pytest.raises(tf.errors.InvalidArgumentError, match="not below num_classes"):
        step(_batches(tf.distribute.get_strategy(), out_of_range), tf.constant(1))
    run_layer_contract(
        model, _images(1), tmp_path, tensor_kwargs={"labels": LABELS}, options={"training": False}
    )


# ----------------------------------------------------------------------------------------
# Layer contract


_TARGETS = {"targets": tf.ones([2, 3, 3, 4])}
_LAYER_CASES = {
    "bottleneck_proj": (lambda: BottleneckBlock((4, 4, 8), 3, "a", 2, True), (2, 5, 5, 6), {}, {}),
    "bottleneck_id": (lambda: BottleneckBlock((4, 4, 6), 3, "b"), (2, 5, 5, 6), {}, {}),
    "attention": (lambda: AttentionHead(hidden_channels=8), (2, 3, 3, 6), {}, {}),
    "attention_targets": (lambda: AttentionHead(hidden_channels=8), (2, 3, 3, 6), _TARGETS, {}),
    "autoencoder": (lambda: Autoencoder(4, 6), (2, 3, 3, 6), {}, {}),
    "gem": (lambda: GeMPooling(power=2.5), (2, 3, 3, 6), {}, {}),
    "cosine": (
        lambda: CosineClassifier(5, 30.0, 0.2),
        (2, 6),
        {"labels": LABELS},
        {"training": True},
    ),
}


@pytest.mark.parametrize("case", list(_LAYER_CASES))
def test_layer_contract(case, tmp_path):
    make, shape, tensor_kwargs, options = _LAYER_CASES[case]
    inputs = tf.random.stateless_normal(shape, seed=[3, 4])
    run_layer_contract(make(), inputs, tmp_path, tensor_kwargs=tensor_kwargs, options=options)


@pytest.mark.integration
def test_backbone_contract(tmp_path):
    run_layer_contract(
        ResNet50(block3_strides=True), _images(), tmp_path, options={"training": False}
    )


# ----------------------------------------------------------------------------------------
# ImageNet HDF5 weights


def _write_legacy_h5(path, layers: list[tuple[str, list[tuple[str, np.ndarray]]]]) -> None:
    """Writes the legacy Keras weights layout, as in the released ResNet-50 file."""
    with h5py.File(path, "w") as handle:
        handle.attrs["layer_names"] = [name.encode() for name, _ in layers]
        handle.attrs["backend"] = b"tensorflow"
        handle.attrs["keras_version"] = b"2.2.4"
        for name, weights in layers:
            group = handle.create_group(name)
            group.attrs["weight_names"] = [w.encode() for w, _ in weights]
            for weight_name, value in weights:
                group.create_dataset(weight_name, data=value)


@pytest.fixture(scope="module")
def applications_resnet():
    """keras.applications' ResNet-50 with every weight (BN statistics too) randomised."""
    model = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(64, 64, 3))
    rng = np.random.default_rng(0)
    for variable in model.weights:
        variable.assign(rng.uniform(0.5, 1.5, size=variable.shape).astype(np.float32))
    return model


_KERAS1_NAMES = {"kernel": "W", "bias": "b", "moving_mean": "running_mean"}
_KERAS1_NAMES["moving_variance"] = "running_std"


def _layer_weights(named_layers, keras1=False) -> list[tuple[str, list[tuple[str, np.ndarray]]]]:
    # As in the released files: every layer is listed, those without weights with none;
    # Keras 1 files name weights `res2a_branch2a_W:0`, later ones `conv1_conv/kernel:0`.
    def weight_name(layer_name, name):
        return (
            f"{layer_name}_{_KERAS1_NAMES.get(name, name)}:0"
            if keras1
            else f"{layer_name}/{name}:0"
        )

    return [
        (name, [(weight_name(name, v.name), v.numpy()) for v in layer.weights])
        for name, layer in named_layers
    ]


def _assert_loaded(backbone, loaded, file_layers):
    file_weights = {name: [value for _, value in weights] for name, weights in file_layers}
    layers = backbone.weight_layers()
    assert set(loaded) == set(layers) and len(layers) == 106  # 53 convs, 53 BNs, stem too
    for name, layer in layers.items():
        values = file_weights[loaded[name]]
        assert len(values) == len(layer.weights)
        for variable, value in zip(layer.weights, values, strict=True):
            np.testing.assert_array_equal(variable.numpy(), value, err_msg=f"{name}/{variable}")


def test_load_imagenet_weights_both_namings(applications_resnet, tmp_path):
    path = tmp_path / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    file_layers = _layer_weights((layer.name, layer) for layer in applications_resnet.layers)
    # Weights listed in reverse: matched by their names, not their order.
    _write_legacy_h5(path, [(name, weights[::-1]) for name, weights in file_layers])
    backbone = ResNet50()
    loaded = load_imagenet_weights(backbone, str(path))
    assert loaded["conv1"] == "conv1_conv" and loaded["bn_conv1"] == "conv1_bn"
    assert loaded["res2a_branch1"] == "conv2_block1_0_conv"
    assert loaded["bn5c_branch2c"] == "conv5_block3_3_bn"
    _assert_loaded(backbone, loaded, file_layers)

    # The older file names its layers as ours (res2a_branch2a, bn_conv1, ...).
    path = tmp_path / "old_names.h5"
    file_layers = _layer_weights(backbone.weight_layers().items(), keras1=True)
    _write_legacy_h5(path, file_layers)
    other = ResNet50()
    loaded = load_imagenet_weights(other, str(path))
    assert all(name == file_name for name, file_name in loaded.items())
    _assert_loaded(other, loaded, file_layers)


def test_load_imagenet_weights_from_keras_writer(applications_resnet, tmp_path):
    legacy = pytest.importorskip("keras.src.legacy.saving.legacy_h5_format")
    path = tmp_path / "keras_writer.h5"
    with h5py.File(path, "w") as handle:
        legacy.save_weights_to_hdf5_group(handle, applications_resnet)
    backbone = ResNet50()
    loaded = load_imagenet_weights(backbone, str(path))
    _assert_loaded(
        backbone, loaded, _layer_weights((x.name, x) for x in applications_resnet.layers)
    )


def test_load_imagenet_weights_rejects_wrong_files(tmp_path):
    backbone = ResNet50()
    backbone.build((None, None, None, 3))
    before = [w.numpy() for w in backbone.weights]

    text = tmp_path / "weights.h5"
    text.write_text("not hdf5")
    with pytest.raises(ValueError, match=r"weights\.h5 is not a readable HDF5 weights file"):
        load_imagenet_weights(backbone, str(text))

    empty = tmp_path / "empty.h5"
    h5py.File(empty, "w").close()
    with pytest.raises(ValueError, match=r"empty\.h5 is not a Keras HDF5 weights file"):
        load_imagenet_weights(backbone, str(empty))

    stem = dict(_layer_weights([("conv1_conv", backbone.conv1), ("conv1_bn", backbone.bn_conv1)]))
    truncated = tmp_path / "truncated.h5"
    _write_legacy_h5(truncated, list(stem.items()))
    with pytest.raises(ValueError, match="truncated.h5 has no layer 'res2a_branch2a'"):
        load_imagenet_weights(backbone, str(truncated))
    url = "memory://imagenet/truncated.h5"  # URLs are read through fsspec
    with fsspec.open(url, "wb") as stream:
        stream.write(truncated.read_bytes())
    with pytest.raises(ValueError, match=f"{url} has no layer 'res2a_branch2a'"):
        load_imagenet_weights(backbone, url)

    # Another architecture: a 3x3 stem (e.g. a CIFAR ResNet).
    stem["conv1_conv"][0] = ("conv1_conv/kernel:0", np.ones((3, 3, 3, 64), np.float32))
    other = tmp_path / "other.h5"
    _write_legacy_h5(other, list(stem.items()))
    with pytest.raises(
        ValueError, match=r"conv1_conv/conv1_conv/kernel:0 has shape \(3, 3, 3, 64\).*'conv1'"
    ):
        load_imagenet_weights(backbone, str(other))

    for old, new in zip(before, backbone.weights, strict=True):
        np.testing.assert_array_equal(old, new.numpy())
