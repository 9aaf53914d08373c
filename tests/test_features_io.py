"""The .datum and .delf wire formats: round trips, errors, and byte-identity with real files."""

import os
import struct
from pathlib import Path

import numpy as np
import pytest

from delf_core.features import datum_io, feature_io
from delf_core.features.protos import datum_pb2, feature_pb2

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
REFERENCE = DATA / "reference_features"


@pytest.fixture
def reference() -> Path:
    if not REFERENCE.is_dir():
        pytest.skip(f"reference features not found at {REFERENCE} (shared test data absent)")
    return REFERENCE


def _random_features(n: int, dim: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return (
        rng.uniform(0, 500, (n, 2)).astype(np.float32),
        rng.choice([0.5, 1.0, 2.0], n).astype(np.float32),
        rng.normal(size=(n, dim)).astype(np.float32),
        rng.uniform(100, 300, n).astype(np.float32),
    )


# --- datum_io ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_float_arrays_round_trip_as_float32(tmp_path, dtype):
    array = np.arange(24, dtype=dtype).reshape(2, 3, 4) / 7
    path = str(tmp_path / "a.datum")
    datum_io.write_to_file(array, path)
    back = datum_io.read_from_file(path)
    assert back.dtype == np.float32
    assert back.shape == (2, 3, 4)
    np.testing.assert_array_equal(back, array.astype(np.float32))
    assert datum_io.array_to_datum(array).WhichOneof("kind_oneof") == "float_list"


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.uint64])
def test_uint_arrays_round_trip_as_uint32(dtype):
    array = np.array([[0, 1, 2], [3, 200, 255]], dtype=dtype)
    datum = datum_io.array_to_datum(array)
    assert datum.WhichOneof("kind_oneof") == "uint32_list"
    back = datum_io.parse_from_string(datum.SerializeToString())
    assert back.dtype == np.uint32
    np.testing.assert_array_equal(back, array)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.bool_, np.complex64])
def test_unsupported_dtype_is_named(dtype):
    with pytest.raises(ValueError, match=np.dtype(dtype).name):
        datum_io.array_to_datum(np.zeros(3, dtype=dtype))


def test_uint64_beyond_32_bits_is_refused():
    with pytest.raises(ValueError, match="32 bits"):
        datum_io.array_to_datum(np.array([2**40], dtype=np.uint64))


@pytest.mark.parametrize("shape", [(0,), (0, 40), (3, 0)])
def test_empty_arrays_round_trip(shape):
    back = datum_io.parse_from_string(datum_io.serialize_to_string(np.zeros(shape, np.float32)))
    assert back.shape == shape and back.dtype == np.float32


def test_pair_round_trip(tmp_path):
    first = np.arange(6, dtype=np.float64).reshape(2, 3)
    second = np.array([7, 8], dtype=np.uint8)
    path = str(tmp_path / "pair.datum")
    datum_io.write_pair_to_file(first, second, path)
    a, b = datum_io.read_pair_from_file(path)
    np.testing.assert_array_equal(a, first)
    np.testing.assert_array_equal(b, second)
    assert (a.dtype, b.dtype) == (np.float32, np.uint32)


def test_value_count_disagreeing_with_shape_is_an_error():
    datum = datum_pb2.DatumProto()
    datum.shape.dim.extend([2, 2])
    datum.float_list.value.extend([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"3 values but shape \[2, 2\]"):
        datum_io.datum_to_array(datum)


def test_corrupt_datum_file_names_the_path(tmp_path):
    path = tmp_path / "bad.datum"
    path.write_bytes(b"\x0a\x05\x0a\x03")
    with pytest.raises(ValueError, match="bad.datum"):
        datum_io.read_from_file(str(path))


def test_datum_on_fsspec_memory_url():
    url = "memory://features-test/global.delg_global"
    datum_io.write_to_file(np.ones(8, np.float32), url)
    np.testing.assert_array_equal(datum_io.read_from_file(url), np.ones(8))


@pytest.mark.parametrize("name", ["mean.datum", "pca_variances.datum"])
def test_reference_datum_reads_and_rewrites_identically(reference, tmp_path, name):
    original = (reference / name).read_bytes()
    array = datum_io.read_from_file(str(reference / name))
    assert array.shape == (1, 1024) and array.dtype == np.float32
    assert np.isfinite(array).all()
    out = tmp_path / name
    datum_io.write_to_file(array, str(out))
    assert out.read_bytes() == original


# --- feature_io -------------------------------------------------------------------


def test_features_round_trip_without_orientations(tmp_path):
    locations, scales, descriptors, attention = _random_features(25, 40)
    path = str(tmp_path / "img.delf")
    feature_io.write_to_file(path, locations, scales, descriptors, attention)
    got = feature_io.read_from_file(path)
    np.testing.assert_array_equal(got.locations, locations)
    np.testing.assert_array_equal(got.scales, scales)
    np.testing.assert_array_equal(got.descriptors, descriptors)
    np.testing.assert_array_equal(got.attention, attention)
    np.testing.assert_array_equal(got.orientations, np.zeros(25))
    assert all(a.dtype == np.float32 for a in got)
    # Orientation 0.0 is set explicitly, so it is on the wire as the original writes it.
    message = feature_pb2.DelfFeatures.FromString(Path(path).read_bytes())
    assert message.feature[0].HasField("orientation")
    assert (message.feature[0].y, message.feature[0].x) == tuple(locations[0])
    assert list(message.feature[0].descriptor.shape.dim) == [40]
    assert [p.name for p in tmp_path.iterdir()] == ["img.delf"]  # no temp file left


def test_features_round_trip_with_orientations_and_column_scores():
    locations, scales, descriptors, attention = _random_features(5, 128, seed=1)
    orientations = np.linspace(-1, 1, 5, dtype=np.float32)
    data = feature_io.serialize_to_string(
        locations, scales, descriptors, attention[:, None], orientations
    )
    locs, scl, desc, att, ori = feature_io.parse_from_string(data)
    np.testing.assert_array_equal(ori, orientations)
    np.testing.assert_array_equal(att, attention)
    assert desc.shape == (5, 128)


def test_empty_features_round_trip(tmp_path):
    path = str(tmp_path / "empty.delg_local")
    feature_io.write_to_file(path, np.zeros((0, 2)), np.zeros(0), np.zeros((0, 128)), np.zeros(0))
    got = feature_io.read_from_file(path)
    assert got.locations.shape == (0, 2)
    assert got.descriptors.shape == (0, 0)
    assert got.scales.shape == got.attention.shape == got.orientations.shape == (0,)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("scales", np.ones(4), "scales"),
        ("attention", np.ones(6), "attention"),
        ("descriptors", np.ones((4, 40)), "descriptors"),
        ("locations", np.ones((5, 3)), "locations"),
    ],
)
def test_mismatched_inputs_are_a_clear_error(field, value, message):
    locations, scales, descriptors, attention = _random_features(5, 40)
    args = {
        "locations": locations,
        "scales": scales,
        "descriptors": descriptors,
        "attention": attention,
    }
    args[field] = value
    with pytest.raises(ValueError, match=message):
        feature_io.features_to_proto(**args)


