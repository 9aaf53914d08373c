"""How the planning paths grow up to GLDv2's size: time, peak memory and manifest size.

Generates GLDv2-size metadata at each size (benchmarks/scale_data.py), then runs each
path in a fresh process (so peaks do not mix) and prints, per path and size: wall and
CPU seconds, peak RSS, the largest file the path wrote, the growth exponent from the
previous size (log(t2/t1)/log(n2/n1); 1 is linear) and the ratio of wall time to a
bound measured in the same process: pandas.read_csv of the CSVs the path reads.

    .venv/bin/python benchmarks/bench_scale.py                 # 1/16, 1/4, 1
    .venv/bin/python benchmarks/bench_scale.py --quick         # 1/64, 1/16
    .venv/bin/python benchmarks/bench_scale.py --sizes 1/4096 --paths build,extract
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from fractions import Fraction

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import scale_data  # noqa: E402  (beside this file)

PATHS = ("download", "build", "train_classes", "extract", "scoring")
TARGET_SECONDS = 120
TARGET_RSS_MB = 4096
TARGET_FILE_MB = 20


def _largest_file(root: str) -> int:
    """Bytes of the largest file under `root`, the stand-in `.listing` files left out."""
    largest = 0
    for folder, _, files in os.walk(root):
        for name in files:
            if name != scale_data.LISTING_NAME:
                largest = max(largest, os.path.getsize(os.path.join(folder, name)))
    return largest


class _Clock:
    """Wall and CPU time from its making; CPU time is what load from others leaves alone."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def elapsed(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


def _read_csvs(*paths: str) -> float:
    """The bound: seconds pandas takes to parse the same CSV bytes (after the path's peak)."""
    import pandas as pd

    start = time.perf_counter()
    for path in paths:
        pd.read_csv(path, dtype=str, na_filter=False)
    return time.perf_counter() - start


# --- The paths, each run in its own process ----------------------------------------


def path_download(data: scale_data.ScaleData, work: str) -> dict:
    """Planning the tars, checking the CSVs, a record per tar, the summaries, a rerun's skips."""
    from delf_core.download.config import DownloadConfig
    from delf_core.download.csv_check import check_csv
    from delf_core.download.manifest import SplitManifest
    from delf_core.download.step import _split_dir, plan_jobs, write_manifests
    from delf_core.gldv2 import layout

    fraction = data.counts["train"] / scale_data.FULL["train"]
    tars = {s: max(1, math.ceil(n * fraction)) for s, n in layout.MAX_TARS.items()}
    config = DownloadConfig(
        num_train=tars["train"], num_index=tars["index"], num_test=tars["test"], output_dir=work
    )
    csvs = [
        ("train.csv", layout.TRAIN_CSV_COLUMNS),
        ("train_clean.csv", layout.TRAIN_CLEAN_CSV_COLUMNS),
        ("index.csv", layout.INDEX_CSV_COLUMNS),
        ("test.csv", layout.TEST_CSV_COLUMNS),
        (layout.RETRIEVAL_SOLUTION_NAME, layout.RETRIEVAL_SOLUTION_CSV_COLUMNS),
        (layout.RECOGNITION_SOLUTION_NAME, layout.RECOGNITION_SOLUTION_CSV_COLUMNS),
    ]
    clock = _Clock()
    jobs = plan_jobs(config)
    for name, columns in csvs:
        with open(data.path(name), "rb") as handle:
            check_csv(handle, name, columns)
    for job in jobs:
        fs, split_dir = _split_dir(config, job.split)
        images = data.counts[job.split] // tars[job.split]
        entry = {"size": images * 400_000, "md5": "0" * 32, "images": images}
        SplitManifest(fs, split_dir, job.split).record("tars", job.name, entry, config.base_url)
    write_manifests(config)
    skipped = 0
    for job in jobs:
        fs, split_dir = _split_dir(config, job.split)
        skipped += SplitManifest(fs, split_dir, job.split).tar_entry(job.name) is not None
    seconds, cpu = clock.elapsed()
    assert skipped == len(jobs), (skipped, len(jobs))
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "bound": lambda: _read_csvs(*(data.path(n) for n, _ in csvs)),
        "largest_file": _largest_file(work),
        "items": len(jobs),
    }


