"""GLDv2-size metadata and a file listing that stands in for the images, for bench_scale.py.

`generate(root, fraction)` writes, under `root`, the CSVs the pipeline reads, in the
public files' layouts, at `fraction` of GLDv2's counts: train.csv, train_clean.csv,
index.csv, test.csv and both solution CSVs, plus a submission for each task. Images
per landmark follow a Zipf-like law (a few landmarks with thousands of images, most
with a handful), ids are 16 random hex characters and URLs as long as the real ones.

The images themselves are stood in for by `scalelist://` folders: real folders
(`train/a/b/c/`) each holding a `.listing` file of `<file name> <size>` lines instead
of the files. `ListingFileSystem` is the local filesystem except that a folder's
listing (`ls`, and so `find`, `glob` and `walk`) shows the files named in its
`.listing`, so the planners list 4.1M "images" through their own code (fsspec's glob,
as on gs://) without 4.1M inodes. Everything else (manifests, plans) is written to
disk as usual.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator

import fsspec
import numpy as np
from fsspec.implementations.local import LocalFileSystem

PROTOCOL = "scalelist"
LISTING_NAME = ".listing"
# GLDv2's counts (train.csv rows and landmarks, the clean subset, index and test).
FULL = {
    "train": 4_132_914,
    "landmarks": 203_094,
    "clean_landmarks": 81_313,
    "clean_images": 1_580_470,
    "index": 761_757,
    "test": 117_577,
}
# Shares of the test images with ground truth in the v2.1 solutions (1,129 retrieval
# queries; about 1.6% of test images show a landmark of the recognition task).
RETRIEVAL_QUERY_SHARE = 1129 / 117_577
RECOGNITION_LANDMARK_SHARE = 0.016
ZIPF_EXPONENT = 0.5
URL_PREFIX = "https://upload.wikimedia.org/wikipedia/commons/"
DONE_NAME = "generated.json"


class ListingFileSystem(LocalFileSystem):
    """The local filesystem, where a folder's `.listing` file stands for the files it names."""

    protocol = (PROTOCOL,)

    @classmethod
    def _strip_protocol(cls, path):
        path = os.fspath(path) if not isinstance(path, str) else path
        if path.startswith(f"{PROTOCOL}://"):
            path = path[len(PROTOCOL) + 3 :]
        return super()._strip_protocol(path)

    def ls(self, path, detail=False, **kwargs):
        folder = self._strip_protocol(path)
        if not os.path.isfile(os.path.join(folder, LISTING_NAME)):
            return super().ls(path, detail=detail, **kwargs)
        with os.scandir(folder) as found:
            out = [self.info(entry) for entry in found if entry.name != LISTING_NAME]
        out.extend(_listed(folder))
        return out if detail else [e["name"] for e in out]

    def info(self, path, **kwargs):
        try:
            return super().info(path, **kwargs)
        except FileNotFoundError:
            stripped = self._strip_protocol(path)
            parent, name = stripped.rsplit("/", 1)
            for entry in _listed(parent):
                if entry["name"] == stripped:
                    return entry
            raise


def _listed(folder: str) -> Iterator[dict]:
    listing = os.path.join(folder, LISTING_NAME)
    if not os.path.exists(listing):
        return
    with open(listing) as handle:
        lines = handle.read().split()
    for name, size in zip(lines[::2], lines[1::2], strict=True):
        yield {"name": f"{folder}/{name}", "size": int(size), "type": "file"}


def register() -> None:
    """Makes `scalelist://` URLs resolve to `ListingFileSystem` in this process."""
    fsspec.register_implementation(PROTOCOL, ListingFileSystem, clobber=True)


@dataclasses.dataclass(frozen=True)
class ScaleData:
    """Where `generate` put each input, and the counts it made."""

    root: str
    counts: dict

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def listing_url(self, *parts: str) -> str:
        return f"{PROTOCOL}://{self.path(*parts)}"


def scaled_counts(fraction: float) -> dict[str, int]:
    """GLDv2's counts times `fraction`, each at least 2 (train at least 2 per landmark)."""
    counts = {k: max(2, round(v * fraction)) for k, v in FULL.items()}
    counts["train"] = max(counts["train"], 2 * counts["landmarks"])
    counts["clean_landmarks"] = min(counts["clean_landmarks"], counts["landmarks"])
    counts["clean_images"] = max(counts["clean_images"], 2 * counts["clean_landmarks"])
    return counts


