"""Test-session settings: no telemetry, a private Prefect home, gcsfs without HNS probes."""

import atexit
import os
import shutil
import tempfile

# Set before prefect or gcsfs are imported anywhere: both read these at import time.
_PREFECT_HOME = tempfile.mkdtemp(prefix="delf-test-prefect-")
atexit.register(shutil.rmtree, _PREFECT_HOME, ignore_errors=True)
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ["DO_NOT_TRACK"] = "1"
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"
# Prefect's embedded server, in subprocesses that tests start, may start slowly on a
# loaded machine: the limit `delf gldv2` gives it. (This import loads no Prefect.)
from delf_cli.prefect_server import DEFAULT_STARTUP_SECONDS, STARTUP_TIMEOUT_SETTING  # noqa: E402

os.environ.setdefault(STARTUP_TIMEOUT_SETTING, str(DEFAULT_STARTUP_SECONDS))

import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from tests.server_process import free_port  # noqa: E402


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


@pytest.fixture(scope="session")
def mini_records(mini_gldv2, tmp_path_factory):
    """The mini train split as TFRecords (2 shards, train/validation split)."""
    from beam_jobs.build_image_dataset import run_build
    from delf_core.build_image_dataset import BuildConfig

    out = tmp_path_factory.mktemp("tfrecord")
    run_build(
        BuildConfig(
            train_directory=f"{mini_gldv2}/train/*/*/*/",
            train_clean_csv_path=f"{mini_gldv2}/train/train_clean.csv",
            output_directory=str(out),
            num_shards=2,
            generate_train_validation_splits=True,
        )
    )
    return out


@pytest.fixture(scope="session")
def gcs_emulator():
    """A GCS emulator on 127.0.0.1 with bucket `test-bucket`; yields `gs://test-bucket`."""
    import gcsfs

    port = free_port()
    emulator = Path(sys.executable).with_name("gcp-storage-emulator")
    process = subprocess.Popen(
        [
            str(emulator),
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--in-memory",
            "--default-bucket",
            "test-bucket",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    else:
        process.kill()
        pytest.fail("the GCS emulator did not start within 30 s")
    previous = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{port}"
    gcsfs.GCSFileSystem.clear_instance_cache()
    yield "gs://test-bucket"
    process.kill()
    process.wait()
    if previous is None:
        os.environ.pop("STORAGE_EMULATOR_HOST", None)
    else:
        os.environ["STORAGE_EMULATOR_HOST"] = previous
    gcsfs.GCSFileSystem.clear_instance_cache()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files with end-to-end tests first, then those with integration tests, then the rest.

    `make test` hands whole files to its processes in this order: a long file handed
    out last would run alone at the end while the other process sits idle. A file's
    tests stay together, so its module fixtures are built once.
    """

    def weight(item: pytest.Item) -> int:
        if item.get_closest_marker("e2e"):
            return 0
        return 1 if item.get_closest_marker("integration") else 2

    file_weight: dict[str, int] = {}
    for item in items:
        path = str(item.path)
        file_weight[path] = min(file_weight.get(path, 2), weight(item))
    items.sort(key=lambda item: file_weight[str(item.path)])
