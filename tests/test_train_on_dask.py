"""One training on two Dask workers: the same weights as one worker, and a clean stop and
resume when a worker dies."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from delf_core.training.cluster_config import ClusterConfig
from delf_core.training.config import TrainConfig
from tests.test_training import tiny as tiny_training


@pytest.fixture(scope="module")
def dask_cluster():
    """Two worker processes of one thread each, as one Dask worker per machine would be."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster:
        yield cluster


def tiny(records, logdir, **overrides) -> TrainConfig:
    """The training tests' tiny run, deterministic, with a batch two workers can split."""
    return tiny_training(
        records,
        logdir,
        **{
            "batch_size": 4,
            "eval_interval": 1000,
            "use_autoencoder": False,
            "deterministic": True,
            **overrides,
        },
    )


# The TF worker of the run: worker 1 stops for good once it saved step 2 and the chief's
# checkpoint of step 2 is on disk, and says so; the test kills it there.
_WORKER_1_WAITS_AFTER_STEP_2 = """
import json, os, sys, threading, time
import tensorflow as tf
import delf_core.training.loop as loop
from delf_core.training import worker_main

marker, chief_checkpoints = sys.argv[1], sys.argv[2]
index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
save = loop._save

def save_then_wait(manager, checkpoint, model, step, *args):
    save(manager, checkpoint, model, step, *args)
    if index == 1 and step == 2:
        while not (tf.train.latest_checkpoint(chief_checkpoints) or "").endswith("ckpt-2"):
            time.sleep(0.1)
        with open(marker + ".tmp", "w") as out:
            out.write(str(os.getpid()))
        os.rename(marker + ".tmp", marker)
        threading.Event().wait(900)  # the test kills the process here

loop._save = save_then_wait
sys.exit(worker_main.main())
"""


# The same training on one worker whose CPU is split in two replicas, as the two workers
# split each global batch: batch norm normalises each replica's part of the batch on its
# own, so one replica of the whole batch trains other weights (by as much as two steps
# move them), however right the distribution is.
_ONE_WORKER_TWO_REPLICAS = """
import json, sys
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from delf_core.training import distribute, loop
from delf_core.training.config import TrainConfig

loop.make_cluster = lambda: distribute.Cluster(
    tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]), is_chief=True, task_id=0
)
loop.train(TrainConfig(**json.loads(sys.argv[1])))
"""


