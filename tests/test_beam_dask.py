"""Both Beam jobs on Beam's DaskRunner, on a local cluster of two worker processes."""

from __future__ import annotations

import time

import pytest
from PIL import Image

from beam_jobs.build_image_dataset import run_build
from beam_jobs.extract_features import models_loaded, run_extract
from delf_cli.main import main as delf_main
from delf_core.build_image_dataset import MANIFEST_NAME
from delf_core.features.extract_job import MANIFEST_NAME as EXTRACT_MANIFEST
from delf_core.features.extract_job import REPORT_NAME, ExtractJobConfig
from delf_core.features.record import record_store
from delf_core.features.record_store import RECORDS_DIR
from tests.server_process import free_port
from tests.test_beam_extract_features import _config, _export, _image
from tests.test_build_image_dataset import config_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster():
    """A Dask cluster of two single-threaded worker processes, and a client to ask them."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
        ) as local,
        Client(local) as client,
    ):
        yield local.scheduler_address, client


def _files(folder) -> dict[str, bytes]:
    """Every file under `folder` but the manifests (they hold times), by relative path."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in (MANIFEST_NAME, EXTRACT_MANIFEST)
    }


def test_dask_build_writes_the_local_runners_shards_byte_for_byte(cluster, mini_gldv2, tmp_path):
    address, _ = cluster
    local, dask = tmp_path / "local", tmp_path / "dask"
    expected = run_build(config_for(mini_gldv2, local))
    got = run_build(
        config_for(mini_gldv2, dask), ["--runner=DaskRunner", f"--dask_client_address={address}"]
    )

    assert got["splits"] == expected["splits"] and got["problems"] == expected["problems"]
    shards = [name for name in _files(local) if "-of-" in name]
    assert len(shards) >= 3 * 4 - 4  # train, validation and test, up to 4 shards each
    assert _files(dask) == _files(local)


def test_a_dask_cluster_that_does_not_answer_fails_in_one_line_and_keeps_the_output(
    cluster, mini_gldv2, tmp_path, capsys
):
    out = tmp_path / "out"
    run_build(config_for(mini_gldv2, out, num_shards=2))
    before = _files(out)
    flags = [f"--{k}={v}" for k, v in vars(config_for(mini_gldv2, out)).items()
             if isinstance(v, str)]  # fmt: skip
    started = time.monotonic()
    code = delf_main([
        "build_image_dataset", *flags, "--num_shards=3", "--runner=DaskRunner",
        f"--dask_client_address=tcp://127.0.0.1:{free_port()}", "--dask_connection_timeout=2",
    ])  # fmt: skip

    assert code == 1
    assert time.monotonic() - started < 30
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "no Dask scheduler answered within 2 s" in error[0]
    assert _files(out) == before  # the earlier build stands


@pytest.fixture(scope="module")
def extraction_inputs(tmp_path_factory):
    """Six images and a corrupt one, listed, with a local export's DelfConfig."""
    root = tmp_path_factory.mktemp("dask_extract")
    images = root / "images"
    images.mkdir()
    names = [f"img{i}" for i in range(6)]
    for seed, name in enumerate(names):
        Image.fromarray(_image(96, 80, seed)).save(images / f"{name}.jpg")
    (images / "bad.jpg").write_text("not a picture")
    listed = root / "list_images.txt"
    listed.write_text("".join(f"{images / n}.jpg\n" for n in [*names, "bad"]))
    config = _config(root / "delf_config.pbtxt", _export(root, "delf_r50", "local"))
    return root, str(listed), config


def test_dask_extraction_writes_the_local_runners_files_with_one_model_per_worker(
    cluster, extraction_inputs
):
    address, client = cluster
    root, listed, config = extraction_inputs

    def job(name: str) -> ExtractJobConfig:
        return ExtractJobConfig(
            delg_form=False, config_path=config, output_dir=str(root / name),
            list_images_path=listed,
        )  # fmt: skip

    expected = run_extract(job("by_fnapi"))
    loaded_here = models_loaded()
    got = run_extract(job("by_dask"), ["--runner=DaskRunner", f"--dask_client_address={address}"])

    assert got["counts"] == expected["counts"] == {
        "extracted": 6, "skipped": 0, "failed": 1, "total": 7,
    }  # fmt: skip
    assert got["runner"] == "DaskRunner"
    local, dask = _files(root / "by_fnapi"), _files(root / "by_dask")
    # Each job's record shards sit in a folder named by a generation of its own.
    records = {"local": {}, "dask": {}}
    for name, files in (("local", local), ("dask", dask)):
        for path in [p for p in files if p.startswith(f"{RECORDS_DIR}/")]:
            records[name][path.rsplit("/", 1)[1]] = files.pop(path)
    assert records["dask"].keys() == records["local"].keys() >= {"index.json"}
    # The Dask workers recorded every extracted image, as the local runner did.
    recorded = record_store(str(root / "by_dask")).read()
    assert recorded == record_store(str(root / "by_fnapi")).read()
    assert sorted(recorded) == [f"img{i}" for i in range(6)]
    assert sorted(local) == sorted(dask) == [REPORT_NAME, *(f"img{i}.delf" for i in range(6))]
    # TensorFlow on CPU gives the same bytes in another process.
    assert {n: dask[n] for n in dask if n != REPORT_NAME} == {
        n: local[n] for n in local if n != REPORT_NAME
    }
    # The reason names an object's address, which differs between processes.
    assert dask[REPORT_NAME].split(b",")[:2] == local[REPORT_NAME].split(b",")[:2]
    # Seven images in seven plan files: seven tasks (bundles) spread over both workers,
    # yet one model load per worker process.
    loads = client.run(models_loaded)
    assert sorted(loads.values()) == [1, 1]
    assert models_loaded() == loaded_here  # none in the launcher
