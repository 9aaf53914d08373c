"""DelfConfig schema and text files, and PCA with the parameters they name."""

from pathlib import Path

import numpy as np
import pytest
from google.protobuf.descriptor import FieldDescriptor as FD

from delf_core.features import (
    DelfConfigError,
    PcaParameters,
    apply_pca_and_whitening,
    check_delf_config,
    datum_io,
    global_scales_indices,
    load_delf_config,
    load_pca_parameters,
    parse_delf_config,
    write_delf_config,
)
from delf_core.features.protos import datum_pb2, delf_config_pb2, feature_pb2

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
REFERENCE = DATA / "reference_features"

# (message, field, number, type, default) as in REFERENCE §6.1 and §6.5.
SCHEMA = [
    (delf_config_pb2.DelfPcaParameters, "mean_path", 1, FD.TYPE_STRING, ""),
    (delf_config_pb2.DelfPcaParameters, "projection_matrix_path", 2, FD.TYPE_STRING, ""),
    (delf_config_pb2.DelfPcaParameters, "pca_dim", 3, FD.TYPE_INT32, 0),
    (delf_config_pb2.DelfPcaParameters, "use_whitening", 4, FD.TYPE_BOOL, False),
    (delf_config_pb2.DelfPcaParameters, "pca_variances_path", 5, FD.TYPE_STRING, ""),
    (delf_config_pb2.DelfLocalFeatureConfig, "use_pca", 1, FD.TYPE_BOOL, True),
    (delf_config_pb2.DelfLocalFeatureConfig, "layer_name", 2, FD.TYPE_STRING, ""),
    (delf_config_pb2.DelfLocalFeatureConfig, "iou_threshold", 3, FD.TYPE_FLOAT, 1.0),
    (delf_config_pb2.DelfLocalFeatureConfig, "max_feature_num", 4, FD.TYPE_INT32, 1000),
    (delf_config_pb2.DelfLocalFeatureConfig, "score_threshold", 5, FD.TYPE_FLOAT, 100.0),
    (delf_config_pb2.DelfLocalFeatureConfig, "pca_parameters", 6, FD.TYPE_MESSAGE, None),
    (delf_config_pb2.DelfLocalFeatureConfig, "use_resized_coordinates", 7, FD.TYPE_BOOL, False),
    (delf_config_pb2.DelfGlobalFeatureConfig, "use_pca", 1, FD.TYPE_BOOL, True),
    (delf_config_pb2.DelfGlobalFeatureConfig, "pca_parameters", 2, FD.TYPE_MESSAGE, None),
    (delf_config_pb2.DelfGlobalFeatureConfig, "image_scales_ind", 3, FD.TYPE_INT32, []),
    (delf_config_pb2.DelfConfig, "model_path", 1, FD.TYPE_STRING, ""),
    (delf_config_pb2.DelfConfig, "image_scales", 2, FD.TYPE_FLOAT, []),
    (delf_config_pb2.DelfConfig, "delf_local_config", 3, FD.TYPE_MESSAGE, None),
    (delf_config_pb2.DelfConfig, "max_image_size", 4, FD.TYPE_INT32, -1),
    (delf_config_pb2.DelfConfig, "min_image_size", 5, FD.TYPE_INT32, -1),
    (delf_config_pb2.DelfConfig, "use_square_images", 6, FD.TYPE_BOOL, False),
    (delf_config_pb2.DelfConfig, "use_local_features", 7, FD.TYPE_BOOL, True),
    (delf_config_pb2.DelfConfig, "use_global_features", 8, FD.TYPE_BOOL, False),
    (delf_config_pb2.DelfConfig, "delf_global_config", 9, FD.TYPE_MESSAGE, None),
    (delf_config_pb2.DelfConfig, "is_tf2_exported", 10, FD.TYPE_BOOL, False),
    (feature_pb2.DelfFeature, "descriptor", 1, FD.TYPE_MESSAGE, None),
    (feature_pb2.DelfFeature, "x", 2, FD.TYPE_FLOAT, 0.0),
    (feature_pb2.DelfFeature, "y", 3, FD.TYPE_FLOAT, 0.0),
    (feature_pb2.DelfFeature, "scale", 4, FD.TYPE_FLOAT, 0.0),
    (feature_pb2.DelfFeature, "orientation", 5, FD.TYPE_FLOAT, 0.0),
    (feature_pb2.DelfFeature, "strength", 6, FD.TYPE_FLOAT, 0.0),
    (feature_pb2.DelfFeatures, "feature", 1, FD.TYPE_MESSAGE, []),
    (datum_pb2.DatumShape, "dim", 1, FD.TYPE_INT64, []),
    (datum_pb2.FloatList, "value", 1, FD.TYPE_FLOAT, []),
    (datum_pb2.Uint32List, "value", 1, FD.TYPE_UINT32, []),
    (datum_pb2.DatumProto, "shape", 1, FD.TYPE_MESSAGE, None),
    (datum_pb2.DatumProto, "float_list", 2, FD.TYPE_MESSAGE, None),
    (datum_pb2.DatumProto, "uint32_list", 3, FD.TYPE_MESSAGE, None),
    (datum_pb2.DatumPairProto, "first", 1, FD.TYPE_MESSAGE, None),
    (datum_pb2.DatumPairProto, "second", 2, FD.TYPE_MESSAGE, None),
]

