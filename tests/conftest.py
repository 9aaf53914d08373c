"""Test-session settings: no telemetry, a private Prefect home, gcsfs without HNS probes."""

import os
import tempfile

# Set before prefect or gcsfs are imported anywhere: both read these at import time.
_PREFECT_HOME = tempfile.mkdtemp(prefix="delf-test-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ["DO_NOT_TRACK"] = "1"
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def prefect_harness():
    """One Prefect test server for the whole session (starting one takes ~15 s)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def mini_bucket(tmp_path_factory):
    """The default mini dataset, in the layout of the GLDv2 bucket."""
    from delf_core.gldv2.mini import MiniDatasetConfig, make_mini_dataset

    root = tmp_path_factory.mktemp("mini_bucket")
    make_mini_dataset(MiniDatasetConfig(), str(root))
    return root


@pytest.fixture(scope="session")
def mini_gldv2(mini_bucket, tmp_path_factory):
    """The mini dataset as `delf download 2 1 1` leaves it: gldv2_dataset/{train,index,test}."""
    from delf_core.download import DownloadConfig, download
    from delf_core.gldv2.mirror import MirrorServer

    out = tmp_path_factory.mktemp("downloaded") / "gldv2_dataset"
    with MirrorServer(mini_bucket) as server:
        report = download(DownloadConfig(2, 1, 1, output_dir=str(out), base_url=server.url))
    assert not report.failed
    return out
