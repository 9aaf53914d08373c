"""The extractor and `delf extract_features`, on models exported from small checkpoints."""

from __future__ import annotations

import csv
import pickle
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from delf_cli.main import main
from delf_core.export import ExportConfig, export_model
from delf_core.features import (
    apply_pca_and_whitening,
    datum_io,
    feature_io,
    load_pca_parameters,
    parse_delf_config,
    write_delf_config,
)
from delf_core.features.extract import ImageItem, extract_images
from delf_core.features.extract_job import MANIFEST_NAME, REPORT_NAME
from delf_core.features.extractor import Extractor
from delf_core.features.presets import seed_delf_config
from delf_core.features.record_store import RECORDS_DIR
from delf_core.model import create_model


def _image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth random picture, so that resizing does not turn it into noise."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((width, height), Image.BILINEAR))


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """A local and a local+global export of untrained DELG weights with the autoencoder."""
    root = tmp_path_factory.mktemp("exports")
    tf.keras.utils.set_random_seed(2)
    model = create_model("delg_r50", num_classes=3)
    model.build_for(64)
    weights = str(root / "delf_weights")
    tf.train.Checkpoint(model=model).write(weights)
    paths = {}
    for kind in ("local", "local_and_global"):
        paths[kind] = export_model(
            ExportConfig.for_kind(kind, ckpt_path=weights, export_path=str(root / kind))
        )
    return paths


def _config(model_path: str, *, scales=(1.0,), local="", extra="") -> object:
    scale_lines = "\n".join(f"image_scales: {s}" for s in scales)
    return parse_delf_config(
        f"""
        model_path: "{model_path}"
        {scale_lines}
        is_tf2_exported: true
        delf_local_config {{ use_pca: false max_feature_num: 50 score_threshold: 0.0 {local} }}
        {extra}
        """
    )


def test_local_features_are_normalised_and_in_original_image_pixels(exports):
    image = _image(240, 160)
    # max_image_size 120 halves the image; locations come back in the original pixels.
    extractor = Extractor(_config(exports["local"], extra="max_image_size: 120"))
    local = extractor(image).local
    # Every cell of the 120x80 image at stride 32: 4 x 3 of them.
    assert local.descriptors.shape == (12, 128)
    np.testing.assert_allclose(np.linalg.norm(local.descriptors, axis=1), 1.0, rtol=1e-5)
    assert np.all(np.diff(local.attention) <= 0)
    # Centres of stride-32 cells of the 120x80 resized image, times 2.
    np.testing.assert_allclose(local.locations % 64, 0, atol=1e-3)
    assert local.locations[:, 0].max() < 240 and local.locations[:, 1].max() < 160
    resized = Extractor(
        _config(
            exports["local"], local="use_resized_coordinates: true", extra="max_image_size: 120"
        )
    )(image).local
    np.testing.assert_allclose(resized.locations * 2, local.locations, atol=1e-3)
    np.testing.assert_allclose(resized.scales, local.scales)


def test_local_pca_from_datum_files(exports, tmp_path):
    rng = np.random.default_rng(3)
    datum_io.write_to_file(rng.normal(size=128).astype(np.float32), str(tmp_path / "mean.datum"))
    projection = np.linalg.qr(rng.normal(size=(128, 128)))[0].astype(np.float32)
    datum_io.write_to_file(projection, str(tmp_path / "pca_proj_mat.datum"))
    datum_io.write_to_file(rng.uniform(0.5, 2, 128).astype(np.float32), str(tmp_path / "var.datum"))
    pca = f"""pca_parameters {{ mean_path: "{tmp_path}/mean.datum"
        projection_matrix_path: "{tmp_path}/pca_proj_mat.datum" pca_dim: 16
        use_whitening: true pca_variances_path: "{tmp_path}/var.datum" }}"""
    image = _image(128, 128)
    plain = Extractor(_config(exports["local"]))(image).local
    config = _config(exports["local"], local=pca)
    config.delf_local_config.use_pca = True
    reduced = Extractor(config)(image).local
    # 128x128 at stride 32: 16 cells.
    assert reduced.descriptors.shape == (16, 16)
    expected = apply_pca_and_whitening(
        plain.descriptors, load_pca_parameters(config.delf_local_config.pca_parameters), 16, True
    )
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(reduced.descriptors, expected, rtol=1e-4, atol=1e-5)


