"""Shared contract every Keras layer and model of delf_core.model must pass."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf


def assert_outputs_close(actual: Any, expected: Any, rtol: float = 1e-4) -> None:
    """Asserts two (nested) outputs have the same structure and close values.

    The absolute tolerance scales with each tensor's magnitude: an untrained ResNet's
    activations grow through the blocks, and graph mode may fuse ops differently.
    """
    tf.nest.assert_same_structure(actual, expected)
    for got, want in zip(tf.nest.flatten(actual), tf.nest.flatten(expected), strict=True):
        got, want = np.asarray(got), np.asarray(want)
        assert got.shape == want.shape, (got.shape, want.shape)
        scale = max(1.0, float(np.abs(want).max(initial=0.0)))
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale)


def run_layer_contract(
    layer: keras.layers.Layer,
    inputs: tf.Tensor,
    tmp_path: Path,
    tensor_kwargs: dict[str, tf.Tensor] | None = None,
    options: dict[str, Any] | None = None,
) -> None:
    """Checks config round trip, `.keras` save and reload, eager == tf.function, tf.data.

    Args:
        layer: The layer or model under test (built here by its first call if needed).
        inputs: The first positional argument of the call.
        tmp_path: Directory for the saved file.
        tensor_kwargs: Tensor keyword arguments of the call (e.g. `targets`, `labels`).
        options: Python keyword arguments of the call (e.g. `training=False`).
    """
    tensor_kwargs = dict(tensor_kwargs or {})
    options = dict(options or {})

    def call(target, x, kwargs):
        return target(x, **kwargs, **options)

    expected = call(layer, inputs, tensor_kwargs)

    # get_config round trip: the clone has the same config and, with the same weights,
    # computes the same outputs.
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    serialized = keras.saving.serialize_keras_object(layer)
    assert type(keras.saving.deserialize_keras_object(serialized)) is type(layer)
    call(clone, inputs, tensor_kwargs)
    clone.set_weights(layer.get_weights())
    assert_outputs_close(call(clone, inputs, tensor_kwargs), expected)

    # Save as .keras and reload: same class, same variables, same outputs.
    path = tmp_path / f"{layer.name}.keras"
    keras.saving.save_model(layer, path)
    reloaded = keras.saving.load_model(path)
    assert type(reloaded) is type(layer)
    assert [v.path for v in reloaded.weights] == [v.path for v in layer.weights]
    assert_outputs_close(call(reloaded, inputs, tensor_kwargs), expected)

    # Eager equals tf.function.
    graph_call = tf.function(lambda x, kwargs: call(layer, x, kwargs))
    assert_outputs_close(graph_call(inputs, tensor_kwargs), expected)

    # Callable inside tf.data.Dataset.map.
    dataset = tf.data.Dataset.from_tensors((inputs, tensor_kwargs))
    dataset = dataset.map(lambda x, kwargs: call(layer, x, kwargs))
    assert_outputs_close(next(iter(dataset)), expected)
