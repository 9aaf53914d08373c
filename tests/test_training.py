"""`delf train` on the mini dataset's TFRecords: learning, resuming, errors, several workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.framework.config import is_op_determinism_enabled

from delf_cli.main import parse_args
from delf_core.training.config import NUM_CLASSES, TrainConfig
from delf_core.training.loop import LabelOutOfRangeError, train
from tests.flag_help import assert_help_shows_defaults
from tests.killed_process import kill_when_marked
from tests.server_process import free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def records(mini_records):
    return mini_records


def tiny(records, logdir, **overrides) -> TrainConfig:
    values = dict(
        logdir=str(logdir),
        train_file_pattern=f"{records}/train*",
        validation_file_pattern=f"{records}/validation*",
        dataset_version="manifest",
        image_size=32,
        batch_size=2,
        max_iters=4,
        report_interval=2,
        eval_interval=2,
        save_interval=2,
        num_eval_batches=1,
    )
    values.update(overrides)
    return TrainConfig(**values)


def train_argv(records, logdir, *flags: str) -> list[str]:
    """`delf train` flags for a tiny run on the mini records."""
    return [
        "train",
        f"--train_file_pattern={records}/train*",
        f"--validation_file_pattern={records}/validation*",
        "--dataset_version=manifest",
        f"--logdir={logdir}",
        "--image_size=32",
        "--num_eval_batches=1",
        *flags,
    ]


def test_delf_learns_on_the_mini_dataset(records, tmp_path):
    # 200 steps: the batch-norm moving averages (momentum 0.99) that validation uses need
    # about that many to forget their initial values.
    config = tiny(
        records,
        tmp_path / "logs",
        image_size=64,
        batch_size=16,
        max_iters=200,
        initial_lr=0.02,
        use_augmentation=False,
        use_autoencoder=False,
        report_interval=20,
        eval_interval=200,
        save_interval=200,
        num_eval_batches=1,
        deterministic=True,
    )

    result = train(config)

    losses = [h["loss/desc"] for h in result.history if "loss/desc" in h]
    # One batch's loss is noisy: the median of the last five reports against the first.
    assert sorted(losses[-5:])[2] < 0.5 * losses[0], losses
    chance = 1 / 10
    assert result.metrics["validation/desc"] >= 3 * chance, result.history
    manifest = json.loads((tmp_path / "logs" / "train_manifest.json").read_text())
    assert manifest["global_step"] == 200 and len(manifest["history"]) == 10


def test_delg_with_autoencoder_writes_checkpoints_weights_and_summaries(records, tmp_path):
    logdir = tmp_path / "logs"
    result = train(tiny(records, logdir, delg_global_features=True))

    assert result.step == 4
    assert tf.train.latest_checkpoint(str(logdir / "delf_tf2-ckpt")).endswith("ckpt-4")
    assert (logdir / "delf_weights.index").exists()
    tags = set()
    for event_file in (logdir / "train_logs").glob("events.*"):
        for event in tf.compat.v1.train.summary_iterator(str(event_file)):
            tags |= {value.tag for value in event.summary.value}
    for tag in (
        "learning_rate",
        "loss/desc/crossentropy",
        "loss/attn/crossentropy",
        "loss/recon/mse",
        "train_accuracy/desc",
        "train_accuracy/attn",
        "attention/percent_50",
        "sparsity/block3",
        "desc/scale_factor",
        "validation/desc",
        "validation/attn",
        "batch_images",
        "batch_attention",
    ):
        assert tag in tags, tag

    again = train(tiny(records, logdir, delg_global_features=True))
    assert again.already_done and again.step == 4


def _weights(logdir) -> dict:
    reader = tf.train.load_checkpoint(str(logdir / "delf_weights"))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def test_deterministic_runs_of_one_seed_train_the_same_weights(records, tmp_path):
    # Two shards read in parallel, crops and a shuffle: what --deterministic must order.
    results, weights = [], []
    for run in ("a", "b"):
        logdir = tmp_path / run
        results.append(
            train(tiny(records, logdir, max_iters=3, delg_global_features=True, deterministic=True))
        )
        weights.append(_weights(logdir))

    assert not is_op_determinism_enabled()  # put back for the steps after training
    assert weights[0].keys() == weights[1].keys()
    floats = [
        name for name, value in weights[0].items() if getattr(value, "dtype", None) == "float32"
    ]
    assert len(floats) > 300
    for name in floats:
        np.testing.assert_array_equal(weights[0][name], weights[1][name], err_msg=name)
    # Every figure but the rate.
    for history in zip(results[0].history, results[1].history, strict=True):
        a, b = ({k: v for k, v in h.items() if k != "global_steps_per_sec"} for h in history)
        assert a == b


def test_several_steps_per_call_still_stop_at_every_report_and_save(records, tmp_path):
    logdir = tmp_path / "logs"
    reports = []
    result = train(
        tiny(
            records,
            logdir,
            steps_per_loop=3,
            max_iters=7,
            report_interval=2,
            save_interval=5,
            eval_interval=100,
            use_autoencoder=False,
        ),
        on_report=lambda step, max_iters, metrics: reports.append((step, max_iters, metrics)),
    )
    assert [h["step"] for h in result.history] == [2, 4, 6, 7]
    # Once at the start (no metrics yet), then at every report with what was logged.
    assert [step for step, _, _ in reports] == [0, 2, 4, 6, 7]
    assert {max_iters for _, max_iters, _ in reports} == {7}
    assert reports[0][2] == {} and reports[-1][2]["loss/total"] == result.history[-1]["loss/total"]
    assert all(metrics["global_steps_per_sec"] > 0 for _, _, metrics in reports[1:])
    saved = sorted(p.name for p in (logdir / "delf_tf2-ckpt").glob("*.index"))
    assert saved == ["ckpt-5.index", "ckpt-7.index"]


def test_every_saved_checkpoint_reaches_the_disk_with_its_marker(records, tmp_path, monkeypatch):
    """A power cut must not leave the `checkpoint` marker naming bytes still in memory."""
    synced = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    logdir = tmp_path / "logs"

    train(tiny(records, logdir, eval_interval=100))

    checkpoints = logdir / "delf_tf2-ckpt"
    for step in (2, 4):
        for path in checkpoints.glob(f"ckpt-{step}.*"):
            assert str(path) in synced, path
    assert str(checkpoints / "checkpoint") in synced and str(checkpoints) in synced
    weights = list(logdir.glob("delf_weights.*"))
    assert weights and all(str(path) in synced for path in weights)


def test_labels_out_of_range_are_an_error_not_a_clip(records, tmp_path):
    with pytest.raises(LabelOutOfRangeError, match=r"outside \[0, 3\)"):
        train(tiny(records, tmp_path / "logs", num_classes=3, dataset_version="gld_v1"))


# `delf train` that stops for good once step 4's checkpoint is saved: the test kills it
# there, so the kill always lands between two checkpoints however loaded the machine.
_STOPS_AFTER_STEP_4 = """
import sys, threading
import delf_core.training.loop as loop
from delf_cli.main import main