def test_global_descriptor_sums_normalised_scales(exports):
    image = _image(160, 128)
    config = _config(
        exports["local_and_global"],
        scales=(0.5, 1.0, 2.0),
        extra="use_global_features: true delf_global_config { use_pca: false "
        "image_scales_ind: 0 image_scales_ind: 2 }",
    )
    features = Extractor(config)(image)
    raw = (
        tf.saved_model.load(exports["local_and_global"])
        .signatures["serving_default"](
            input_image=tf.constant(image),
            input_scales=tf.constant([0.5, 1.0, 2.0]),
            input_max_feature_num=tf.constant(50),
            input_abs_thres=tf.constant(0.0),
            input_global_scales_ind=tf.constant([0, 2]),
        )["global_descriptors"]
        .numpy()
    )
    per_scale = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    expected = per_scale.sum(axis=0) / np.linalg.norm(per_scale.sum(axis=0))
    assert features.global_descriptor.shape == (2048,)
    np.testing.assert_allclose(features.global_descriptor, expected, rtol=1e-4, atol=1e-6)
    # 5x4 + 3x2 + 10x8 cells over the three scales, capped at 50.
    assert features.local.descriptors.shape == (50, 128)


def test_the_same_weights_exported_again_give_byte_identical_features(exports, tmp_path):
    """What a rerun of the flow does: a new export of the weights, then extraction."""
    weights = str(Path(exports["local_and_global"]).parent / "delf_weights")
    again = export_model(
        ExportConfig.for_kind(
            "local_and_global", ckpt_path=weights, export_path=str(tmp_path / "again")
        )
    )
    for name, seed in (("a", 3), ("b", 4), ("c", 5)):
        Image.fromarray(_image(150, 120, seed)).save(tmp_path / f"{name}.jpg")
    items = [ImageItem(name, str(tmp_path / f"{name}.jpg")) for name in ("a", "b", "c")]
    extra = (
        "use_global_features: true delf_global_config { use_pca: false "
        "image_scales_ind: 0 image_scales_ind: 1 image_scales_ind: 2 }"
    )
    outputs = []
    for run, model_path in (("first", exports["local_and_global"]), ("second", again)):
        extractor = Extractor(_config(model_path, scales=(0.5, 1.0, 2.0), extra=extra))
        report = extract_images(extractor, items, str(tmp_path / run), delg_form=True)
        assert report.extracted == 3
        outputs.append({p.name: p.read_bytes() for p in sorted((tmp_path / run).iterdir())})
    assert len(outputs[0]) == 6
    assert outputs[0] == outputs[1]


def test_too_small_images_give_empty_features(exports):
    features = Extractor(_config(exports["local"]))(_image(9, 40))
    assert features.local.locations.shape == (0, 2)
    assert features.global_descriptor is None


def test_config_asking_for_what_the_export_lacks_is_a_clear_error(exports):
    config = _config(exports["local"], extra="use_global_features: true")
    with pytest.raises(ValueError, match="delf_global_config.*pca"):
        Extractor(config)
    config.delf_global_config.use_pca = False
    with pytest.raises(ValueError, match="input_global_scales_ind"):
        Extractor(config)


def _write_config(path, model_path, use_global_features=False):
    """The seed's config (delf_core's preset), with a threshold an untrained model passes."""
    write_delf_config(seed_delf_config(model_path, use_global_features, 0.0), str(path))