def test_corrupt_delf_file_names_the_path(tmp_path):
    data = feature_io.serialize_to_string(*_random_features(10, 40))
    path = tmp_path / "cut.delf"
    path.write_bytes(data[:-7])
    with pytest.raises(ValueError, match=r"cut\.delf.*DelfFeatures"):
        feature_io.read_from_file(str(path))
    path.write_bytes(b"\x10\x05")  # parses only as an unknown field
    with pytest.raises(ValueError, match=r"cut\.delf.*unknown field 2"):
        feature_io.read_from_file(str(path))


def test_hertford_reference_features(reference, tmp_path):
    original = (reference / "hertford_000056.delf").read_bytes()
    got = feature_io.read_from_file(str(reference / "hertford_000056.delf"))
    assert got.locations.shape == (1000, 2)
    assert got.descriptors.shape == (1000, 40)
    np.testing.assert_allclose(np.linalg.norm(got.descriptors, axis=1), 1.0, atol=1e-5)
    expected_scales = [0.5, 0.7071, 1.0, 1.4142, 2.0, 2.8281, 4.0]
    assert np.abs(got.scales[:, None] - np.array(expected_scales)).min(axis=1).max() < 1e-3
    assert (got.attention >= 100).all()
    assert (got.orientations == 0).all()
    assert (got.locations >= 0).all()

    # Our arrays, written by our writer, give the very same bytes.
    out = tmp_path / "hertford_000056.delf"
    feature_io.write_to_file(str(out), *got)
    assert out.read_bytes() == original
    # And the message itself round-trips.
    assert feature_pb2.DelfFeatures.FromString(original).SerializeToString() == original


def test_page_reference_features(reference, tmp_path):
    original = (reference / "page0024.delf").read_bytes()
    got = feature_io.parse_from_string(original)
    assert got.descriptors.shape == (36, 40)
    assert feature_io.serialize_to_string(*got) == original


def test_delf_on_fsspec_memory_url():
    url = "memory://features-test/img.delf"
    feature_io.write_to_file(url, *_random_features(3, 8))
    assert feature_io.read_from_file(url).descriptors.shape == (3, 8)


def test_written_file_replaces_an_old_one(tmp_path):
    path = tmp_path / "img.delf"
    path.write_bytes(b"old")
    feature_io.write_to_file(str(path), *_random_features(2, 4))
    assert feature_io.read_from_file(str(path)).locations.shape == (2, 2)
    assert sorted(os.listdir(tmp_path)) == ["img.delf"]


def test_floats_read_back_from_packed_and_unpacked_encodings():
    values = np.array([1.5, -0.0, 3.25e-8, np.finfo(np.float32).max] * 40, np.float32)
    packed = datum_io.serialize_to_string(values)
    # The same message with each float as its own field (wire type 5), as a writer that
    # ignores `packed` may send it: readers must accept both.
    dims = _varint(len(values))
    shape = b"\x0a" + _varint(len(dims) + 2) + b"\x0a" + _varint(len(dims)) + dims
    floats = b"".join(b"\x0d" + struct.pack("<f", v) for v in values)
    unpacked = shape + b"\x12" + _varint(len(floats)) + floats
    for data in (packed, unpacked):
        read = datum_io.parse_from_string(data)
        assert read.dtype == np.float32 and read.flags.writeable
        np.testing.assert_array_equal(read, values)
    assert datum_io.parse_from_string(datum_io.serialize_to_string(np.zeros(0))).shape == (0,)


def _varint(value: int) -> bytes:
    out = b""
    while value > 0x7F:
        out += bytes([value & 0x7F | 0x80])
        value >>= 7
    return out + bytes([value])
