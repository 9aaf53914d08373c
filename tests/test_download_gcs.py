"""`--output_dir=gs://...` against a local GCS emulator (gcp-storage-emulator)."""

from __future__ import annotations

import fsspec
import pytest

from delf_core.download import DownloadConfig, RetryPolicy, download
from delf_core.gldv2 import layout
from delf_core.gldv2.mirror import MirrorServer
from tests.bucket import FaultyHandler, make_bucket, tar_requests

pytestmark = pytest.mark.integration


def test_download_to_gcs_writes_the_same_layout_and_reruns_as_a_no_op(gcs_emulator, tmp_path):
    root = tmp_path / "bucket"
    contents = make_bucket(root, {"train": 2, "test": 1})
    output = f"{gcs_emulator}/gldv2_dataset"
    config = DownloadConfig(
        num_train=2,
        num_index=0,
        num_test=1,
        output_dir=output,
        max_workers=3,
        retry=RetryPolicy(retries=2, backoff_seconds=0.01),
        staging_dir=str(tmp_path / "staging"),
    )
    FaultyHandler.reset({"train/images_001.tar": ["drop:1000"]})
    with MirrorServer(root, handler=FaultyHandler) as server:
        config = DownloadConfig(**{**config.__dict__, "base_url": server.url})
        report = download(config)
        assert not report.failed, report.failed

        fs = fsspec.filesystem("gs")
        for split, tars in contents.items():
            for index, (name, ids) in enumerate(sorted(tars.items())):
                remote_tar = f"test-bucket/gldv2_dataset/{split}/{name}"
                assert fs.cat(remote_tar) == (root / split / name).read_bytes()
                assert fs.exists(f"test-bucket/gldv2_dataset/{split}/{layout.md5_name(index)}")
                for image_id in ids:
                    assert fs.exists(
                        f"test-bucket/gldv2_dataset/{split}/{layout.image_relpath(image_id)}"
                    )
            assert fs.exists(f"test-bucket/gldv2_dataset/{split}/download_manifest.json")
        assert fs.exists("test-bucket/gldv2_dataset/index/index.csv")
        # Staged files are moved up, not left behind.
        assert [p for p in (tmp_path / "staging").rglob("*") if p.is_file()] == []

        FaultyHandler.reset()
        again = download(config)
    assert tar_requests() == []
    assert again.count("skipped") == len(again.outcomes)