def test_list_form_extracts_skips_finished_and_reports_unreadable(exports, tmp_path, capsys):
    for name, seed in (("a", 0), ("b", 1)):
        Image.fromarray(_image(120, 96, seed)).save(tmp_path / f"{name}.jpg")
    (tmp_path / "bad.jpg").write_text("not a picture")
    (tmp_path / "list_images.txt").write_text(
        "\n".join(str(tmp_path / f"{n}.jpg") for n in ("a", "bad", "b")) + "\n"
    )
    _write_config(tmp_path / "delf_config_example.pbtxt", exports["local"])
    out = tmp_path / "data" / "features"
    argv = [
        "extract_features",
        f"--config_path={tmp_path / 'delf_config_example.pbtxt'}",
        f"--list_images_path={tmp_path / 'list_images.txt'}",
        f"--output_dir={out}",
    ]
    # A failed image makes the exit status 1 unless --allow_failures; the others are done.
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "2 extracted, 0 already done, 1 failed, of 3 images" in captured.out
    assert f"1 of 3 images failed; see {out / REPORT_NAME}" in captured.err
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["a.delf", "b.delf", MANIFEST_NAME, REPORT_NAME, RECORDS_DIR]
    )
    assert (out / REPORT_NAME).read_text().splitlines()[1].startswith("bad,")
    features = feature_io.read_from_file(str(out / "a.delf"))
    assert features.descriptors.shape[1] == 128 and len(features.locations) > 0
    mtime = (out / "a.delf").stat().st_mtime_ns
    assert main([*argv, "--allow_failures"]) == 0
    assert "0 extracted, 2 already done, 1 failed" in capsys.readouterr().out
    assert (out / "a.delf").stat().st_mtime_ns == mtime