def _hex_ids(rng: np.random.Generator, n: int, taken: set[str] | None = None) -> list[str]:
    """`n` distinct 16-hex ids, none in `taken`."""
    out: list[str] = []
    seen = set(taken or ())
    while len(out) < n:
        values = rng.integers(0, 2**63, size=n - len(out), dtype=np.int64)
        for value in values.tolist():
            text = f"{value:016x}"
            if text not in seen:
                seen.add(text)
                out.append(text)
    return out


def _zipf_counts(total: int, groups: int) -> np.ndarray:
    """`groups` counts of at least 1 summing to `total`, falling off as rank^-0.5."""
    weights = np.arange(1, groups + 1, dtype=np.float64) ** -ZIPF_EXPONENT
    counts = 1 + np.floor((total - groups) * weights / weights.sum()).astype(np.int64)
    counts[: total - int(counts.sum())] += 1
    return counts


def _take_clean(counts: np.ndarray, chosen: np.ndarray, target: int) -> np.ndarray:
    """How many images of each chosen landmark the clean subset keeps: `target` in all."""
    available = counts[chosen]
    keep = np.clip(np.floor(available * target / available.sum()), 1, available).astype(np.int64)
    order = np.argsort(-available, kind="stable")
    i = 0
    while (missing := target - int(keep.sum())) != 0:
        j = order[i % len(order)]
        if missing > 0 and keep[j] < available[j]:
            keep[j] += 1
        elif missing < 0 and keep[j] > 1:
            keep[j] -= 1
        i += 1
    return keep


def _write_lines(path: str, header: str, lines: Iterator[str] | list[str]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(header + "\n")
        for line in lines:
            handle.write(line + "\n")


def _write_listing(root: str, names: list[str], sizes: np.ndarray, nested: bool) -> None:
    """`.listing` files: under `root/a/b/c/` by the ids' first characters, or flat in `root`."""
    os.makedirs(root, exist_ok=True)
    if not nested:
        with open(os.path.join(root, LISTING_NAME), "w") as handle:
            handle.writelines(f"{n} {s}\n" for n, s in zip(names, sizes.tolist(), strict=True))
        return
    groups: dict[str, list[str]] = {}
    for name, size in zip(names, sizes.tolist(), strict=True):
        groups.setdefault(name[:3], []).append(f"{name} {size}\n")
    for prefix, lines in groups.items():
        folder = os.path.join(root, prefix[0], prefix[1], prefix[2])
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, LISTING_NAME), "w") as handle:
            handle.writelines(lines)


