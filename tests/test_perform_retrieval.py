"""Global search, re-ranking by geometric verification, and `delf perform_retrieval`."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from delf_cli.main import main
from delf_core.features import datum_io, feature_io
from delf_core.features.feature_io import LocalFeatures
from delf_core.retrieval.rerank import RerankConfig, count_inliers, rerank_by_geometric_verification

DIM = 32


def _unit(rng, n, dim=DIM):
    x = rng.normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _local(locations, descriptors) -> LocalFeatures:
    n = len(locations)
    return LocalFeatures(
        np.asarray(locations, np.float32), np.ones(n, np.float32),
        np.asarray(descriptors, np.float32), np.full(n, 200.0, np.float32),
        np.zeros(n, np.float32),
    )  # fmt: skip


def _scene(seed: int = 0):
    """A query, the same building seen under an affine map, and two other buildings."""
    rng = np.random.default_rng(seed)
    locations = rng.uniform(0, 500, (200, 2))
    descriptors = _unit(rng, 200)
    query = _local(locations, descriptors)
    affine = np.array([[0.9, 0.1], [-0.1, 0.8]])
    seen = locations @ affine.T + [30, -20]
    noisy = descriptors + 0.05 * _unit(rng, 200)
    same_building = _local(seen, noisy / np.linalg.norm(noisy, axis=1, keepdims=True))
    # Other buildings share some similar-looking descriptors, at unrelated places.
    others = []
    for _ in range(2):
        mixed = _unit(rng, 200)
        mixed[:60] = descriptors[rng.permutation(200)[:60]] + 0.05 * _unit(rng, 60)
        others.append(_local(rng.uniform(0, 500, (200, 2)), mixed))
    return query, [others[0], same_building, others[1]]


def test_inliers_separate_the_same_building_from_others():
    query, index = _scene()
    config = RerankConfig()
    same = count_inliers(query, index[1], config)
    assert same >= 190
    assert count_inliers(query, index[0], config) < 20
    assert count_inliers(query, _local(np.zeros((0, 2)), np.zeros((0, DIM))), config) == 0


def test_geometric_verification_promotes_the_true_match_and_skips_junk():
    query, index = _scene()
    # Global similarity ranks the true match (id 1) last.
    top_ids, top_scores = np.array([[0, 2, 1]]), np.array([[0.9, 0.7, 0.5]], np.float32)
    reranked = rerank_by_geometric_verification(
        top_ids,
        top_scores,
        {"medium": [np.array([], np.int64)], "hard": [np.array([1])]},
        [query],
        lambda i: index[i],
        RerankConfig(num_workers=1),
    )
    assert reranked["medium"][0][0] == 1
    # A junk image is not verified: with 0 inliers and the lowest similarity, it is last.
    assert reranked["hard"][0][-1] == 1


def test_parallel_reranking_equals_one_process():
    rng = np.random.default_rng(5)
    scenes = [_scene(seed) for seed in range(4)]
    queries = [scene[0] for scene in scenes]
    index = [features for scene in scenes for features in scene[1]]
    similarities = rng.uniform(size=(4, len(index))).astype(np.float32)
    ranks = np.argsort(-similarities, axis=1, kind="stable")
    similarities = np.take_along_axis(similarities, ranks, axis=1)
    junk = {"medium": [np.array([], np.int64)] * 4}
    loads = []

    def load(i):
        loads.append(i)
        return index[i]

    serial = rerank_by_geometric_verification(
        ranks, similarities, junk, queries, load, RerankConfig(num_to_rerank=5, num_workers=1)
    )
    assert sorted(loads) == sorted(set(loads)), "each index image is read once"
    verified = []
    parallel = rerank_by_geometric_verification(
        ranks,
        similarities,
        junk,
        queries,
        load,
        RerankConfig(num_to_rerank=5, num_workers=2),
        on_query=lambda done, total: verified.append((done, total)),
    )
    np.testing.assert_array_equal(serial["medium"], parallel["medium"])
    # Progress is told as each query's verification comes back, from none to all.
    assert verified == [(done, 4) for done in range(5)]


@pytest.fixture()
def benchmark_files(tmp_path):
    """Two queries against four index images, with features where GV must help."""
    rng = np.random.default_rng(1)
    query_dir, index_dir = tmp_path / "query", tmp_path / "index"
    query_dir.mkdir(), index_dir.mkdir()
    gnd = []
    for q in range(2):
        query, index = _scene(q)
        names = [f"q{q}_other0", f"q{q}_match", f"q{q}_other1"]
        feature_io.write_to_file(str(query_dir / f"q{q}.delg_local"), query.locations,
                                 query.scales, query.descriptors, query.attention)  # fmt: skip
        base = _unit(rng, 1, 16)[0]
        datum_io.write_to_file(base, str(query_dir / f"q{q}.delg_global"))
        for name, features, closeness in zip(names, index, (0.2, 1.5, 0.3), strict=True):
            feature_io.write_to_file(str(index_dir / f"{name}.delg_local"), features.locations,
                                     features.scales, features.descriptors,
                                     features.attention)  # fmt: skip
            # The true match is globally the least similar of the three.
            noisy = base + closeness * _unit(rng, 1, 16)[0]
            datum_io.write_to_file(
                noisy / np.linalg.norm(noisy), str(index_dir / f"{name}.delg_global")
            )
        gnd.append({"bbx": [0, 0, 500, 500], "easy": [3 * q + 1], "hard": [], "junk": []})
    imlist = [f"q{q}_{n}" for q in range(2) for n in ("other0", "match", "other1")]
    # Distractors, so that the index has the 10 images precision@10 needs.
    for d in range(4):
        name = f"distractor{d}"
        other = _scene(10 + d)[1][0]
        feature_io.write_to_file(str(index_dir / f"{name}.delg_local"), other.locations,
                                 other.scales, other.descriptors, other.attention)  # fmt: skip
        datum_io.write_to_file(_unit(rng, 1, 16)[0], str(index_dir / f"{name}.delg_global"))
        imlist.append(name)
    dataset = tmp_path / "gnd_test.pkl"
    dataset.write_bytes(pickle.dumps({"qimlist": ["q0", "q1"], "imlist": imlist, "gnd": gnd}))
    return dataset, query_dir, index_dir


def test_perform_retrieval_writes_metrics_and_gv_improves_them(benchmark_files, tmp_path, capsys):
    from delf_core.retrieval.metrics import read_metrics_file

    dataset, query_dir, index_dir = benchmark_files
    out = tmp_path / "retrieval"
    argv = [
        "perform_retrieval", f"--dataset_file_path={dataset}",
        f"--query_features_dir={query_dir}", f"--index_features_dir={index_dir}",
        f"--output_dir={out}",
    ]  # fmt: skip
    assert main(argv) == 0
    before = read_metrics_file(str(out / "metrics.txt")).mean_average_precision
    assert set(before) == {"medium", "hard"}
    assert before["medium"] < 1.0
    assert main([*argv, "--use_geometric_verification", "--num_workers=2"]) == 0
    after = read_metrics_file(str(out / "metrics.txt")).mean_average_precision
    assert set(after) == {"medium", "hard", "medium_after_gv", "hard_after_gv"}
    assert after["medium_after_gv"] == pytest.approx(1.0)
    assert "medium_after_gv: mAP=100.00" in capsys.readouterr().out


def test_missing_features_are_a_one_line_error(benchmark_files, tmp_path, caplog):
    dataset, query_dir, _ = benchmark_files
    code = main([
        "perform_retrieval", f"--dataset_file_path={dataset}",
        f"--query_features_dir={query_dir}", f"--index_features_dir={tmp_path / 'none'}",
        f"--output_dir={tmp_path / 'out'}",
    ])  # fmt: skip
    assert code == 1
    assert "q0_other0.delg_global" in caplog.text
    assert not (tmp_path / "out").exists()


def test_a_rerun_keeps_current_metrics_and_new_features_are_ranked_again(
    benchmark_files, tmp_path, capsys
):
    from delf_core.features.extract import ImageItem
    from delf_core.features.record import record_features
    from delf_core.retrieval.current import MANIFEST_NAME

    dataset, query_dir, index_dir = benchmark_files
    out = tmp_path / "retrieval"
    flags = {"dataset_file_path": dataset, "query_features_dir": query_dir,
             "index_features_dir": index_dir, "output_dir": out}  # fmt: skip
    argv = ["perform_retrieval", *(f"--{name}={value}" for name, value in flags.items())]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert "Wrote" in first
    written = (out / "metrics.txt").stat().st_mtime_ns
    # How many processes re-rank does not change the ranking.
    assert main([*argv, "--num_workers=1"]) == 0
    again = capsys.readouterr().out
    assert f"{out / 'metrics.txt'} is current" in again and "Wrote" not in again
    assert again.splitlines()[:6] == first.splitlines()[:6]  # the same metrics, printed
    assert (out / "metrics.txt").stat().st_mtime_ns == written

    # The index is extracted again (another model): its folder's record changes.
    items = [ImageItem(p.stem, str(p)) for p in index_dir.glob("*.delg_global")]
    record_features(items, str(index_dir), "another model", failed=set(), rewritten=True)
    assert main(argv) == 0
    assert "Wrote" in capsys.readouterr().out
    # A half-written manifest vouches for nothing.
    (out / MANIFEST_NAME).write_text('{"computed_from": {"fla')
    assert main(argv) == 0
    assert "Wrote" in capsys.readouterr().out
    assert main(argv) == 0
    assert "is current" in capsys.readouterr().out


def test_geometric_verification_reads_and_reranks_distractors(benchmark_files, tmp_path, caplog):
    import shutil

    from delf_core.retrieval.metrics import read_metrics_file

    dataset, query_dir, index_dir = benchmark_files
    # A distractor of q0's building: globally closer than q0's match, as many inliers.
    distractors = tmp_path / "r1m" / "dup"
    distractors.mkdir(parents=True)
    shutil.copy(index_dir / "q0_match.delg_local", distractors / "copy.delg_local")
    shutil.copy(index_dir / "q0_other0.delg_global", distractors / "copy.delg_global")
    argv = [
        "perform_retrieval", f"--dataset_file_path={dataset}",
        f"--query_features_dir={query_dir}", f"--index_features_dir={index_dir}",
        f"--output_dir={tmp_path / 'out'}", f"--distractor_features_dir={tmp_path / 'r1m'}",
        "--use_geometric_verification", "--num_workers=1",
    ]  # fmt: skip
    assert main(argv) == 0
    after = read_metrics_file(str(tmp_path / "out" / "metrics.txt")).mean_average_precision
    # q0's match now second, after the distractor (AP 1/4); q1's first: (0.25 + 1) / 2.
    assert after["medium_after_gv"] == pytest.approx(0.625)
    (distractors / "copy.delg_local").unlink()
    assert main([*argv, f"--output_dir={tmp_path / 'out2'}"]) == 1
    assert "copy.delg_local" in caplog.text
    assert not (tmp_path / "out2").exists()
