"""The export subcommands: signatures, output shapes and values of the extraction graph."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from delf_cli.main import main
from delf_core.export import CheckpointMismatchError, ExportConfig, export_model
from delf_core.export.current import FINGERPRINT_NAME
from delf_core.model import create_model

IMAGE = np.random.default_rng(0).integers(0, 256, (120, 90, 3), dtype=np.uint8)


def _write_weights(folder, variant: str, **overrides) -> str:
    tf.keras.utils.set_random_seed(1)
    model = create_model(variant, num_classes=3, **overrides)
    model.build_for(64)
    path = str(folder / "delf_weights")
    tf.train.Checkpoint(model=model).write(path)
    return path


@pytest.fixture(scope="module")
def delg_weights(tmp_path_factory):
    """DELG weights with the autoencoder, as `delf train --delg_global_features` writes."""
    return _write_weights(tmp_path_factory.mktemp("delg"), "delg_r50")


@pytest.fixture(scope="module")
def delf_weights(tmp_path_factory):
    """DELF weights without the autoencoder."""
    return _write_weights(tmp_path_factory.mktemp("delf"), "delf_r50", use_autoencoder=False)


def _inputs(signature) -> dict[str, tf.TensorSpec]:
    return signature.structured_input_signature[1]


def _outputs(signature) -> dict[str, list]:
    return {name: spec.shape.as_list() for name, spec in signature.structured_outputs.items()}


def test_local_export_has_the_original_signature_and_selects_by_attention(delg_weights, tmp_path):
    path = str(tmp_path / "gldv2_model_local")
    code = main(["export_local_model", f"--ckpt_path={delg_weights}", f"--export_path={path}"])
    assert code == 0
    signature = tf.saved_model.load(path).signatures["serving_default"]
    inputs = _inputs(signature)
    assert {name: (spec.dtype, spec.shape.as_list()) for name, spec in inputs.items()} == {
        "input_image": (tf.uint8, [None, None, 3]),
        "input_scales": (tf.float32, [None]),
        "input_max_feature_num": (tf.int32, []),
        "input_abs_thres": (tf.float32, []),
    }
    # The autoencoder is on by default: 128-d descriptors (the original breaks here).
    assert _outputs(signature) == {
        "boxes": [None, 4],
        "features": [None, 128],
        "scales": [None],
        "scores": [None, 1],
    }

    def run(scales, max_feature_num, abs_thres):
        return signature(
            input_image=tf.constant(IMAGE),
            input_scales=tf.constant(scales, tf.float32),
            input_max_feature_num=tf.constant(max_feature_num),
            input_abs_thres=tf.constant(abs_thres, tf.float32),
        )

    everything = run([0.5, 1.0, 2.0], 10_000, 0.0)
    # Block3 strides: one feature per 32 pixels, so ceil(size * scale / 32) cells a side.
    cells = sum(-(-round(120 * s) // 32) * -(-round(90 * s) // 32) for s in (0.5, 1.0, 2.0))
    assert everything["features"].shape[0] == cells
    scores = everything["scores"].numpy()[:, 0]
    assert np.all(np.diff(scores) <= 0), "features come by descending attention score"
    assert set(np.round(everything["scales"].numpy(), 4)) == {2.0, 1.0, 0.5}
    # Box centres sit on the stride grid of their scale, in input-image pixels.
    boxes, scales = everything["boxes"].numpy(), everything["scales"].numpy()
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2 / scales[:, None]
    np.testing.assert_allclose(centres % 32, 0, atol=1e-3)

    top = run([0.5, 1.0, 2.0], 5, 0.0)
    np.testing.assert_allclose(top["scores"].numpy()[:, 0], scores[:5])
    threshold = float(np.median(scores))
    above = run([0.5, 1.0, 2.0], 10_000, threshold)
    assert above["features"].shape[0] == int(np.sum(scores >= threshold))
    assert run([1.0], 1000, 1e9)["features"].shape == (0, 128)


def test_nms_below_iou_one_drops_overlapping_features(delg_weights, tmp_path):
    def count(iou, name):
        path = str(tmp_path / name)
        export_model(
            ExportConfig.for_kind("local", ckpt_path=delg_weights, export_path=path, iou=iou)
        )
        signature = tf.saved_model.load(path).signatures["serving_default"]
        out = signature(
            input_image=tf.constant(IMAGE),
            input_scales=tf.constant([1.0]),
            input_max_feature_num=tf.constant(1000),
            input_abs_thres=tf.constant(0.0),
        )
        return out["features"].shape[0]

    # Neighbouring 291-px boxes 32 px apart overlap with IoU ~0.8.
    assert count(0.5, "nms") < count(1.0, "all")


def test_local_and_global_export_keeps_global_descriptors_of_listed_scales(delg_weights, tmp_path):
    path = str(tmp_path / "gldv2_model_local_and_global")
    assert main(["export_local_and_global_model", f"--ckpt_path={delg_weights}",
                 f"--export_path={path}"]) == 0  # fmt: skip
    signature = tf.saved_model.load(path).signatures["serving_default"]
    assert set(_inputs(signature)) == {
        "input_image", "input_scales", "input_max_feature_num", "input_abs_thres",
        "input_global_scales_ind",
    }  # fmt: skip
    assert _outputs(signature)["global_descriptors"] == [None, 2048]
    out = signature(
        input_image=tf.constant(IMAGE),
        input_scales=tf.constant([0.5, 1.0, 2.0]),
        input_max_feature_num=tf.constant(50),
        input_abs_thres=tf.constant(0.0),
        input_global_scales_ind=tf.constant([2, 1]),
    )
    assert out["features"].shape == (50, 128)
    # Listed scales 2 and 1 come back in scale order: 1.0 then 2.0.
    model = create_model("delg_r50", num_classes=3)
    model.build_for(64)
    tf.train.Checkpoint(model=model).read(delg_weights).expect_partial()
    normalized = (tf.cast(IMAGE, tf.float32)[None] - 128.0) / 128.0
    at_one = model.extract(normalized)["global_descriptor"][0]
    np.testing.assert_allclose(out["global_descriptors"][0], at_one, rtol=1e-4, atol=1e-4)
    assert out["global_descriptors"].shape == (2, 2048)


def test_global_export_per_scale_and_in_the_kaggle_format(delg_weights, tmp_path):
    per_scale = str(tmp_path / "global")
    kaggle = str(tmp_path / "kaggle")
    assert main(["export_global_model", f"--ckpt_path={delg_weights}",
                 f"--export_path={per_scale}", "--delg_global_features"]) == 0  # fmt: skip
    assert main(["export_global_model", f"--ckpt_path={delg_weights}",
                 f"--export_path={kaggle}", "--delg_global_features",
                 "--input_scales_list=0.70710677,1.0,1.4142135",
                 "--multi_scale_pool_type=sum", "--normalize_global_descriptor"]) == 0  # fmt: skip
    signature = tf.saved_model.load(per_scale).signatures["serving_default"]
    assert set(_inputs(signature)) == {"input_image", "input_scales", "input_global_scales_ind"}
    assert _outputs(signature) == {"global_descriptors": [None, 2048]}
    scales = [0.70710677, 1.0, 1.4142135]
    descriptors = signature(
        input_image=tf.constant(IMAGE),
        input_scales=tf.constant(scales),
        input_global_scales_ind=tf.constant([0, 1, 2]),
    )["global_descriptors"].numpy()
    assert descriptors.shape == (3, 2048)

    fixed = tf.saved_model.load(kaggle).signatures["serving_default"]
    assert set(_inputs(fixed)) == {"input_image"}
    assert _outputs(fixed) == {"global_descriptor": [2048]}
    pooled = fixed(input_image=tf.constant(IMAGE))["global_descriptor"].numpy()
    expected = descriptors.sum(axis=0)
    np.testing.assert_allclose(pooled, expected / np.linalg.norm(expected), atol=1e-5)


def test_export_refuses_to_overwrite(delg_weights, tmp_path, caplog):
    path = tmp_path / "taken"
    path.mkdir()
    (path / "keep.txt").write_text("mine")
    code = main(["export_local_model", f"--ckpt_path={delg_weights}", f"--export_path={path}"])
    assert code == 1
    assert "exists already" in caplog.text
    assert [p.name for p in path.iterdir()] == ["keep.txt"]


def test_an_export_of_the_same_checkpoint_and_flags_is_kept(delg_weights, tmp_path, capsys, caplog):
    path = tmp_path / "local"
    argv = ["export_local_model", f"--ckpt_path={delg_weights}", f"--export_path={path}"]
    assert main(argv) == 0
    assert (path / FINGERPRINT_NAME).exists()
    graph = (path / "saved_model.pb").stat().st_mtime_ns
    capsys.readouterr()
    assert main(argv) == 0
    assert f"{path} holds a current local export" in capsys.readouterr().out
    assert (path / "saved_model.pb").stat().st_mtime_ns == graph
    # Other flags: the folder holds another export, which a hand run never replaces.
    assert main([*argv, "--iou=0.5"]) == 1
    assert "exists already" in caplog.text
    assert (path / "saved_model.pb").stat().st_mtime_ns == graph


def test_flags_that_do_not_fit_the_checkpoint_name_the_flag(delf_weights, tmp_path):
    with pytest.raises(CheckpointMismatchError, match="--nouse_autoencoder"):
        export_model(
            ExportConfig.for_kind("local", ckpt_path=delf_weights, export_path=str(tmp_path / "a"))
        )
    with pytest.raises(CheckpointMismatchError, match="--nodelg_global_features"):
        export_model(
            ExportConfig.for_kind(
                "local_and_global",
                ckpt_path=delf_weights,
                export_path=str(tmp_path / "b"),
                use_autoencoder=False,
            )
        )
    with pytest.raises(FileNotFoundError, match="--ckpt_path"):
        export_model(
            ExportConfig.for_kind(
                "global", ckpt_path=str(tmp_path / "nothing"), export_path=str(tmp_path / "c")
            )
        )
    assert not list(tmp_path.iterdir())