def test_delg_form_crops_queries_and_writes_local_and_global(exports, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for name, seed in (("q0", 0), ("i0", 1), ("i1", 2)):
        Image.fromarray(_image(200, 160, seed)).save(images / f"{name}.jpg")
    ground_truth = {
        "qimlist": ["q0"],
        "imlist": ["i0", "i1"],
        "gnd": [{"bbx": [10.2, 20.7, 90.4, 150.0], "easy": [0], "hard": [], "junk": [1]}],
    }
    dataset = tmp_path / "gnd_mini.pkl"
    dataset.write_bytes(pickle.dumps(ground_truth))
    _write_config(
        tmp_path / "delg.pbtxt",
        exports["local_and_global"],
        use_global_features=True,
    )
    out = tmp_path / "features"
    for image_set in ("query", "index"):
        assert main([
            "extract_features", f"--delf_config_path={tmp_path / 'delg.pbtxt'}",
            f"--dataset_file_path={dataset}", f"--images_dir={images}",
            f"--image_set={image_set}", f"--output_features_dir={out}",
        ]) == 0  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == sorted([
        "i0.delg_global", "i0.delg_local", "i1.delg_global", "i1.delg_local",
        "q0.delg_global", "q0.delg_local", MANIFEST_NAME, REPORT_NAME, RECORDS_DIR,
    ])  # fmt: skip
    query = feature_io.read_from_file(str(out / "q0.delg_local"))
    # Located inside the 80x129 crop (x 10..90, y 21..150), in crop pixels.
    assert query.locations[:, 0].max() < 129 and query.locations[:, 1].max() < 80
    descriptor = datum_io.read_from_file(str(out / "q0.delg_global"))
    assert descriptor.shape == (2048,)
    np.testing.assert_allclose(np.linalg.norm(descriptor), 1.0, rtol=1e-5)


def test_failed_images_exit_non_zero_with_the_count_and_the_report(exports, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    for name, seed in (("a", 0), ("b", 1), ("c", 2)):
        Image.fromarray(_image(64, 48, seed)).save(images / f"{name}.jpg")
    (images / "text.jpg").write_text("not a picture")
    (images / "empty.jpg").write_bytes(b"")
    (images / "noise.jpg").write_bytes(np.random.default_rng(0).bytes(2000))
    (images / "header.jpg").write_bytes((images / "a.jpg").read_bytes()[:12])
    names = ["a", "text", "b", "empty", "missing", "c", "noise", "header"]
    listed = tmp_path / "list_images.txt"
    listed.write_text("".join(f"{images / name}.jpg\n" for name in names))
    _write_config(tmp_path / "config.pbtxt", exports["local"])
    out = tmp_path / "features"
    argv = ["extract_features", f"--config_path={tmp_path / 'config.pbtxt'}",
            f"--list_images_path={listed}", f"--output_dir={out}"]  # fmt: skip

    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "3 extracted, 0 already done, 5 failed, of 8 images" in captured.out
    errors = captured.err.strip().splitlines()
    assert errors == [
        f"delf extract_features: error: 5 of 8 images failed; see {out / REPORT_NAME} "
        "(--allow_failures exits 0)"
    ]
    with open(out / REPORT_NAME, newline="") as handle:
        failed = [row["name"] for row in csv.DictReader(handle)]
    assert failed == ["empty", "header", "missing", "noise", "text"]
    assert sorted(p.name for p in out.glob("*.delf")) == ["a.delf", "b.delf", "c.delf"]

    assert main([*argv, "--allow_failures"]) == 0
    captured = capsys.readouterr()
    assert "0 extracted, 3 already done, 5 failed, of 8 images" in captured.out
    assert "error" not in captured.err


def test_a_dataset_name_leaving_the_output_folder_writes_nothing_there(exports, tmp_path, caplog):
    # The image the name points at exists, so only the name check stops the write.
    work = tmp_path / "work"
    (work / "images").mkdir(parents=True)
    Image.fromarray(_image(64, 48)).save(work / "images" / "i0.jpg")
    Image.fromarray(_image(64, 48, 1)).save(tmp_path / "escaped.jpg")
    truth = {"qimlist": ["q0"], "imlist": ["i0", "../../escaped"],
             "gnd": [{"bbx": [0, 0, 10, 10], "easy": [0], "hard": [], "junk": []}]}  # fmt: skip
    dataset = tmp_path / "gnd_evil.pkl"
    dataset.write_bytes(pickle.dumps(truth))
    _write_config(
        tmp_path / "delg.pbtxt",
        exports["local_and_global"],
        use_global_features=True,
    )
    code = main([
        "extract_features", f"--delf_config_path={tmp_path / 'delg.pbtxt'}",
        f"--dataset_file_path={dataset}", f"--images_dir={work / 'images'}",
        "--image_set=index", f"--output_features_dir={work / 'features'}",
    ])  # fmt: skip
    assert code == 1
    assert f"{dataset}: 'imlist': image name '../../escaped' has a '..' part" in caplog.text
    assert not list(tmp_path.glob("escaped.delg_*"))
    assert not (work / "features").exists()


def test_bad_flags_and_files_are_one_line_errors(tmp_path, caplog):
    assert main(["extract_features", f"--config_path={tmp_path / 'none.pbtxt'}"]) == 1
    assert "none.pbtxt" in caplog.text
    assert main(["extract_features", "--config_path=x", "--image_set=index"]) == 1
    assert "--config_path belongs to the list form" in caplog.text


def _tf1_model(path) -> None:
    """A TF1-style SavedModel that answers by tensor name, as the original's exports."""
    graph = tf.Graph()
    with graph.as_default():
        v1 = tf.compat.v1
        image = v1.placeholder(tf.uint8, [None, None, 3], name="input_image")
        scales = v1.placeholder(tf.float32, [None], name="input_scales")
        v1.placeholder(tf.float32, [], name="input_abs_thres")
        count = v1.placeholder(tf.int32, [], name="input_max_feature_num")
        height = tf.cast(tf.shape(image)[0], tf.float32)
        # One feature per requested feature slot, boxes centred at (height / 2, 2 * k).
        k = tf.cast(tf.range(count), tf.float32)
        y = tf.fill(tf.shape(k), height / 2)
        tf.identity(tf.stack([y - 1, 2 * k - 1, y + 1, 2 * k + 1], axis=1), name="boxes")
        tf.identity(tf.stack([tf.fill(tf.shape(k), 3.0), tf.fill(tf.shape(k), 4.0)], 1), "features")
        tf.identity(tf.fill(tf.shape(k), scales[0]), name="scales")
        tf.identity(tf.fill([count, 1], 150.0), name="scores")
        with v1.Session(graph=graph) as session:
            builder = v1.saved_model.Builder(str(path))
            builder.add_meta_graph_and_variables(session, [v1.saved_model.tag_constants.SERVING])
            builder.save()


def test_tf1_exports_are_run_by_tensor_names(tmp_path):
    _tf1_model(tmp_path / "tf1_model")
    config = parse_delf_config(
        f'model_path: "{tmp_path / "tf1_model"}" image_scales: 0.5 '
        "delf_local_config { use_pca: false max_feature_num: 3 score_threshold: 100.0 }"
    )
    local = Extractor(config)(_image(40, 30)).local
    np.testing.assert_allclose(local.locations, [[20, 0], [20, 2], [20, 4]])
    np.testing.assert_allclose(local.descriptors, [[0.6, 0.8]] * 3, rtol=1e-6)
    np.testing.assert_allclose(local.scales, [0.5] * 3)
    np.testing.assert_allclose(local.attention, [150.0] * 3)
