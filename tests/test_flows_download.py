"""The download flow under Prefect's test harness, against a real mirror on 127.0.0.1."""

from __future__ import annotations

import shutil

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from delf_core.gldv2 import layout
from delf_core.gldv2.mirror import MirrorServer
from flows.download import download_gldv2
from tests.bucket import FaultyHandler, make_bucket, tar_requests, write_md5

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
    return download_gldv2(**params, return_state=True)


def tar_task_states(flow_state) -> dict[str, str]:
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[flow_state.state_details.flow_run_id])
            )
        )
    return {r.name: r.state.name for r in runs if r.name.startswith("download-")}


def test_flow_downloads_everything_and_later_runs_are_cached(prefect_harness, mirror, tmp_path):
    _, url, contents = mirror
    out = tmp_path / "out"

    first = run_flow(url, out)
    assert first.is_completed()
    summary = first.result()
    assert summary["images"] == 12 and summary["tars"] == 4
    for split, tars in contents.items():
        for ids in tars.values():
            assert all((out / split / layout.image_relpath(i)).exists() for i in ids)
    assert len(tar_requests()) == 4

    FaultyHandler.reset()
    second = run_flow(url, out)
    assert tar_requests() == []
    states = tar_task_states(second)
    assert len(states) == 4 and set(states.values()) == {"Cached"}


def test_flow_fails_naming_the_bad_tar_and_a_rerun_fetches_only_it(
    prefect_harness, mirror, tmp_path
):
    root, url, _ = mirror
    good_md5 = (root / "md5sum/train/md5.images_001.txt").read_text().split()[0]
    write_md5(root, "train", 1, "f" * 32)
    out = tmp_path / "out"

    failed = run_flow(url, out)

    assert failed.is_failed()
    with pytest.raises(Exception, match="images_001.tar"):
        failed.result()
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