DELG_CONFIG = """
use_local_features: true
use_global_features: true
model_path: "parameters/r50delg_gld_20200814"
image_scales: 0.25
image_scales: 0.35355338
image_scales: 0.5
image_scales: 0.70710677
image_scales: 1.0
image_scales: 1.4142135
image_scales: 2.0
delf_local_config {
  use_pca: false
  max_feature_num: 1000
  score_threshold: 175.0
}
delf_global_config {
  use_pca: false
  image_scales_ind: 3
  image_scales_ind: 4
  image_scales_ind: 5
}
max_image_size: 1024
"""


@pytest.mark.parametrize(("message", "name", "number", "kind", "default"), SCHEMA)
def test_schema_matches_the_reference(message, name, number, kind, default):
    field = message.DESCRIPTOR.fields_by_name[name]
    assert field.number == number
    assert field.type == kind
    if default is not None:
        assert getattr(message(), name) == pytest.approx(default)
    assert message.DESCRIPTOR.file.package == "delf.protos"


def test_repeated_numbers_are_packed():
    for message in (datum_pb2.DatumShape, datum_pb2.FloatList, datum_pb2.Uint32List):
        field = message.DESCRIPTOR.fields[0]
        assert field.GetOptions().packed


def test_reference_v1_config_loads(tmp_path):
    path = REFERENCE / "delf_config_v1_example.pbtxt"
    if not path.is_file():
        pytest.skip(f"{path} not found (shared test data absent)")
    config = load_delf_config(str(path))
    assert config.model_path == "parameters/delf_v1_20171026/model/"
    assert list(config.image_scales) == pytest.approx([0.25, 0.3536, 0.5, 0.7071, 1.0, 1.4142, 2.0])
    local = config.delf_local_config
    assert local.use_pca and local.layer_name == "resnet_v1_50/block3"
    assert (local.iou_threshold, local.max_feature_num, local.score_threshold) == (1.0, 1000, 100.0)
    assert local.pca_parameters.pca_dim == 40 and not local.pca_parameters.use_whitening
    assert local.pca_parameters.mean_path.endswith("pca/mean.datum")
    assert (config.max_image_size, config.min_image_size) == (-1, -1)
    assert config.use_local_features and not config.use_global_features
    assert not config.is_tf2_exported
    assert global_scales_indices(config) == list(range(7))

    out = str(tmp_path / "copy.pbtxt")
    write_delf_config(config, out)
    assert load_delf_config(out) == config


def test_delg_config_round_trip(tmp_path):
    config = parse_delf_config(DELG_CONFIG)
    check_delf_config(config)
    assert global_scales_indices(config) == [3, 4, 5]
    path = str(tmp_path / "delg.pbtxt")
    write_delf_config(config, path)
    back = load_delf_config(path)
    assert back == config
    assert back.image_scales[3] == np.float32(0.70710677)