def _build_config(data: scale_data.ScaleData, work: str):
    from delf_core.build_image_dataset import BuildConfig

    return BuildConfig(
        train_directory=data.listing_url("images", "train", "*", "*", "*"),
        test_directory=data.listing_url("images", "test", "*", "*", "*"),
        output_directory=work,
        train_csv_path=data.path("train.csv"),
        train_clean_csv_path=data.path("train_clean.csv"),
        test_csv_path=data.path("test.csv"),
        generate_train_validation_splits=True,
    )


def path_build(data: scale_data.ScaleData, work: str) -> dict:
    """Planning, the shard plans, the report and manifest, then a rerun's check.

    The rerun's check is the one `delf build_image_dataset` and the flow make:
    `build_fingerprint` and `up_to_date_manifest`.
    """
    from delf_core.build_image_dataset import build_fingerprint, plan_build, up_to_date_manifest
    from delf_core.build_image_dataset.report import finalize, write_context
    from delf_core.build_image_dataset.write import ShardResult

    config = _build_config(data, work)
    clock = _Clock()
    plan = plan_build(config)
    plan.write()
    context = write_context(plan)
    largest_plan = _largest_file(work)
    # The job's part (decoding and writing records) is not planning: empty shards.
    results = []
    for shard in plan.shards:
        open(os.path.join(work, shard.name), "wb").close()
        results.append(ShardResult(shard.prefix, shard.index, shard.name, len(shard.images), ()))
    manifest = finalize(context, results, work)
    first, first_cpu = clock.elapsed()
    del plan, results  # a rerun is another process: the first plan is not held beside it
    gc.collect()
    rerun_clock = _Clock()
    current = up_to_date_manifest(config, build_fingerprint(config))
    rerun, rerun_cpu = rerun_clock.elapsed()
    assert current is not None, "a rerun of the same inputs did not find its manifest"
    splits = manifest["splits"]
    clean = data.counts["clean_images"]
    assert splits["train"]["planned"] + splits["validation"]["planned"] == clean, splits
    assert manifest["num_classes"] == data.counts["clean_landmarks"], manifest["num_classes"]
    return {
        "seconds": first + rerun,
        "cpu_seconds": first_cpu + rerun_cpu,
        "first_run_seconds": first,
        "rerun_check_seconds": rerun,
        "bound": lambda: _read_csvs(data.path("train_clean.csv"), data.path("test.csv")),
        "largest_file": max(largest_plan, _largest_file(work)),
        "items": clean,
    }


def path_train_classes(data: scale_data.ScaleData, work: str) -> dict:
    """The training input's class count and split sizes, from the build's manifest."""
    import glob

    from delf_core.training.config import FROM_MANIFEST, TrainConfig
    from delf_core.training.data_checks import resolve_num_classes
    from delf_core.training.validation import split_size

    build = os.path.join(work, "..", "build")
    config = TrainConfig(
        train_file_pattern=os.path.join(build, "train-*"), dataset_version=FROM_MANIFEST
    )
    files = sorted(glob.glob(config.train_file_pattern))
    clock = _Clock()
    classes = resolve_num_classes(config)
    records = split_size(files)
    seconds, cpu = clock.elapsed()
    assert classes == data.counts["clean_landmarks"], classes
    assert records is not None and records > 0, records
    manifest = os.path.join(build, "build_image_dataset_manifest.json")

    def bound() -> float:
        start = time.perf_counter()
        with open(manifest, "rb") as handle:
            json.loads(handle.read())
        return time.perf_counter() - start

    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "bound": bound,
        "largest_file": 0,
        "items": classes,
    }


