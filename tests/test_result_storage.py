"""Cache records in a gs:// bucket (the GCS emulator), found again by the next run."""

from __future__ import annotations

import fsspec
import pytest
from prefect.settings import PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK, temporary_settings

from delf_cli.main import main
from delf_core.download import DownloadConfig
from delf_core.gldv2.mirror import MirrorServer
from flows.download import download
from flows.result_storage import save_result_storage
from tests.bucket import make_bucket
from tests.test_flows_download import tar_task_names, tar_task_states

pytestmark = pytest.mark.integration


def test_results_in_a_bucket_let_a_second_run_skip_every_tar(
    prefect_harness, gcs_emulator, tmp_path
):
    slug = save_result_storage(f"{gcs_emulator}/prefect-results", "gldv2-results")
    assert slug == "remote-file-system/gldv2-results"
    make_bucket(tmp_path / "bucket", {"train": 2})
    with (
        MirrorServer(tmp_path / "bucket") as server,
        temporary_settings({PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK: slug}),
    ):
        config = DownloadConfig(2, 0, 0, output_dir=str(tmp_path / "out"), base_url=server.url)
        first = download(config, return_state=True)
        second = download(config, return_state=True)

    assert first.is_completed() and second.is_completed()
    records = fsspec.filesystem("gs").ls("test-bucket/prefect-results")
    assert len([r for r in records if r.rsplit("/", 1)[-1].startswith("download-")]) == 2
    states = tar_task_states(second, expect=tar_task_names({"train": 2}))
    assert set(states.values()) == {"Cached"}


def test_the_command_saves_the_block_and_rejects_a_bad_name(prefect_harness, tmp_path, capsys):
    assert main(["result_storage", f"--url={tmp_path}/results", "--name=local-results"]) == 0
    assert "PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK=local-file-system/local-results" in (
        capsys.readouterr().out
    )
    assert main(["result_storage", f"--url={tmp_path}", "--name=Bad_Name"]) == 2
    assert "--name=Bad_Name" in capsys.readouterr().err
