"""`--ckpt_path` names a checkpoint or a checkpoint folder; read without TensorFlow."""

from __future__ import annotations

import pytest
import tensorflow as tf

from delf_core.export.checkpoint_path import resolve_checkpoint


def test_a_folder_resolves_to_the_latest_checkpoint_as_tensorflow_finds_it(tmp_path):
    folder = tmp_path / "delf_tf2-ckpt"
    manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(v=tf.Variable(1.0)), str(folder), max_to_keep=3
    )
    manager.save()
    manager.save()
    assert resolve_checkpoint(str(folder)) == tf.train.latest_checkpoint(str(folder))
    assert resolve_checkpoint(str(folder)).endswith("ckpt-2")


def test_a_prefix_is_itself_and_a_missing_one_names_the_flag(tmp_path):
    prefix = str(tmp_path / "delf_weights")
    tf.train.Checkpoint(v=tf.Variable(1.0)).write(prefix)
    assert resolve_checkpoint(prefix) == prefix
    with pytest.raises(
        FileNotFoundError, match=r"--ckpt_path=.*nothing.*expected .*nothing\.index"
    ):
        resolve_checkpoint(str(tmp_path / "nothing"))


def test_a_state_file_naming_a_missing_or_no_checkpoint_is_not_followed(tmp_path):
    folder = tmp_path / "ckpts"
    folder.mkdir()
    (folder / "checkpoint").write_text('model_checkpoint_path: "../../etc/passwd"\n')
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        resolve_checkpoint(str(folder))
    (folder / "checkpoint").write_bytes(b"\x00\xff garbage")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        resolve_checkpoint(str(folder))