def path_extract(data: scale_data.ScaleData, work: str) -> dict:
    """The index's extraction planning, its record of every file, and a rerun's check."""
    from delf_core.features.extract_job import (
        ExtractJobConfig,
        finish,
        items_from_glob,
        plan_extraction,
    )
    from delf_core.features.presets import DELG_PRESET, load_preset
    from delf_core.features.record import (
        features_fingerprint,
        features_source,
        features_stand,
        record_features,
    )

    # The feature files are a listing (all there: the state of a rerun); what the path
    # writes goes beside it into a fresh copy of the folder.
    features = os.path.join(work, "index_features")
    os.makedirs(features)
    shutil.copy(
        data.path("index_features", scale_data.LISTING_NAME),
        os.path.join(features, scale_data.LISTING_NAME),
    )
    output_dir = f"{scale_data.PROTOCOL}://{features}"
    config = load_preset(DELG_PRESET, os.path.join(work, "model"))
    source = features_source({"model": "bench"}, config, delg_form=True)
    images = data.listing_url("images", "index", "*", "*", "*", "*.jpg")
    job = ExtractJobConfig(
        delg_form=True, config_path="delg.pbtxt", output_dir=output_dir, images_glob=images
    )
    clock = _Clock()
    items = items_from_glob(images)
    plan = plan_extraction(items, output_dir, True, config)
    record_features(items, output_dir, source, set(), rewritten=True)
    finish(job, config, {"extracted": 0, "skipped": plan.done}, [], "bench")
    first, first_cpu = clock.elapsed()
    assert plan.done == data.counts["index"] and not plan.todo, (plan.done, len(plan.todo))
    count = len(items)
    del items, plan
    gc.collect()
    rerun_clock = _Clock()
    stands = features_stand(items_from_glob(images), output_dir, config, True, source)
    fingerprint = features_fingerprint(output_dir)
    rerun, rerun_cpu = rerun_clock.elapsed()
    assert stands and fingerprint, "a rerun found the recorded features stale"
    return {
        "seconds": first + rerun,
        "cpu_seconds": first_cpu + rerun_cpu,
        "first_run_seconds": first,
        "rerun_check_seconds": rerun,
        "bound": lambda: _read_csvs(data.path("index.csv")),
        "largest_file": _largest_file(features),
        "items": count,
    }


def path_scoring(data: scale_data.ScaleData, work: str) -> dict:
    """`delf compute_retrieval_metrics` and `compute_recognition_metrics` on full submissions."""
    from delf_cli import compute_recognition_metrics, compute_retrieval_metrics

    tasks = (
        (compute_retrieval_metrics, "retrieval_solution_v2.1.csv", "retrieval_submission.csv"),
        (
            compute_recognition_metrics,
            "recognition_solution_v2.1.csv",
            "recognition_submission.csv",
        ),
    )
    clock = _Clock()
    for module, solution, submission in tasks:
        args = argparse.Namespace(
            solution_path=data.path(solution), predictions_path=data.path(submission)
        )
        with contextlib.redirect_stdout(io.StringIO()):
            code = module.run(args)
        assert code == 0, f"{module.__name__} exited {code}"
    seconds, cpu = clock.elapsed()
    files = [data.path(name) for _, *names in tasks for name in names]
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "bound": lambda: _read_csvs(*files),
        "largest_file": 0,
        "items": data.counts["test"],
    }


