"""Hostile inputs to match_images, perform_retrieval and the Revisited ground truth.

Ground-truth files and feature files come from the web or from other machines: a name
must not write outside its folder, a pickle must not run code, a damaged file must be
one line naming it, never a silent 0 or a traceback.
"""

from __future__ import annotations

import os
import pickle
import shlex
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import io as scipy_io

from delf_cli.main import main
from delf_core.features import datum_io, feature_io
from delf_core.features.extract import ImageItem, items_from_dataset, output_paths
from delf_core.retrieval import read_dataset_file

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DIM = 16
# perform_retrieval reports precision at 10: an index of at least 10 images.
INDEX = tuple(f"i{i}" for i in range(10))


def _real(*parts: str) -> Path:
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (test data from outside the project)")
    return path


def _ground_truth(imlist=INDEX, qimlist=("q0",), **entry) -> dict:
    gnd = {"bbx": [0.0, 0.0, 50.0, 40.0], "easy": [0], "hard": [1], "junk": [], **entry}
    return {"imlist": list(imlist), "qimlist": list(qimlist), "gnd": [gnd] * len(qimlist)}


def _write_pickle(path: Path, value) -> str:
    path.write_bytes(pickle.dumps(value))
    return str(path)


# --- 1. names that leave their folder -------------------------------------------------


ESCAPING_NAMES = ["../../escaped", "a/../../escaped", "/tmp/escaped", "..\\escaped",
                  "C:escaped", "", "nul\x00byte", "x::memory://escaped"]  # fmt: skip


@pytest.mark.parametrize("key", ["imlist", "qimlist"])
@pytest.mark.parametrize("name", ESCAPING_NAMES)
def test_a_name_leaving_the_folder_is_refused_naming_file_and_name(tmp_path, key, name):
    truth = _ground_truth()
    truth[key][0] = name
    path = _write_pickle(tmp_path / "gnd_evil.pkl", truth)
    with pytest.raises(ValueError) as error:
        read_dataset_file(path)
    message = str(error.value)
    assert message.startswith(f"{path}: '{key}': image name {name!r}")
    assert "\n" not in message


def test_names_with_folders_inside_the_split_are_kept(tmp_path):
    # GLDv2 ground truth names images by their path inside the split.
    truth = _ground_truth(imlist=("0/1/2/0123abc", "i1", "i2"), qimlist=("a/b/c/abc",))
    dataset = read_dataset_file(_write_pickle(tmp_path / "gnd.pkl", truth))
    assert dataset.index_list[0] == "0/1/2/0123abc" and dataset.query_list == ["a/b/c/abc"]


def test_a_mat_file_name_leaving_the_folder_is_refused(tmp_path):
    names = lambda values: np.array(values, dtype=object).reshape(1, -1)  # noqa: E731
    gnd = np.zeros(1, dtype=[(k, object) for k in ("easy", "hard", "junk", "bbx")])
    gnd[0]["easy"], gnd[0]["hard"], gnd[0]["junk"] = np.array([[1.0]]), np.zeros((1, 0)), [[]]
    gnd[0]["bbx"] = np.array([[0.0, 0.0, 5.0, 5.0]])
    path = tmp_path / "gnd_evil.mat"
    scipy_io.savemat(path, {"qimlist": names(["q0"]), "imlist": names(["../../x"]),
                            "gnd": gnd.reshape(1, -1)})  # fmt: skip
    with pytest.raises(ValueError, match=r"gnd_evil.mat: 'imlist': image name '../../x'"):
        read_dataset_file(str(path))


def test_output_and_image_paths_stay_inside_their_folders(tmp_path):
    # Checked where names become paths too, whoever made the item.
    with pytest.raises(ValueError, match=r"evil.jpg: image name '../../x' has a '..' part"):
        output_paths(ImageItem("../../x", "evil.jpg"), str(tmp_path / "out"), False, None)
    path = _write_pickle(tmp_path / "gnd.pkl", _ground_truth(imlist=("a/b/c/0abc", "i1", "i2")))
    items = items_from_dataset(path, str(tmp_path / "images"), "index")
    assert items[0].path == f"{tmp_path}/images/a/b/c/0abc.jpg"


# --- 2. pickles that run code, empty or damaged files, indices outside the list -------


