"""The download flow under Prefect's test harness, against a real mirror on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
)
from prefect.task_runners import ThreadPoolTaskRunner

from delf_core import step_config
from delf_core.download import DownloadConfig
from delf_core.gldv2 import layout
from delf_core.gldv2.mirror import MirrorServer
from delf_core.progress import format_bytes
from flows.download import download, run_download
from flows.task_runners import download_task_runner
from tests.bucket import FaultyHandler, make_bucket, served_bytes, tar_requests, write_md5
from tests.prefect_runs import task_runs

pytestmark = pytest.mark.integration


@pytest.fixture()
def mirror(tmp_path):
    root = tmp_path / "bucket"
    contents = make_bucket(root, {"train": 2, "index": 1, "test": 1})
    FaultyHandler.reset()
    with MirrorServer(root, handler=FaultyHandler) as server:
        yield root, server.url, contents


def run_flow(url, out, **overrides):
    params = dict(
        num_train=2,
        num_index=1,
        num_test=1,
        output_dir=str(out),
        base_url=url,
        max_workers=2,
        retries=1,
        backoff_seconds=0.01,
    )
    params.update(overrides)
    return download(step_config.build(DownloadConfig, params), return_state=True)


def tar_task_names(tars: dict[str, int]) -> list[str]:
    """The download task names of the first tars[split] tars of each split."""
    return [f"download-{split}-{layout.tar_name(i)}" for split, n in tars.items() for i in range(n)]


# The tars of run_flow's splits.
TAR_TASKS = tar_task_names({"train": 2, "index": 1, "test": 1})


def tar_task_states(flow_state, expect=TAR_TASKS) -> dict[str, str]:
    """{task name: state name} of the flow run's tar downloads, once `expect` are recorded."""
    runs = task_runs(flow_state.state_details.flow_run_id, subflows=False, expect=expect)
    return {r.name: r.state.name for r in runs if r.name.startswith("download-")}


def artifact(flow_state, key: str):
    with get_client(sync_client=True) as client:
        (found,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[key]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_state.state_details.flow_run_id]),
            )
        )
    return found


def assert_downloaded(out, contents) -> None:
    for split, tars in contents.items():
        for ids in tars.values():
            assert all((out / split / layout.image_relpath(i)).exists() for i in ids)


def test_flow_downloads_everything_and_later_runs_are_cached(prefect_harness, mirror, tmp_path):
    root, url, contents = mirror
    out = tmp_path / "out"

    first = run_flow(url, out)
    assert first.is_completed()
    summary = first.result()
    assert summary["images"] == 12 and summary["tars"] == 4
    assert_downloaded(out, contents)
    assert len(tar_requests()) == 4
    progress = artifact(first, "gldv2-download-progress")
    total = served_bytes(root, {"train": 2, "index": 1, "test": 1})
    assert progress.data == 100.0
    shown = format_bytes(total)
    assert progress.description.startswith(f"{shown}/{shown} (100.0%)")
    files = sum(len(layout.METADATA_FILES[split]) for split in layout.SPLITS) + 4
    assert progress.description.endswith(f"; {files}/{files} files")

    FaultyHandler.reset()
    second = run_flow(url, out)
    assert tar_requests() == []
    states = tar_task_states(second)
    assert len(states) == 4 and set(states.values()) == {"Cached"}
    assert second.result()["cached"] == 4
    markdown = artifact(second, "gldv2-download").data
    assert "| cached | 4 |" in markdown and "| duration |" in markdown


def test_flow_fails_naming_the_bad_tar_and_a_rerun_fetches_only_it(
    prefect_harness, mirror, tmp_path
):
    root, url, _ = mirror
    good_md5 = (root / "md5sum/train/md5.images_001.txt").read_text().split()[0]
    write_md5(root, "train", 1, "f" * 32)
    out = tmp_path / "out"

    failed = run_flow(url, out)

    assert failed.is_failed()
    with pytest.raises(Exception, match="train/images_001.tar: "):
        failed.result()
    assert "train/images_001.tar" in artifact(failed, "gldv2-download").data
    assert not (out / "train" / "images_001.tar").exists()

    write_md5(root, "train", 1, good_md5)
    FaultyHandler.reset()
    rerun = run_flow(url, out)

    assert rerun.is_completed()
    assert [path for path, _ in tar_requests()] == ["train/images_001.tar"]


