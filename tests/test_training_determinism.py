"""Training that depends on its seed alone: initial weights, deterministic kernels."""

from __future__ import annotations

import random

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.framework.config import disable_op_determinism, is_op_determinism_enabled

from delf_core.model import create_model
from delf_core.model.initial_weights import seed_initial_weights
from delf_core.training.determinism import op_determinism


def test_on_for_the_block_and_off_after_it_even_when_it_raises():
    assert not is_op_determinism_enabled()
    with op_determinism(True):
        assert is_op_determinism_enabled()
    assert not is_op_determinism_enabled()

    with pytest.raises(RuntimeError), op_determinism(True):
        raise RuntimeError("training failed")
    assert not is_op_determinism_enabled()


def test_left_alone_when_not_asked():
    with op_determinism(False):
        assert not is_op_determinism_enabled()
    assert not is_op_determinism_enabled()


def test_a_process_made_deterministic_by_its_owner_stays_so():
    tf.config.experimental.enable_op_determinism()
    try:
        with op_determinism(True):
            assert is_op_determinism_enabled()
        assert is_op_determinism_enabled()
    finally:
        disable_op_determinism()


def _initial_weights(seed: int, other_draws: int) -> tuple[int, list[np.ndarray]]:
    keras.utils.set_random_seed(0)
    for _ in range(other_draws):  # as another thread of the process may, meanwhile
        random.random()
    model = create_model("delg_r50", num_classes=3, delg_embedding_layer_dim=16)
    model.build_for(32)
    redrawn = seed_initial_weights(model, seed)
    return redrawn, [weight.numpy() for weight in model.weights]


def test_initial_weights_come_from_the_seed_alone():
    redrawn, first = _initial_weights(seed=7, other_draws=0)
    again, second = _initial_weights(seed=7, other_draws=3)
    # 53 backbone convolutions, 2 attention and 2 autoencoder ones, the embedding, the
    # attention classifier and the cosine classifier; biases and batch norms are constants.
    assert redrawn == again == 60
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    _, other_seed = _initial_weights(seed=8, other_draws=0)
    assert not np.array_equal(first[0], other_seed[0])


def test_a_redrawn_weight_keeps_its_initializer_s_distribution():
    layer = keras.layers.Dense(40, kernel_initializer="he_normal", bias_initializer="ones")
    layer.build((None, 60))
    assert seed_initial_weights(layer, seed=1) == 1
    kernel = layer.kernel.numpy()
    # He normal: a standard deviation of sqrt(2 / fan_in), where Glorot's would be 0.77 of it.
    assert 0.9 < kernel.std() / np.sqrt(2 / 60) < 1.1
    np.testing.assert_array_equal(layer.bias.numpy(), np.ones(40))