def _checkpoint_floats(prefix) -> dict[str, np.ndarray]:
    """Every float tensor of a checkpoint: weights, momenta, batch-norm statistics."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(prefix))
    tensors = {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}
    return {n: t for n, t in tensors.items() if getattr(t, "dtype", None) == np.float32}


def _wait_for(path, run, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if run.done():
            raise AssertionError(f"the run ended before {path.name}: {run.result()}")
        assert time.monotonic() < deadline, f"after {timeout:.0f} s: no {path.name}"
        time.sleep(0.1)  # polls the condition; the hang guard is the deadline


@pytest.mark.integration
def test_two_dask_workers_train_as_one_and_resume_after_one_dies(
    mini_records, dask_cluster, tmp_path, caplog
):
    import tensorflow as tf

    from delf_core.training.dask_training import WorkerFailedError, train_on_dask

    cluster = ClusterConfig(
        dask_address=dask_cluster.scheduler_address,
        num_workers=2,
        start_timeout=600,
        stall_timeout=600,
    )
    logdir = tmp_path / "two_workers"
    checkpoints = logdir / "delf_tf2-ckpt"
    config = tiny(mini_records, logdir)
    marker = tmp_path / "worker_1_saved_step_2"
    scratch_before = set(Path(tempfile.gettempdir()).glob("delf-tf-worker-*"))
    steps: list[int] = []
    with ThreadPoolExecutor(1) as pool:
        run = pool.submit(
            train_on_dask,
            config,
            cluster,
            on_steps=lambda step, _: steps.append(step),
            worker_command=[
                sys.executable,
                "-c",
                _WORKER_1_WAITS_AFTER_STEP_2,
                str(marker),
                str(checkpoints),
            ],
        )
        _wait_for(marker, run)
        os.kill(int(marker.read_text()), signal.SIGKILL)
        killed_at = time.monotonic()
        with pytest.raises(WorkerFailedError) as failed:
            run.result(timeout=300)
        stopped_after = time.monotonic() - killed_at
    message = str(failed.value)
    print(f"the run stopped {stopped_after:.1f} s after the kill")
    assert "\n" not in message
    assert "TF worker 1 of 2" in message and "killed by SIGKILL" in message
    assert steps[0] == 0 and 2 in steps
    assert tf.train.latest_checkpoint(str(checkpoints)).endswith("ckpt-2")

    # The same global batch on one worker: every weight, momentum and batch-norm
    # statistic of step 2 is the same, bit for bit (measured; the sum of two replicas'
    # gradients does not depend on their order).
    alone = tmp_path / "one_worker"
    baseline = subprocess.run(
        [
            sys.executable,
            "-c",
            _ONE_WORKER_TWO_REPLICAS,
            json.dumps(dataclasses.asdict(tiny(mini_records, alone))),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert baseline.returncode == 0, baseline.stderr[-3000:]
    two = _checkpoint_floats(checkpoints / "ckpt-2")
    one = _checkpoint_floats(alone / "delf_tf2-ckpt" / "ckpt-2")
    assert two.keys() == one.keys() and len(two) > 500
    for name in one:
        np.testing.assert_array_equal(two[name], one[name], err_msg=name)

    # Run again, on a local cluster of two processes that the run starts itself.
    resumed_steps: list[int] = []
    with caplog.at_level("INFO", logger="delf_core.training.dask_training"):
        resumed = train_on_dask(
            config,
            ClusterConfig(num_workers=2, start_timeout=600, stall_timeout=600),
            on_steps=lambda step, _: resumed_steps.append(step),
        )
    assert resumed.resumed_from == 2 and resumed.step == 4
    assert resumed_steps == [2, 3, 4]
    assert json.loads((logdir / "train_manifest.json").read_text())["global_step"] == 4
    # The workers' temporary folders (other workers' checkpoints) are gone, killed or not.
    assert set(Path(tempfile.gettempdir()).glob("delf-tf-worker-*")) == scratch_before
    assert any("chief: " in r.getMessage() and "step 4/4" in r.getMessage() for r in caplog.records)


def test_an_address_that_is_not_a_scheduler_s_is_refused_at_once(capsys):
    from delf_cli.main import main

    code = main(["train", "--dask_address=host:8786", "--logdir=/nonexistent/logs"])
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        "delf train: error: --dask_address=host:8786: expected a scheduler address such "
        "as tcp://host:8786"
    )


def test_no_scheduler_at_the_address_fails_within_the_start_timeout(tmp_path):
    from delf_core.training.dask_training import WorkerFailedError, train_on_dask
    from tests.server_process import free_port

    address = f"tcp://127.0.0.1:{free_port()}"
    with pytest.raises(WorkerFailedError, match=f"^train: no Dask scheduler answered at {address}"):
        train_on_dask(
            TrainConfig(logdir=str(tmp_path)), ClusterConfig(dask_address=address, start_timeout=2)
        )
    assert not any(tmp_path.iterdir())  # nothing started, nothing written


@pytest.mark.integration
def test_more_workers_than_the_cluster_has_is_a_one_line_error(dask_cluster, tmp_path):
    from delf_core.training.dask_training import WorkerFailedError, train_on_dask

    cluster = ClusterConfig(
        dask_address=dask_cluster.scheduler_address, num_workers=3, start_timeout=1
    )
    with pytest.raises(WorkerFailedError, match=r"has 2 workers; --num_workers=3 needs 3"):
        train_on_dask(TrainConfig(logdir=str(tmp_path)), cluster)
    assert not any(tmp_path.iterdir())
