"""op_determinism: TensorFlow's deterministic kernels for one block, then as before."""

from __future__ import annotations

import pytest
import tensorflow as tf
from tensorflow.python.framework.config import disable_op_determinism, is_op_determinism_enabled

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
