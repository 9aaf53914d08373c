"""A downloaded GLDv2 test/index split as a Revisited-format retrieval benchmark (`.pkl`)."""

from __future__ import annotations

import csv
import io
import pickle

from PIL import Image

from delf_core import storage
from delf_core.gldv2 import layout
from delf_core.names import check_name

# The ground truth file of a downloaded split, beside the Revisited ones (gnd_roxford5k.pkl).
GROUND_TRUTH_NAME = "gnd_gldv2.pkl"


def _rows(path: str) -> list[dict[str, str]]:
    fs, fs_path = storage.resolve(path)
    with fs.open(fs_path, "r") as handle:
        return list(csv.DictReader(handle))


def _image_name(image_id: str, source: str) -> str:
    """`a/b/c/<id>`: the image's path inside its split, without `.jpg`.

    Raises:
        ValueError: naming `source` when the id would make a name outside the split.
    """
    return check_name(layout.image_relpath(image_id, extension=""), source)


def _size(path: str) -> tuple[int, int]:
    fs, fs_path = storage.resolve(path)
    with fs.open(fs_path, "rb") as handle, Image.open(io.BytesIO(handle.read())) as image:
        return image.size


def _downloaded(dataset_dir: str, split: str) -> set[str]:
    """Ids of the images of a split on disk, from one listing."""
    fs, root = storage.resolve(storage.join(dataset_dir, split))
    return {path.rsplit("/", 1)[-1][: -len(".jpg")] for path in fs.glob(f"{root}/*/*/*/*.jpg")}


def revisited_ground_truth(dataset_dir: str) -> dict:
    """The test queries that have retrieval ground truth, against the whole index.

    Image names are paths inside their split (`a/b/c/<id>`), so that
    `--images_dir=<dataset_dir>/test` (queries) and `<dataset_dir>/index` find them.
    Every listed match is `easy`; there is no `hard` or `junk`. A query's box is the
    whole image. After a partial download, only the images on disk take part: queries
    not downloaded, or with no downloaded match, are left out.

    Args:
        dataset_dir: The download's output (`test/retrieval_solution_v2.1.csv`,
            `index/index.csv` and the test images).

    Returns:
        The dict of a `gnd_*.pkl`: `qimlist`, `imlist`, `gnd`.

    Raises:
        ValueError: A solution row names an image the index does not have.
    """
    index_csv = storage.join(dataset_dir, layout.INDEX, "index.csv")
    listed = [row["id"] for row in _rows(index_csv)]
    downloaded = {layout.INDEX: _downloaded(dataset_dir, layout.INDEX),
                  layout.TEST: _downloaded(dataset_dir, layout.TEST)}  # fmt: skip
    # A partial download (fewer tars than the split has) keeps what it holds.
    index_ids = [i for i in listed if i in downloaded[layout.INDEX]]
    known = set(listed)
    position = {image_id: i for i, image_id in enumerate(index_ids)}
    solution = storage.join(dataset_dir, layout.TEST, layout.RETRIEVAL_SOLUTION_NAME)
    queries, gnd = [], []
    for row in _rows(solution):
        matches = row["images"].split()
        if not matches or matches == ["None"] or row["id"] not in downloaded[layout.TEST]:
            continue
        unknown = [m for m in matches if m not in known]
        if unknown:
            raise ValueError(f"{solution}: query {row['id']} lists {unknown[0]}, not in index.csv")
        matches = [m for m in matches if m in position]
        if not matches:
            continue
        name = _image_name(row["id"], solution)
        width, height = _size(storage.join(dataset_dir, layout.TEST, f"{name}.jpg"))
        queries.append(name)
        gnd.append(
            {
                "bbx": [0.0, 0.0, float(width), float(height)],
                "easy": sorted(position[m] for m in matches),
                "hard": [],
                "junk": [],
            }
        )
    imlist = [_image_name(i, index_csv) for i in index_ids]
    return {"qimlist": queries, "imlist": imlist, "gnd": gnd}


def write_revisited_ground_truth(dataset_dir: str, path: str) -> dict:
    """Writes `revisited_ground_truth(dataset_dir)` as a pickle at `path`; returns it.

    The pickle holds only lists, dicts, strings and numbers, as the original files do,
    so the original code and `read_dataset_file`'s restricted unpickler both load it.
    """
    ground_truth = revisited_ground_truth(dataset_dir)
    fs, fs_path = storage.resolve(path)
    storage.write_bytes(fs, fs_path, pickle.dumps(ground_truth, protocol=4))
    return ground_truth