save = loop._save

def save_then_wait(manager, checkpoint, model, step, *args):
    save(manager, checkpoint, model, step, *args)
    if step == 4:
        open(sys.argv[1], "w").close()
        threading.Event().wait(900)  # the test kills the process here

loop._save = save_then_wait
sys.exit(main(sys.argv[2:]))
"""


def test_killed_run_resumes_at_the_saved_step_with_the_same_learning_rate(records, tmp_path):
    logdir = tmp_path / "logs"
    argv = train_argv(
        records,
        logdir,
        "--batch_size=2",
        "--max_iters=10",
        "--save_interval=2",
        "--report_interval=2",
        "--eval_interval=1000",
    )
    reached = tmp_path / "saved_step_4"
    kill_when_marked(
        [sys.executable, "-c", _STOPS_AFTER_STEP_4, str(reached), *argv],
        reached,
        "the checkpoint of step 4",
    )
    saved = int(tf.train.latest_checkpoint(str(logdir / "delf_tf2-ckpt")).rsplit("-", 1)[1])
    assert saved == 4

    from delf_cli.flags import build_config

    steps = []
    # The same command again.
    config = build_config(parse_args(argv)[1], TrainConfig)
    resumed = train(config, on_report=lambda s, *_: steps.append(s))

    assert resumed.resumed_from == 4 and resumed.step == 10
    assert steps == [4, 6, 8, 10]  # progress starts where the checkpoint left off
    first = resumed.history[0]
    assert first["step"] == 6
    assert first["learning_rate"] == pytest.approx(0.01 * (1 - 6 / 10), rel=1e-5)
    assert train(config).already_done


def test_two_cpu_workers_train_together_and_write_one_checkpoint(records, tmp_path):
    ports = [free_port(), free_port()]
    logdir = tmp_path / "logs"
    argv = [
        sys.executable,
        "-m",
        "delf_cli.main",
        *train_argv(
            records,
            logdir,
            "--batch_size=4",
            "--max_iters=2",
            "--save_interval=2",
            "--report_interval=2",
            "--eval_interval=2",
            "--nouse_autoencoder",
        ),
    ]
    processes = []
    for index in range(2):
        tf_config = {
            "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
            "task": {"type": "worker", "index": index},
        }
        env = {**os.environ, "TF_CONFIG": json.dumps(tf_config), "CUDA_VISIBLE_DEVICES": "-1"}
        processes.append(
            subprocess.Popen(
                argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
        )
    outputs = [p.communicate(timeout=1200)[0] for p in processes]
    for process, output in zip(processes, outputs, strict=True):
        assert process.returncode == 0, output[-3000:]
        assert "MultiWorkerMirroredStrategy" in output
    assert [p.name for p in (logdir / "delf_tf2-ckpt").glob("*.index")] == ["ckpt-2.index"]
    assert json.loads((logdir / "train_manifest.json").read_text())["global_step"] == 2


def test_train_help_documents_the_original_flags(capsys):
    assert_help_shows_defaults(
        capsys,
        "train",
        [
            ("--logdir", "'/tmp/delf'"),
            ("--dataset_version", "'gld_v1'"),
            ("--initial_lr", "0.01"),
            ("--batch_size", "32"),
            ("--max_iters", "500000"),
            ("--block3_strides", "True"),
            ("--use_autoencoder", "True"),
            ("--delg_scale_factor_init", "45.25"),
            ("--image_size", "321"),
            ("--autoencoder_dimensions", "128"),
        ],
    )
    assert NUM_CLASSES["gld_v2_clean"] == 81313