def test_deleted_outputs_are_downloaded_again_not_served_from_cache(
    prefect_harness, mirror, tmp_path
):
    _, url, _ = mirror
    out = tmp_path / "out"
    run_flow(url, out)
    shutil.rmtree(out / "index")
    FaultyHandler.reset()

    state = run_flow(url, out)

    assert state.is_completed()
    assert [path for path, _ in tar_requests()] == ["index/images_000.tar"]
    assert (out / "index" / "download_manifest.json").exists()
    states = tar_task_states(state)
    assert states["download-index-images_000.tar"] == "Completed"
    assert states["download-train-images_000.tar"] == "Cached"


def test_runners_are_sized_to_max_workers():
    assert download_task_runner(3) == ThreadPoolTaskRunner(max_workers=3)
    local = download_task_runner(8, use_dask=True, dask_workers=2)
    assert local.cluster_kwargs["n_workers"] == 2
    assert local.cluster_kwargs["threads_per_worker"] == 4
    assert download_task_runner(8, dask_address="tcp://10.0.0.2:8786").address.endswith(":8786")


def two_one_one(**values) -> DownloadConfig:
    """The config of 2 train, 1 index and 1 test tars."""
    return step_config.build(DownloadConfig, dict(num_train=2, num_index=1, num_test=1, **values))


@pytest.mark.parametrize("caller", [download, run_download])
def test_no_more_than_max_workers_tars_are_in_flight(prefect_harness, mirror, tmp_path, caller):
    """Both a direct call and a runner picked at run time bound the mapped downloads."""
    root, url, contents = mirror
    # Each tar is answered once two are asked for at once: a third would show up here.
    crowded = {f"{tar.parent.name}/{tar.name}": ["crowd:2"] for tar in root.glob("*/*.tar")}
    assert len(crowded) == 4
    FaultyHandler.reset(crowded)

    state = caller(
        two_one_one(output_dir=str(tmp_path / "out"), base_url=url, max_workers=2),
        return_state=True,
    )

    assert state.is_completed()
    assert_downloaded(tmp_path / "out", contents)
    assert FaultyHandler.max_tars_in_flight == 2


def test_download_fans_out_on_a_local_dask_cluster(prefect_harness, mirror, tmp_path):
    """Tars download in Dask worker processes, which report to the same Prefect server."""
    distributed = pytest.importorskip("distributed")
    _, url, contents = mirror
    out = tmp_path / "out"
    config = two_one_one(output_dir=str(out), base_url=url, max_workers=2)

    # A temporary LocalCluster of two worker processes, started and closed by the flow run.
    first = run_download(config, use_dask=True, dask_workers=2, return_state=True)

    assert first.is_completed(), first
    assert first.result()["images"] == 12
    assert_downloaded(out, contents)
    assert len(tar_requests()) == 4
    assert set(tar_task_states(first).values()) == {"Completed"}
    assert len(tar_task_states(first)) == 4

    # A cluster that outlives the run, reached by its address, as a deployment would.
    FaultyHandler.reset()
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=True) as cluster:
        second = run_download(config, dask_address=cluster.scheduler_address, return_state=True)

    assert second.is_completed(), second
    assert tar_requests() == []
    states = tar_task_states(second)
    assert len(states) == 4 and set(states.values()) == {"Cached"}
    markdown = artifact(second, "gldv2-download").data
    assert "| tars | 4 |" in markdown and "| cached | 4 |" in markdown


def test_dask_workers_find_prefects_embedded_server(mirror, tmp_path):
    """With no PREFECT_API_URL (`delf gldv2` on a laptop), the workers reach this process's."""
    pytest.importorskip("distributed")
    _, url, contents = mirror
    out = tmp_path / "out"
    script = (
        "import sys\n"
        "from delf_core.download import DownloadConfig\n"
        "from flows.download import run_download\n"
        f"config = DownloadConfig(2, 1, 1, output_dir={str(out)!r}, base_url={url!r},\n"
        "    max_workers=2)\n"
        "state = run_download(config, use_dask=True, dask_workers=2, return_state=True)\n"
        "print(state.name, state.message)\n"
        "sys.exit(0 if state.is_completed() else 1)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "prefect_home")
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=Path(__file__).resolve().parents[1],
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,  # a hang guard: a loaded machine is slow
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert_downloaded(out, contents)
