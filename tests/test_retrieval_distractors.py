"""`delf perform_retrieval` in bounded memory, and with Revisited 1M-style distractors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from delf_cli.main import main
from delf_core.features import datum_io
from delf_core.retrieval.metrics import (
    PR_RANKS,
    compute_metrics,
    format_metrics,
    parse_easy_medium_hard,
)

DIM = 8


def _write(folder, name, vector):
    path = folder / f"{name}.delg_global"
    path.parent.mkdir(parents=True, exist_ok=True)
    datum_io.write_to_file(np.asarray(vector, np.float32), str(path))


@pytest.fixture(scope="module")
def tied_benchmark(tmp_path_factory):
    """6 queries x 60 index images of small integers (many tied similarities), with
    easy, hard and junk images, and queries without positives under a protocol."""
    root = tmp_path_factory.mktemp("tied")
    rng = np.random.default_rng(3)
    queries = rng.integers(-2, 3, (6, DIM)).astype(np.float32)
    index = rng.integers(-2, 3, (60, DIM)).astype(np.float32)
    gnd = []
    for q in range(6):
        chosen = rng.permutation(60)
        easy, hard = chosen[: q % 4], chosen[4 : 4 + (q * 7) % 5]
        junk = chosen[10 : 10 + q]
        gnd.append({"bbx": [0, 0, 1, 1], "easy": easy.tolist(), "hard": hard.tolist(),
                    "junk": junk.tolist()})  # fmt: skip
    for q, vector in enumerate(queries):
        _write(root / "query", f"q{q}", vector)
    for i, vector in enumerate(index):
        _write(root / "index", f"i{i}", vector)
    dataset = root / "gnd.pkl"
    names = {"qimlist": [f"q{q}" for q in range(6)], "imlist": [f"i{i}" for i in range(60)]}
    dataset.write_bytes(pickle.dumps({**names, "gnd": gnd}))
    return root, dataset, queries, index, gnd


def _argv(dataset, root, out, *more):
    return [
        "perform_retrieval", f"--dataset_file_path={dataset}",
        f"--query_features_dir={root / 'query'}", f"--index_features_dir={root / 'index'}",
        f"--output_dir={out}", *more,
    ]  # fmt: skip


def test_a_tiny_memory_bound_writes_the_metrics_of_the_full_ranking(tied_benchmark, tmp_path):
    root, dataset, queries, index, gnd = tied_benchmark
    # The whole [queries x index] ranking, stable sort: what the metrics mean.
    ranked = np.argsort(-(queries @ index.T), axis=1, kind="stable")
    _, medium, hard = parse_easy_medium_hard(gnd)
    expected = {}
    for name, truth in (("medium", medium), ("hard", hard)):
        scores = compute_metrics(ranked, truth, PR_RANKS)
        expected[name] = scores
    text = format_metrics(
        {n: s.mean_average_precision for n, s in expected.items()},
        {n: s.mean_precisions for n, s in expected.items()},
        {n: s.mean_recalls for n, s in expected.items()},
        PR_RANKS,
    )
    for memory in ("3000", "20000", "2147483648"):
        out = tmp_path / memory
        assert main(_argv(dataset, root, out, f"--search_memory_bytes={memory}")) == 0
        assert (out / "metrics.txt").read_text() == text, f"--search_memory_bytes={memory}"


@pytest.fixture()
def one_query(tmp_path):
    """One query; two positives at global ranks 0 and 3 of ten index images."""
    query = np.zeros(DIM, np.float32)
    query[0] = 1
    similarities = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.15, 0.1]
    for i, similarity in enumerate(similarities):
        vector = np.zeros(DIM, np.float32)
        vector[0], vector[1 + i % (DIM - 1)] = similarity, np.sqrt(1 - similarity**2)
        _write(tmp_path / "index", f"i{i}", vector)
    _write(tmp_path / "query", "q0", query)
    gnd = [{"bbx": [0, 0, 1, 1], "easy": [0, 3], "hard": [], "junk": []}]
    dataset = tmp_path / "gnd.pkl"
    names = {"qimlist": ["q0"], "imlist": [f"i{i}" for i in range(10)]}
    dataset.write_bytes(pickle.dumps({**names, "gnd": gnd}))
    return tmp_path, dataset


def _distractor(folder, name, similarity):
    vector = np.zeros(DIM, np.float32)
    vector[0], vector[-1] = similarity, np.sqrt(1 - similarity**2)
    _write(folder, name, vector)


def _medium_map(path) -> str:
    return path.read_text().split("medium\n")[1].splitlines()[0].strip()


def test_a_closer_distractor_pushes_the_positives_down_one_rank(one_query, caplog):
    caplog.set_level("INFO")
    root, dataset = one_query
    assert main(_argv(dataset, root, root / "plain")) == 0
    # Positives at ranks 0 and 3: AP = (1 + 1 + 1/3 + 2/4) / 4.
    assert _medium_map(root / "plain" / "metrics.txt") == "mAP=70.83"
    # One distractor above both, in a Revisited 1M-style list of names with extensions.
    _distractor(root / "r1m" / "jpg" / "aa", "d0", 0.95)
    _distractor(root / "r1m" / "jpg" / "ab", "d1", 0.05)
    listing = root / "revisitop1m.txt"
    listing.write_text("jpg/aa/d0.jpg\n\njpg/ab/d1.jpg\n")
    flags = [f"--distractor_features_dir={root / 'r1m'}", f"--distractor_list={listing}"]
    assert main(_argv(dataset, root, root / "r1m_out", *flags)) == 0
    # Ranks 1 and 4: AP = (0 + 1/2 + 1/4 + 2/5) / 4 = 28.75%; P@1 0, P@5 = 2/5.
    text = (root / "r1m_out" / "metrics.txt").read_text()
    assert _medium_map(root / "r1m_out" / "metrics.txt") == "mAP=28.75"
    assert "mP@k[ 1  5 10] [ 0. 40. 40.]" in text
    # The search says how far it is: 1 query x (10 index + 2 distractor) similarities.
    assert "global_search: 12/12 similarities" in caplog.text


def test_distractors_less_similar_than_every_index_image_change_nothing(one_query):
    root, dataset = one_query
    assert main(_argv(dataset, root, root / "plain")) == 0
    # Two folders, every .delg_global under each (subfolders too), in folder order.
    for number in range(6):
        _distractor(root / f"far{number % 2}" / "sub", f"d{number}", 0.01 * number)
    folders = f"--distractor_features_dir={root / 'far0'},{root / 'far1'}"
    assert main(_argv(dataset, root, root / "far_out", folders, "--search_memory_bytes=4000")) == 0
    plain = (root / "plain" / "metrics.txt").read_bytes()
    assert (root / "far_out" / "metrics.txt").read_bytes() == plain


@pytest.mark.parametrize(
    "listed, expected",
    [
        ("../../etc/passwd\n", "has a '..' part"),
        ("/abs/olute.jpg\n", "is an absolute path"),
        ("gs://bucket/x.jpg\n", "holds a ':'"),
    ],
)
def test_hostile_distractor_names_are_refused_in_one_line(one_query, caplog, listed, expected):
    root, dataset = one_query
    listing = root / "list.txt"
    listing.write_text(listed)
    flags = [f"--distractor_features_dir={root / 'index'}", f"--distractor_list={listing}"]
    assert main(_argv(dataset, root, root / "out", *flags)) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and expected in errors[0] and str(listing) in errors[0]
    assert "\n" not in errors[0] and not (root / "out").exists()


def test_a_missing_or_damaged_distractor_file_is_a_one_line_error_naming_it(one_query, caplog):
    root, dataset = one_query
    _distractor(root / "r1m", "d0", 0.5)
    listing = root / "list.txt"
    listing.write_text("d0\nd1\n")
    flags = [f"--distractor_features_dir={root / 'r1m'}", f"--distractor_list={listing}"]
    assert main(_argv(dataset, root, root / "out", *flags)) == 1
    assert "d1.delg_global" in caplog.text
    (root / "r1m" / "d1.delg_global").write_bytes(b"\x00not a datum proto\xff" * 3)
    caplog.clear()
    assert main(_argv(dataset, root, root / "out", *flags)) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "d1.delg_global" in errors[0] and "\n" not in errors[0]
    assert not (root / "out").exists()
