"""The extract_features Beam job on the local runner: same files as extract_images, resumable."""

from __future__ import annotations

import csv
import json
import pickle

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from beam_jobs.extract_features import run_extract
from delf_cli.main import main as delf_main
from delf_core import __version__
from delf_core.export import ExportConfig, export_model
from delf_core.export.current import export_files
from delf_core.features import feature_io, load_delf_config
from delf_core.features.extract import extract_images, items_from_dataset, items_from_list
from delf_core.features.extract_job import (
    MANIFEST_NAME,
    REPORT_NAME,
    ExtractJobConfig,
    items_from_glob,
)
from delf_core.features.extractor import Extractor
from delf_core.features.record import features_source, record_entry, record_store, remove_stale
from delf_core.features.record_store import RECORDS_DIR
from delf_core.model import create_model

pytestmark = pytest.mark.integration


def _image(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth random picture, so that resizing does not turn it into noise."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((width, height), Image.BILINEAR))


def _export(root, name: str, kind: str) -> str:
    tf.keras.utils.set_random_seed(2)
    model = create_model(name, num_classes=3)
    model.build_for(64)
    weights = str(root / f"{name}_weights" / "delf_weights")
    tf.train.Checkpoint(model=model).write(weights)
    return export_model(
        ExportConfig.for_kind(kind, ckpt_path=weights, export_path=str(root / kind))
    )


def _config(path, model_path: str, extra: str = "") -> str:
    path.write_text(
        f'model_path: "{model_path}"\nimage_scales: 0.5\nimage_scales: 1.0\n'
        "is_tf2_exported: true\n"
        "delf_local_config {\n  use_pca: false\n  max_feature_num: 100\n"
        "  score_threshold: 0.0\n}\n" + extra
    )
    return str(path)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Three images and a corrupt one, a list of them, a local export and its config."""
    root = tmp_path_factory.mktemp("beam_extract")
    images = root / "images"
    images.mkdir()
    for name, seed in (("a", 0), ("b", 1), ("c", 2)):
        Image.fromarray(_image(120, 96, seed)).save(images / f"{name}.jpg")
    (images / "bad.jpg").write_text("not a picture")
    listed = root / "list_images.txt"
    listed.write_text("".join(f"{images / n}.jpg\n" for n in ("a", "bad", "b", "c")))
    config = _config(root / "delf_config.pbtxt", _export(root, "delf_r50", "local"))
    # What the plain, sequential `delf extract_features` code writes.
    reference = root / "reference"
    extract_images(
        Extractor(load_delf_config(config)), items_from_list(str(listed)), str(reference)
    )
    return {"root": root, "images": images, "list": str(listed), "config": config,
            "reference": reference}  # fmt: skip


def main(argv: list[str]) -> int:
    """`delf extract_features --beam` with these flags."""
    return delf_main(["extract_features", "--beam", *argv])


def _manifest(out) -> dict:
    return json.loads((out / MANIFEST_NAME).read_text())


def _report(out) -> list[list[str]]:
    with open(out / REPORT_NAME, newline="") as handle:
        return list(csv.reader(handle))


def test_list_form_writes_the_same_files_reports_bad_images_and_resumes(setup, tmp_path, capsys):
    out = tmp_path / "features"
    argv = [
        f"--config_path={setup['config']}",
        f"--list_images_path={setup['list']}",
        f"--output_dir={out}",
        "--direct_num_workers=2",
    ]
    # A failed image makes the exit status 1; the report and manifest are written.
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "3 extracted, 0 already done, 1 failed, of 4 images" in captured.out
    assert f"1 of 4 images failed; see {out / REPORT_NAME}" in captured.err
    features = sorted(p.name for p in out.iterdir() if p.suffix == ".delf")
    assert features == ["a.delf", "b.delf", "c.delf"]
    for name in features:
        assert (out / name).read_bytes() == (setup["reference"] / name).read_bytes(), name
    assert len(feature_io.read_from_file(str(out / "a.delf")).locations) > 0
    report = _report(out)
    assert report[0] == ["name", "reason"] and [row[0] for row in report[1:]] == ["bad"]
    assert "bad.jpg" in report[1][1]
    manifest = _manifest(out)
    assert manifest["counts"] == {"extracted": 3, "skipped": 0, "failed": 1, "total": 4}
    assert manifest["config_path"] == setup["config"]
    assert manifest["model_path"].endswith("local") and manifest["delf_version"] == __version__
    assert manifest["params"]["list_images_path"] == setup["list"]
    # Only outputs are left behind: no plan, no temporary files.
    assert sorted(p.name for p in out.iterdir()) == sorted(
        features + [MANIFEST_NAME, REPORT_NAME, RECORDS_DIR]
    )

    mtimes = {name: (out / name).stat().st_mtime_ns for name in features}
    assert main([*argv, "--allow_failures"]) == 0
    assert "0 extracted, 3 already done, 1 failed, of 4 images" in capsys.readouterr().out
    assert {name: (out / name).stat().st_mtime_ns for name in features} == mtimes
    assert _manifest(out)["counts"]["skipped"] == 3


def test_glob_input_names_by_stem_and_reports_a_clashing_name(setup, tmp_path):
    images = tmp_path / "index"
    for folder, name, source in (("0", "a", "a"), ("0", "b", "b"), ("1", "a", "c")):
        (images / folder).mkdir(parents=True, exist_ok=True)
        (images / folder / f"{name}.jpg").write_bytes(
            (setup["images"] / f"{source}.jpg").read_bytes()
        )
    out = tmp_path / "features"
    # An older version's manifest, its records inside: moved into the record shards.
    out.mkdir()
    (out / MANIFEST_NAME).write_text(json.dumps({"step": "extract_features", "images": {}}))
    job = ExtractJobConfig(
        delg_form=False,
        config_path=setup["config"],
        output_dir=str(out),
        images_glob=f"{images}/*/*.jpg",
    )

    manifest = run_extract(job)

    assert manifest["counts"] == {"extracted": 2, "skipped": 0, "failed": 1, "total": 3}
    assert "images" not in manifest
    # Each extracted image is recorded as made by this model and config, as a local run
    # records it, so `delf extract_features` without --beam keeps these files.
    config = load_delf_config(setup["config"])
    source = features_source(export_files(config.model_path), config, delg_form=False)
    items = {}
    for item in items_from_glob(job.images_glob):
        items.setdefault(item.name, item)  # the first of a name is the one extracted
    recorded = record_store(str(out)).read()
    assert recorded == {n: record_entry(items[n], source) for n in ("a", "b")}
    assert remove_stale([items["b"]], str(out), config, False, source) == 0
    for name in ("a.delf", "b.delf"):
        assert (out / name).read_bytes() == (setup["reference"] / name).read_bytes()
    assert [row[0] for row in _report(out)[1:]] == ["a"]
    assert "same name as" in _report(out)[1][1]
    # All done: the rerun plans nothing and runs no pipeline.
    again = run_extract(job)
    assert again["counts"] == {"extracted": 0, "skipped": 2, "failed": 1, "total": 3}


def test_delg_form_reads_the_dataset_file_and_crops_queries(setup, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    for name, source in (("q0", "a"), ("i0", "b"), ("i1", "c")):
        (images / f"{name}.jpg").write_bytes((setup["images"] / f"{source}.jpg").read_bytes())
    ground_truth = {
        "qimlist": ["q0"],
        "imlist": ["i0", "i1"],
        "gnd": [{"bbx": [10.2, 20.7, 90.4, 110.0], "easy": [0], "hard": [], "junk": []}],
    }
    dataset = tmp_path / "gnd_mini.pkl"
    dataset.write_bytes(pickle.dumps(ground_truth))
    out = tmp_path / "features"
    for image_set, count in (("query", 1), ("index", 2)):
        assert main([
            f"--delf_config_path={setup['config']}", f"--dataset_file_path={dataset}",
            f"--images_dir={images}", f"--image_set={image_set}",
            f"--output_features_dir={out}",
        ]) == 0  # fmt: skip
        assert f"{count} extracted, 0 already done, 0 failed" in capsys.readouterr().out
    assert sorted(p.name for p in out.glob("*.delg_*")) == [
        "i0.delg_local", "i1.delg_local", "q0.delg_local",
    ]  # fmt: skip
    reference = tmp_path / "reference"
    items = items_from_dataset(str(dataset), str(images), "query")
    extract_images(
        Extractor(load_delf_config(setup["config"])), items, str(reference), delg_form=True
    )
    assert (out / "q0.delg_local").read_bytes() == (reference / "q0.delg_local").read_bytes()
    # Cropped: located inside the 80x89 box, in crop pixels.
    query = feature_io.read_from_file(str(out / "q0.delg_local"))
    assert query.locations[:, 0].max() < 89 and query.locations[:, 1].max() < 80
    assert not list(out.glob("*.delg_global"))


def test_bad_flags_and_unreadable_paths_are_one_line_errors(setup, tmp_path, capsys):
    common = [f"--config_path={setup['config']}", f"--output_dir={tmp_path / 'out'}"]
    assert main([*common, f"--list_images_path={setup['list']}", "--images_glob=x/*.jpg"]) == 1
    assert "--images_glob replaces --list_images_path" in capsys.readouterr().err
    assert main([*common, f"--images_glob={tmp_path}/none/*.jpg"]) == 1
    assert "matches no file" in capsys.readouterr().err
    remote = ["--runner=DataflowRunner", "--project=p", "--region=r"]
    assert main([*common, f"--list_images_path={setup['list']}", *remote]) == 1
    assert "is a local path, which DataflowRunner workers cannot read" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_gs_images_and_features_through_the_emulator(setup, gcs_emulator, capsys):
    import fsspec

    fs = fsspec.filesystem("gs")
    index = f"{gcs_emulator}/beam_extract/index"
    for folder, name in (("0", "a"), ("1", "b")):
        fs.put_file(str(setup["images"] / f"{name}.jpg"), f"{index}/{folder}/{name}.jpg")
    out = f"{gcs_emulator}/beam_extract/features"
    argv = [f"--config_path={setup['config']}", f"--images_glob={index}/*/*.jpg",
            f"--output_dir={out}"]  # fmt: skip

    assert main(argv) == 0
    assert "2 extracted, 0 already done, 0 failed, of 2 images" in capsys.readouterr().out
    for name in ("a.delf", "b.delf"):
        assert fs.cat(f"{out}/{name}") == (setup["reference"] / name).read_bytes()
    assert json.loads(fs.cat(f"{out}/{MANIFEST_NAME}"))["params"]["images_glob"].startswith("gs://")
    assert not fs.exists(f"{out}/.extract_features_plan") or not fs.ls(
        f"{out}/.extract_features_plan"
    )
    # The rerun plans from one listing of the bucket folder: nothing left, no job.
    assert main(argv) == 0
    assert "0 extracted, 2 already done, 0 failed, of 2 images" in capsys.readouterr().out


def test_images_glob_works_in_either_form():
    from delf_cli.flags import build_config
    from delf_cli.main import parse_args
    from delf_core.features.extract_job import ExtractFeaturesConfig

    def config_from_args(argv):
        return build_config(parse_args(["extract_features", *argv])[1], ExtractFeaturesConfig).job()

    delg = config_from_args(["--delf_config_path=c", "--output_features_dir=o", "--images_glob=g"])
    assert delg == ExtractJobConfig(
        delg_form=True, config_path="c", output_dir="o", images_glob="g"
    )
    listed = config_from_args(["--images_glob=g"])
    assert listed == ExtractJobConfig(
        delg_form=False,
        config_path="delf_config_example.pbtxt",
        output_dir="test_features",
        images_glob="g",
    )


def test_delf_extract_features_beam_flag_runs_the_job_and_refuses_stray_flags(
    setup, tmp_path, capsys, caplog
):
    from delf_cli.main import main

    out = tmp_path / "features"
    argv = [
        "extract_features", f"--config_path={setup['config']}",
        f"--images_glob={setup['images']}/[ab].jpg", f"--output_dir={out}",
    ]  # fmt: skip
    assert main([*argv, "--beam", "--direct_num_workers=1"]) == 0
    assert "2 extracted, 0 already done, 0 failed, of 2 images" in capsys.readouterr().out
    assert sorted(p.name for p in out.glob("*.delf")) == ["a.delf", "b.delf"]
    assert main([*argv, "--direct_num_workers=1"]) == 2
    assert "Beam options need --beam" in caplog.text