def _peak_rss_mb() -> float:
    """This process's peak RSS since its exec (VmHWM; ru_maxrss would carry the parent's)."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(path: str, data_root: str, fraction: float, work: str) -> None:
    """Runs one path in this (fresh) process and prints its figures as one JSON line."""
    scale_data.register()
    data = scale_data.generate(data_root, fraction)
    os.makedirs(work, exist_ok=True)
    result = globals()[f"path_{path}"](data, work)
    # The path's own peak, before the bound's parsing adds its own.
    result["peak_rss_mb"] = _peak_rss_mb()
    result["bound_seconds"] = result.pop("bound")()
    print(json.dumps(result))


# --- The driver --------------------------------------------------------------------


def run_child(path: str, data_root: str, fraction: float, work: str) -> dict:
    """One path in a fresh process: its figures, its own peak RSS among them."""
    command = [sys.executable, __file__, "--child", path, "--data", data_root,
               "--fraction", repr(fraction), "--workdir", work]  # fmt: skip
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, env=env)
    out = process.stdout.read()
    _, status, _ = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{path} at {fraction}: exit {process.returncode}")
    result = json.loads(out.decode().strip().splitlines()[-1])
    return result


def _parse_sizes(text: str) -> list[float]:
    return [float(Fraction(part)) for part in text.split(",") if part.strip()]


def _label(fraction: float) -> str:
    value = Fraction(fraction).limit_denominator(1 << 16)
    return "1" if value == 1 else f"{value.numerator}/{value.denominator}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1/16,1/4,1", help="fractions of GLDv2, e.g. 1/16,1")
    parser.add_argument("--quick", action="store_true", help="--sizes 1/64,1/16")
    parser.add_argument("--paths", default=",".join(PATHS), help="some of " + ",".join(PATHS))
    parser.add_argument("--workdir", default=None, help="where data and outputs go (kept)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--fraction", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "generate":
        scale_data.generate(args.data, args.fraction)
        return 0
    if args.child:
        child(args.child, args.data, args.fraction, args.workdir)
        return 0
    sizes = _parse_sizes("1/64,1/16" if args.quick else args.sizes)
    paths = [p for p in args.paths.split(",") if p]
    unknown = sorted(set(paths) - set(PATHS))
    if unknown:
        parser.error(f"--paths: unknown {unknown}; choose from {','.join(PATHS)}")
    root = args.workdir or os.path.join(tempfile.gettempdir(), "delf_bench_scale")
    load = os.getloadavg()[0]
    print(f"workdir {root}; load average at start {load:.2f} on {os.cpu_count()} cores")
    rows: dict[str, list[tuple[float, dict]]] = {p: [] for p in paths}
    for fraction in sizes:
        data_root = os.path.join(root, f"data_{_label(fraction).replace('/', '_')}")
        start = time.perf_counter()
        # In a process of its own, so that this one stays small.
        command = [sys.executable, __file__, "--child", "generate", "--data", data_root,
                   "--fraction", repr(fraction)]  # fmt: skip
        subprocess.run(command, check=True)
        data = scale_data.ScaleData(data_root, scale_data.scaled_counts(fraction))
        seconds = time.perf_counter() - start
        print(f"size {_label(fraction)}: {data.counts} (generated in {seconds:.1f} s, not counted)")
        runs = os.path.join(root, f"runs_{_label(fraction).replace('/', '_')}")
        shutil.rmtree(runs, ignore_errors=True)
        for path in paths:
            work = os.path.join(runs, path)
            result = run_child(path, data_root, fraction, work)
            rows[path].append((fraction, result))
            print(f"  {path}: {json.dumps(result)}", flush=True)
    _print_table(rows)
    print(f"load average at end {os.getloadavg()[0]:.2f}; children's CPU s "
          f"{resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime:.1f}")  # fmt: skip
    return 0


def _exponent(previous: tuple[float, dict] | None, fraction: float, r: dict, key: str) -> str:
    """log(t2/t1)/log(n2/n1) from the previous size: 1 grows linearly, 2 quadratically."""
    if previous is None or r[key] <= 0 or previous[1][key] <= 0:
        return ""
    return f"{math.log(r[key] / previous[1][key]) / math.log(fraction / previous[0]):.2f}"


def _print_table(rows: dict[str, list[tuple[float, dict]]]) -> None:
    print(
        f"{'path':<14}{'size':>7}{'items':>9}{'wall s':>9}{'cpu s':>8}{'exp wall':>9}"
        f"{'exp cpu':>8}{'peak MB':>9}{'file MB':>9}{'bound s':>9}{'ratio':>7}  targets"
    )
    for path, points in rows.items():
        previous = None
        for fraction, r in points:
            ok = (
                r["seconds"] < TARGET_SECONDS
                and r["peak_rss_mb"] < TARGET_RSS_MB
                and r["largest_file"] < TARGET_FILE_MB * 2**20
            )
            ratio = r["seconds"] / r["bound_seconds"] if r["bound_seconds"] > 0 else float("nan")
            print(
                f"{path:<14}{_label(fraction):>7}{r['items']:>9}{r['seconds']:>9.2f}"
                f"{r['cpu_seconds']:>8.2f}{_exponent(previous, fraction, r, 'seconds'):>9}"
                f"{_exponent(previous, fraction, r, 'cpu_seconds'):>8}{r['peak_rss_mb']:>9.0f}"
                f"{r['largest_file'] / 2**20:>9.2f}{r['bound_seconds']:>9.2f}{ratio:>7.1f}"
                f"  {'met' if ok else 'MISSED'}"
            )
            previous = (fraction, r)


if __name__ == "__main__":
    sys.exit(main())
