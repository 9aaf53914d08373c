"""Initial weights that depend on the training seed alone."""

from __future__ import annotations

import keras
import numpy as np

_SUFFIX = "_initializer"


def seed_initial_weights(model: keras.Layer, seed: int) -> int:
    """Redraws every randomly initialised weight of the built `model` from `seed`.

    Keras gives an initializer made without a seed one drawn from Python's `random`,
    which every thread of the process shares: in a Prefect flow the client's websocket
    pings draw from it too, so `keras.utils.set_random_seed` alone may start one seed
    from different weights. Here each weight's seed comes from `seed` and the weight's
    place in the model, and its layer's own initializer (`<weight>_initializer`, e.g.
    `kernel_initializer`) draws the values.

    Args:
        model: A built model.
        seed: The training seed.

    Returns:
        How many weights were redrawn.
    """
    rng = np.random.default_rng(seed)
    redrawn = 0
    for layer in model._flatten_layers(include_self=True, recursive=True):
        for name in sorted(vars(layer)):
            initializer = getattr(layer, name)
            if not name.endswith(_SUFFIX) or not isinstance(
                initializer, keras.initializers.Initializer
            ):
                continue
            weight = getattr(layer, name.removesuffix(_SUFFIX), None)
            config = initializer.get_config()
            if not isinstance(weight, keras.Variable) or "seed" not in config:
                continue  # not built, or a constant (zeros, ones)
            drawn = type(initializer).from_config({**config, "seed": int(rng.integers(2**31 - 1))})
            weight.assign(drawn(weight.shape, weight.dtype))
            redrawn += 1
    return redrawn