def test_parse_error_names_file_and_line(tmp_path):
    path = tmp_path / "bad.pbtxt"
    path.write_text('# a comment\nmodel_path: "m"\nimage_scale: 1.0\n')
    with pytest.raises(DelfConfigError, match=r"bad\.pbtxt:3:1: .*image_scale") as info:
        load_delf_config(str(path))
    assert "\n" not in str(info.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_delf_config(str(tmp_path / "nope.pbtxt"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("image_scales: 1.0 use_local_features: false", "both false"),
        ("delf_local_config { use_pca: false }", "image_scales is empty"),
        ("image_scales: 0.0 delf_local_config { use_pca: false }", "positive"),
        ("image_scales: 1.0", "delf_local_config.use_pca is true"),
        (
            "image_scales: 1.0 use_local_features: false use_global_features: true "
            "delf_global_config { use_pca: false image_scales_ind: 1 }",
            r"image_scales_ind \[1\] out of range",
        ),
        (
            'image_scales: 1.0 delf_local_config { pca_parameters { mean_path: "m" '
            'projection_matrix_path: "p" pca_dim: 40 use_whitening: true } }',
            "pca_variances_path",
        ),
    ],
)
def test_check_rejects_unusable_configs(tmp_path, text, message):
    path = tmp_path / "c.pbtxt"
    path.write_text(text)
    with pytest.raises(DelfConfigError, match=rf"c\.pbtxt: .*{message}"):
        load_delf_config(str(path))
    load_delf_config(str(path), check=False)


# --- PCA (REFERENCE §6.3 test vector) ----------------------------------------------

PCA_DATA = np.array([[1, 2, -2], [-5, 0, 3], [-1, 2, 0], [0, 4, -1]], np.float32)
PCA_MATRIX = np.array([[2, 0, -1], [0, 1, 1], [-1, 1, 3]], np.float32)
PCA_MEAN = np.array([1, 2, 3], np.float32)
PCA_VARIANCES = np.array([4, 1], np.float32)


def test_pca_with_whitening():
    params = PcaParameters(PCA_MEAN, PCA_MATRIX, PCA_VARIANCES)
    out = apply_pca_and_whitening(PCA_DATA, params, pca_dim=2, use_whitening=True)
    expected = [[2.5, -5], [-6, -2], [-0.5, -3], [1, -2]]
    np.testing.assert_allclose(out, expected)
    assert out.dtype == np.float32


def test_pca_without_whitening():
    params = PcaParameters(PCA_MEAN, PCA_MATRIX)
    out = apply_pca_and_whitening(PCA_DATA, params, pca_dim=2, use_whitening=False)
    np.testing.assert_allclose(out, [[5, -5], [-12, -2], [-1, -3], [2, -2]])
    one = apply_pca_and_whitening(PCA_DATA[0], params, pca_dim=3)
    np.testing.assert_allclose(one, [5, -5, -15])


def test_pca_errors():
    params = PcaParameters(PCA_MEAN, PCA_MATRIX)
    with pytest.raises(ValueError, match="variances"):
        apply_pca_and_whitening(PCA_DATA, params, 2, use_whitening=True)
    with pytest.raises(ValueError, match="pca_dim"):
        apply_pca_and_whitening(PCA_DATA, params, 4)
    with pytest.raises(ValueError, match="dimensions"):
        apply_pca_and_whitening(np.ones((2, 5)), params, 2)


def test_pca_parameters_from_datum_files(tmp_path):
    datum_io.write_to_file(PCA_MEAN[None, :], str(tmp_path / "mean.datum"))
    datum_io.write_to_file(PCA_MATRIX, str(tmp_path / "proj.datum"))
    datum_io.write_to_file(np.array([[4, 1, 9]], np.float32), str(tmp_path / "var.datum"))
    message = delf_config_pb2.DelfPcaParameters(
        mean_path=str(tmp_path / "mean.datum"),
        projection_matrix_path=str(tmp_path / "proj.datum"),
        pca_variances_path=str(tmp_path / "var.datum"),
        pca_dim=2,
        use_whitening=True,
    )
    params = load_pca_parameters(message)
    assert params.mean.shape == (3,) and params.variances.shape == (3,)
    out = apply_pca_and_whitening(PCA_DATA, params, message.pca_dim, message.use_whitening)
    np.testing.assert_allclose(out, [[2.5, -5], [-6, -2], [-0.5, -3], [1, -2]])

    datum_io.write_to_file(np.ones((2, 4), np.float32), str(tmp_path / "wide.datum"))
    message.projection_matrix_path = str(tmp_path / "wide.datum")
    with pytest.raises(ValueError, match=r"wide\.datum: projection matrix has shape \[2, 4\]"):
        load_pca_parameters(message)


def test_reference_pca_variances_are_squeezed(tmp_path):
    if not REFERENCE.is_dir():
        pytest.skip(f"reference features not found at {REFERENCE} (shared test data absent)")
    # The v1 projection matrix is not in the shared data; an identity stands in for it.
    datum_io.write_to_file(np.eye(1024, dtype=np.float32), str(tmp_path / "proj.datum"))
    message = delf_config_pb2.DelfPcaParameters(
        mean_path=str(REFERENCE / "mean.datum"),
        projection_matrix_path=str(tmp_path / "proj.datum"),
        pca_variances_path=str(REFERENCE / "pca_variances.datum"),
        pca_dim=40,
        use_whitening=True,
    )
    params = load_pca_parameters(message)
    assert params.mean.shape == (1024,) and params.variances.shape == (1024,)
    out = apply_pca_and_whitening(params.mean[None, :] + 1, params, 40, True)
    np.testing.assert_allclose(out, 1 / np.sqrt(params.variances[None, :40]), rtol=1e-5)
