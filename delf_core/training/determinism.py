"""Deterministic TensorFlow kernels for the length of one training run."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import tensorflow as tf

# The public API can only turn determinism on; these read and undo it.
from tensorflow.python.framework.config import (
    disable_op_determinism,
    is_op_determinism_enabled,
)


@contextlib.contextmanager
def op_determinism(enabled: bool) -> Iterator[None]:
    """Runs the block with TensorFlow's deterministic kernels when `enabled`.

    A seeded input pipeline fixes the batches, but GPU kernels (convolution gradients,
    reductions) still add floating-point numbers in whatever order their threads finish,
    so two runs drift apart from the first step. The setting is process-wide: it is put
    back as it was afterwards, so steps run later in the same process (export,
    extraction in a flow) keep their usual speed.
    """
    if not enabled or is_op_determinism_enabled():
        yield
        return
    tf.config.experimental.enable_op_determinism()
    try:
        yield
    finally:
        disable_op_determinism()