def generate(root: str, fraction: float, seed: int = 0) -> ScaleData:
    """Writes the metadata, solutions, submissions and listings at `fraction` of GLDv2.

    Reuses an earlier generation of the same fraction and seed in `root`.

    Returns:
        Where everything is, and the counts.
    """
    counts = scaled_counts(fraction)
    data = ScaleData(root, counts)
    done = data.path(DONE_NAME)
    if os.path.exists(done):
        with open(done) as handle:
            if json.load(handle) == {"fraction": fraction, "seed": seed, "counts": counts}:
                return data
    rng = np.random.default_rng(seed)
    os.makedirs(root, exist_ok=True)
    n_train, n_landmarks = counts["train"], counts["landmarks"]

    # train.csv: ids in random order, landmark ids 0..L-1 in random order.
    train_ids = _hex_ids(rng, n_train)
    per_landmark = _zipf_counts(n_train, n_landmarks)
    landmark_ids = rng.permutation(n_landmarks)
    labels = np.repeat(landmark_ids, per_landmark)
    rng.shuffle(labels)
    suffix = rng.integers(10**5, 10**6, size=n_train).tolist()
    _write_lines(
        data.path("train.csv"),
        "id,url,landmark_id",
        (
            f"{i},{URL_PREFIX}{i[0]}/{i[:2]}/Landmark_{lab}_photograph_{s}_{i[::-1]}.jpg,{lab}"
            for i, lab, s in zip(train_ids, labels.tolist(), suffix, strict=True)
        ),
    )

    # train_clean.csv: a subset of landmarks (larger ones more often), most of their images.
    eligible = np.flatnonzero(per_landmark >= 2)
    weights = per_landmark[eligible] / per_landmark[eligible].sum()
    size = min(counts["clean_landmarks"], len(eligible))
    chosen = np.sort(rng.choice(eligible, size=size, replace=False, p=weights))
    keep = _take_clean(per_landmark, chosen, counts["clean_images"])
    members: dict[int, list[str]] = {}
    wanted = {int(landmark_ids[c]): int(k) for c, k in zip(chosen, keep, strict=True)}
    for image_id, label in zip(train_ids, labels.tolist(), strict=True):
        room = wanted.get(label, 0)
        if room:
            members.setdefault(label, []).append(image_id)
            wanted[label] = room - 1
    _write_lines(
        data.path("train_clean.csv"),
        "landmark_id,images",
        (f"{label},{' '.join(members[label])}" for label in sorted(members)),
    )

    index_ids = _hex_ids(rng, counts["index"], set(train_ids))
    test_ids = _hex_ids(rng, counts["test"], set(train_ids) | set(index_ids))
    _write_lines(data.path("index.csv"), "id", index_ids)
    _write_lines(data.path("test.csv"), "id", test_ids)
    _write_solutions(data, rng, test_ids, index_ids, landmark_ids)

    for split, ids in (("train", train_ids), ("index", index_ids), ("test", test_ids)):
        sizes = rng.integers(40_000, 900_000, size=len(ids))
        _write_listing(data.path("images", split), [f"{i}.jpg" for i in ids], sizes, nested=True)
    features = [f"{i}{ext}" for i in sorted(index_ids) for ext in (".delg_global", ".delg_local")]
    sizes = rng.integers(8_000, 600_000, size=len(features))
    _write_listing(data.path("index_features"), features, sizes, nested=False)
    with open(done, "w") as handle:
        json.dump({"fraction": fraction, "seed": seed, "counts": counts}, handle)
    return data


def _usage(rng: np.random.Generator, n: int) -> list[str]:
    return np.where(rng.random(n) < 1 / 3, "Public", "Private").tolist()


def _write_solutions(
    data: ScaleData,
    rng: np.random.Generator,
    test_ids: list[str],
    index_ids: list[str],
    landmark_ids: np.ndarray,
) -> None:
    """Both tasks' solutions and a full submission for each (100 index ids per test image)."""
    n = len(test_ids)
    index = np.asarray(index_ids)
    queries = rng.random(n) < RETRIEVAL_QUERY_SHARE
    queries[0] = True  # every size scores at least one query
    usage = _usage(rng, n)
    rows = []
    for i, test_id in enumerate(test_ids):
        if queries[i]:
            truth = " ".join(index[rng.integers(0, len(index), size=rng.integers(1, 60))])
            rows.append(f"{test_id},{truth},{usage[i]}")
        else:
            rows.append(f"{test_id},None,Ignored")
    _write_lines(data.path("retrieval_solution_v2.1.csv"), "id,images,Usage", rows)
    picks = rng.integers(0, len(index), size=(n, 100))
    _write_lines(
        data.path("retrieval_submission.csv"),
        "id,images",
        (f"{t},{' '.join(index[p])}" for t, p in zip(test_ids, picks, strict=True)),
    )
    landmark = rng.random(n) < RECOGNITION_LANDMARK_SHARE
    truth = landmark_ids[rng.integers(0, len(landmark_ids), size=n)].tolist()
    guess = landmark_ids[rng.integers(0, len(landmark_ids), size=n)].tolist()
    _write_lines(
        data.path("recognition_solution_v2.1.csv"),
        "id,landmarks,Usage",
        (f"{t},{truth[i] if landmark[i] else ''},{usage[i]}" for i, t in enumerate(test_ids)),
    )
    scores = rng.random(n).tolist()
    _write_lines(
        data.path("recognition_submission.csv"),
        "id,landmarks",
        (f"{t},{guess[i]} {scores[i]:.4f}" for i, t in enumerate(test_ids)),
    )