class _RunsACommand:
    """Unpickling this runs a shell command: what a crafted ground-truth file does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def test_a_pickle_that_runs_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    truth = _ground_truth()
    truth["gnd"] = _RunsACommand(marker)
    path = _write_pickle(tmp_path / "gnd_roxford5k.pkl", truth)
    with pytest.raises(ValueError) as error:
        read_dataset_file(path)
    assert not marker.exists(), "the crafted pickle ran its command"
    assert str(error.value).startswith(f"{path}: refused to load: the pickle calls ")
    assert "system" in str(error.value)


def test_perform_retrieval_refuses_a_crafted_pickle_in_one_line(tmp_path, caplog):
    marker = tmp_path / "pwned"
    path = _write_pickle(tmp_path / "gnd_evil.pkl", _RunsACommand(marker))
    code = main(["perform_retrieval", f"--dataset_file_path={path}",
                 f"--output_dir={tmp_path / 'out'}"])  # fmt: skip
    assert not marker.exists(), "the crafted pickle ran its command"
    assert code == 1
    assert "gnd_evil.pkl: refused to load" in caplog.text
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file"),
        (b"\x80\x04\x95garbage", "not a readable pickle"),
        (pickle.dumps(_ground_truth())[:-20], "not a readable pickle"),
        (pickle.dumps([1, 2]), "not a Revisited ground-truth file"),
        (pickle.dumps({"imlist": [], "qimlist": []}), "no 'gnd'"),
    ],
)
def test_empty_or_malformed_pickles_are_one_line(tmp_path, caplog, content, message):
    path = tmp_path / "gnd_bad.pkl"
    path.write_bytes(content)
    code = main(["perform_retrieval", f"--dataset_file_path={path}",
                 f"--output_dir={tmp_path / 'out'}"])  # fmt: skip
    assert code == 1
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and errors[0].startswith(f"{path}: ")
    assert message in errors[0] and "\n" not in errors[0]


def test_the_real_pickles_and_numpy_pickles_still_load(tmp_path):
    dataset = read_dataset_file(str(_real("revisitop", "gnd_roxford5k.pkl")))
    assert len(dataset.index_list) == 4993
    # Ground truth written with NumPy arrays and scalars, by any protocol, loads too.
    truth = {
        "imlist": np.array(INDEX),
        "qimlist": ["q0"],
        "gnd": [{"bbx": np.array([1.5, 2.0, 30.0, 40.0]), "easy": np.array([0, 2]),
                 "hard": [np.int64(1)], "junk": np.array([], np.int64), "ok": {0, 2}}],
    }  # fmt: skip
    for protocol in (2, 4, 5):
        path = tmp_path / f"gnd_{protocol}.pkl"
        path.write_bytes(pickle.dumps(truth, protocol=protocol))
        loaded = read_dataset_file(str(path))
        assert loaded.index_list == list(INDEX)
        assert loaded.ground_truth[0]["easy"].tolist() == [0, 2]
        assert loaded.ground_truth[0]["hard"].tolist() == [1]
        assert loaded.ground_truth[0]["bbx"].tolist() == [1.5, 2.0, 30.0, 40.0]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"easy": [0, 10]}, "'easy' lists image 10, outside the 10 images of imlist (0..9)"),
        ({"junk": [-1]}, "'junk' lists image -1, outside the 10 images"),
        ({"hard": [17]}, "'hard' lists image 17"),
        ({"ok": [100]}, "'ok' lists image 100"),
        ({"easy": [0.5]}, "'easy': image positions must be whole numbers"),
        ({"bbx": [1, 2]}, "'bbx' must be 4 numbers"),
    ],
)
def test_ground_truth_outside_the_image_list_names_file_and_query(tmp_path, entry, message):
    path = _write_pickle(tmp_path / "gnd_other.pkl", _ground_truth(qimlist=("q0", "q1"), **entry))
    with pytest.raises(ValueError) as error:
        read_dataset_file(path)
    assert str(error.value).startswith(f"{path}: query 0 (q0): ")
    assert message in str(error.value)


def test_perform_retrieval_names_the_bad_index_rather_than_scoring_zero(tmp_path, caplog):
    query_dir, index_dir = _features(tmp_path)
    path = _write_pickle(tmp_path / "gnd.pkl", _ground_truth(easy=[0, 15]))
    code = _perform_retrieval(path, query_dir, index_dir, tmp_path / "out")
    assert code == 1
    assert "gnd.pkl: query 0 (q0): 'easy' lists image 15" in caplog.text
    assert not (tmp_path / "out" / "metrics.txt").exists()


# --- 4. empty, truncated and damaged feature files ------------------------------------


def _image(path: Path) -> str:
    Image.fromarray(np.full((40, 50, 3), 128, np.uint8)).save(path)
    return str(path)


def _match(tmp_path: Path, features_2: Path) -> int:
    features_1 = _real("reference_features", "hertford_000056.delf")
    image = _image(tmp_path / "image.jpg")
    return main([
        "match_images", f"--image_1_path={image}", f"--image_2_path={image}",
        f"--features_1_path={features_1}", f"--features_2_path={features_2}",
        f"--output_image={tmp_path / 'match.png'}",
    ])  # fmt: skip


def _damaged(kind: str, path: Path) -> Path:
    real = _real("reference_features", "hertford_000056.delf").read_bytes()
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(real[: len(real) // 2 + 7])
    elif kind == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(3000))
    else:  # parses, but holds values no writer makes
        locations = np.array([[np.nan, 1.0], [2.0, 3.0]])
        feature_io.write_to_file(str(path), locations, np.ones(2), np.eye(2, 40), np.ones(2))
    return path


@pytest.mark.parametrize("kind", ["empty", "truncated", "garbage", "not_finite"])
def test_match_images_refuses_a_bad_features_file_in_one_line(tmp_path, capsys, kind):
    path = _damaged(kind, tmp_path / f"{kind}.delf")
    assert _match(tmp_path, path) != 0
    captured = capsys.readouterr()
    assert "inliers" not in captured.out
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and f"--features_2_path: {path}" in lines[0]
    assert not (tmp_path / "match.png").exists()


def _features(root: Path, dim: int = DIM) -> tuple[Path, Path]:
    """One query's and the INDEX images' .delg_global and .delg_local files."""
    rng = np.random.default_rng(0)
    query_dir, index_dir = root / "query", root / "index"
    query_dir.mkdir(), index_dir.mkdir()
    for folder, name in ((query_dir, "q0"), *((index_dir, name) for name in INDEX)):
        vector = rng.normal(size=dim).astype(np.float32)
        datum_io.write_to_file(vector / np.linalg.norm(vector), str(folder / f"{name}.delg_global"))
        locations = rng.uniform(0, 100, (20, 2))
        descriptors = rng.normal(size=(20, dim))
        descriptors /= np.linalg.norm(descriptors, axis=1, keepdims=True)
        path = str(folder / f"{name}.delg_local")
        feature_io.write_to_file(path, locations, np.ones(20), descriptors, np.ones(20))
    return query_dir, index_dir


def _perform_retrieval(dataset, query_dir, index_dir, out) -> int:
    return main([
        "perform_retrieval", f"--dataset_file_path={dataset}",
        f"--query_features_dir={query_dir}", f"--index_features_dir={index_dir}",
        f"--output_dir={out}", "--use_geometric_verification", "--num_workers=1",
    ])  # fmt: skip


def _write_bad(kind: str, index_dir: Path) -> Path:
    if kind == "local_of_another_size":
        path = index_dir / "i1.delg_local"
        feature_io.write_to_file(str(path), np.ones((3, 2)), np.ones(3), np.eye(3, 8), np.ones(3))
    elif kind == "local_not_finite":
        path = index_dir / "i1.delg_local"
        locations = np.full((3, 2), np.inf)
        feature_io.write_to_file(str(path), locations, np.ones(3), np.eye(3, DIM), np.ones(3))
    elif kind == "local_garbage":
        path = _damaged("garbage", index_dir / "i1.delg_local")
    elif kind == "global_empty":
        path = index_dir / "i1.delg_global"
        path.write_bytes(b"")
    elif kind == "global_integers":
        path = index_dir / "i1.delg_global"
        datum_io.write_to_file(np.ones(DIM, np.uint8), str(path))
    elif kind == "global_not_finite":
        path = index_dir / "i1.delg_global"
        datum_io.write_to_file(np.full(DIM, np.nan, np.float32), str(path))
    else:  # a global descriptor of another model
        path = index_dir / "i2.delg_global"
        datum_io.write_to_file(np.ones(DIM * 2, np.float32), str(path))
    return path


@pytest.mark.parametrize(
    "kind",
    ["local_of_another_size", "local_not_finite", "local_garbage", "global_empty",
     "global_integers", "global_not_finite", "global_of_another_size"],
)  # fmt: skip
def test_perform_retrieval_names_a_bad_index_features_file(tmp_path, caplog, kind):
    query_dir, index_dir = _features(tmp_path)
    dataset = _write_pickle(tmp_path / "gnd.pkl", _ground_truth())
    assert _perform_retrieval(dataset, query_dir, index_dir, tmp_path / "ok") == 0
    path = _write_bad(kind, index_dir)
    caplog.clear()
    assert _perform_retrieval(dataset, query_dir, index_dir, tmp_path / "out") == 1
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and errors[0].startswith(f"{path}: "), errors
    assert not (tmp_path / "out" / "metrics.txt").exists()


def test_an_empty_local_features_file_is_an_image_without_features(tmp_path):
    # What extract_features writes for an image too small or too plain for any feature:
    # re-ranking gives it 0 inliers, as the original does, rather than failing.
    query_dir, index_dir = _features(tmp_path)
    (index_dir / "i1.delg_local").write_bytes(b"")
    dataset = _write_pickle(tmp_path / "gnd.pkl", _ground_truth())
    assert _perform_retrieval(dataset, query_dir, index_dir, tmp_path / "out") == 0
    assert (tmp_path / "out" / "metrics.txt").exists()
