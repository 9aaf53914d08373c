"""Revisited Oxford/Paris dataset files: the real .pkl ground truth and .mat files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import io as scipy_io

from delf_core.retrieval import read_dataset_file

REVISITOP = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "revisitop"


def _real(name: str) -> str:
    path = REVISITOP / name
    if not path.exists():
        pytest.skip(f"{path} is absent (test data from outside the project)")
    return str(path)


@pytest.mark.parametrize(
    ("name", "queries", "index"), [("gnd_roxford5k.pkl", 70, 4993), ("gnd_rparis6k.pkl", 70, 6322)]
)
def test_real_ground_truth_loads(name, queries, index):
    dataset = read_dataset_file(_real(name))
    assert len(dataset.query_list) == queries and len(dataset.index_list) == index
    assert dataset.images("query") is dataset.query_list
    for truth in dataset.ground_truth:
        assert truth["bbx"].shape == (4,)
        for key in ("easy", "hard", "junk"):
            assert truth[key].dtype == np.int64
            assert np.all((truth[key] >= 0) & (truth[key] < index))


def _to_mat(dataset, path) -> None:
    """Writes the MATLAB form: cell arrays of names, a struct array with 1-based indices."""
    gnd = np.zeros(
        len(dataset.ground_truth), dtype=[(k, object) for k in ("easy", "hard", "junk", "bbx")]
    )
    for i, truth in enumerate(dataset.ground_truth):
        for key in ("easy", "hard", "junk"):
            gnd[i][key] = (truth[key] + 1).astype(np.float64).reshape(1, -1)
        gnd[i]["bbx"] = truth["bbx"].reshape(1, -1)
    names = lambda values: np.array(values, dtype=object).reshape(1, -1)  # noqa: E731
    scipy_io.savemat(
        path, {"qimlist": names(dataset.query_list), "imlist": names(dataset.index_list),
               "gnd": gnd.reshape(1, -1)},
    )  # fmt: skip


def test_mat_indices_are_one_based_and_read_as_the_pickle(tmp_path):
    pickled = read_dataset_file(_real("gnd_roxford5k.pkl"))
    path = tmp_path / "gnd_roxford5k.mat"
    _to_mat(pickled, path)
    loaded = read_dataset_file(str(path))
    assert loaded.query_list == pickled.query_list
    assert loaded.index_list == pickled.index_list
    for mine, theirs in zip(loaded.ground_truth, pickled.ground_truth, strict=True):
        for key in ("easy", "hard", "junk", "bbx"):
            np.testing.assert_array_equal(mine[key], theirs[key])


def test_not_a_dataset_file_is_a_clear_error(tmp_path):
    path = tmp_path / "gnd_wrong.pkl"
    path.write_bytes(b"\x80\x04K\x01.")  # the pickle of the number 1
    with pytest.raises(ValueError, match="gnd_wrong.pkl: not a Revisited"):
        read_dataset_file(str(path))
    with pytest.raises(ValueError, match="image_set"):
        read_dataset_file(_real("gnd_roxford5k.pkl")).images("train")


def test_downloaded_mini_splits_become_a_revisited_benchmark(mini_gldv2, tmp_path, capsys):
    import csv

    from delf_cli.main import main

    path = tmp_path / "gnd_mini.pkl"
    assert main([
        "make_revisited_ground_truth", f"--dataset_dir={mini_gldv2}", f"--output_path={path}"
    ]) == 0  # fmt: skip
    assert "queries against" in capsys.readouterr().out
    dataset = read_dataset_file(str(path))
    assert len(dataset.query_list) >= 4 and dataset.index_list
    with open(mini_gldv2 / "index" / "index_image_to_landmark.csv", newline="") as handle:
        index_landmark = {row["id"]: row["landmark_id"] for row in csv.DictReader(handle)}
    for name, truth in zip(dataset.query_list, dataset.ground_truth, strict=True):
        # Names are paths inside the split, so <split dir>/<name>.jpg is the image.
        assert (mini_gldv2 / "test" / f"{name}.jpg").exists()
        # A query's matches are the index views of one landmark.
        matches = {index_landmark[dataset.index_list[i].rsplit("/", 1)[1]] for i in truth["easy"]}
        assert len(matches) == 1
        assert truth["bbx"][:2].tolist() == [0.0, 0.0]


def test_a_partial_download_keeps_the_images_on_disk(mini_gldv2, tmp_path):
    import shutil

    from delf_core.gldv2.revisited import revisited_ground_truth

    dataset = tmp_path / "gldv2_dataset"
    shutil.copytree(mini_gldv2, dataset)
    full = revisited_ground_truth(str(dataset))
    missing_index = full["imlist"][full["gnd"][0]["easy"][0]]
    (dataset / "index" / f"{missing_index}.jpg").unlink()
    (dataset / "test" / f"{full['qimlist'][1]}.jpg").unlink()
    partial = revisited_ground_truth(str(dataset))
    assert missing_index not in partial["imlist"]
    assert len(partial["imlist"]) == len(full["imlist"]) - 1
    assert full["qimlist"][1] not in partial["qimlist"]
    assert len(partial["gnd"][0]["easy"]) == len(full["gnd"][0]["easy"]) - 1
