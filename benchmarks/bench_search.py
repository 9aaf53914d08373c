"""Benchmark of bounded-memory global search against a plain float32 GEMM of the same shape.

Each size runs in a fresh subprocess, so that its peak memory is its own: the search
(`top_k_by_similarity`) over an index that is either generated block by block
(`generated`) or memory-mapped from a temporary file (`memmap`), then the GEMM bound on
in-memory arrays of the search's own block shapes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

from delf_core.retrieval.top_k import DEFAULT_MEMORY_BYTES, block_rows, top_k_by_similarity

QUICK_SIZES = "200x20000,1000x100000"
DEFAULT_SIZES = "1000x100000,1000x1000000,10000x1000000"
# The GEMM bound covers the whole [Q, N] product when the index and the product fit in
# this many bytes; past it, GEMMs of whole blocks of the search's shapes.
_FULL_GEMM_BYTES = 2 * 1024**3
_MIN_GEMM_BLOCKS = 3
_POOL_ROWS = 4096


class GeneratedRows:
    """[rows, dim] unit-free descriptors made on demand, the same whatever the slicing.

    Row i is pool[i mod P] + 0.01 * pool[(i div P + 1) mod P]: distinct rows for the
    first P**2, at the cost of two row gathers (cheap beside a row's dot products).
    """

    def __init__(self, rows: int, dim: int, seed: int):
        self.shape = (rows, dim)
        self._pool = np.random.default_rng(seed).standard_normal((_POOL_ROWS, dim), np.float32)

    def __getitem__(self, rows: slice) -> np.ndarray:
        start, stop, _ = rows.indices(self.shape[0])
        block = np.empty((max(stop - start, 0), self.shape[1]), np.float32)
        # Runs of rows that share i div P: a copy of consecutive pool rows plus one vector.
        row = start
        while row < stop:
            offset = row % _POOL_ROWS
            end = min(stop, row + _POOL_ROWS - offset)
            out = block[row - start : end - start]
            out[:] = self._pool[offset : offset + end - row]
            out += np.float32(0.01) * self._pool[(row // _POOL_ROWS + 1) % _POOL_ROWS]
            row = end
        return block


def parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for part in text.split(","):
        queries, _, index = part.strip().lower().partition("x")
        sizes.append((int(queries), int(index)))
    return sizes


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--sizes", default=None, help=f"QxN,... (default {DEFAULT_SIZES}; --quick {QUICK_SIZES})"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, a minute or two")
    parser.add_argument("--dim", type=int, default=2048, help="DELG global descriptors")
    parser.add_argument("--k", type=int, default=100, help="ids kept per query")
    parser.add_argument(
        "--memory_bytes", type=int, default=DEFAULT_MEMORY_BYTES, help="the search's bound"
    )
    parser.add_argument(
        "--sources",
        default="generated,memmap",
        help="generated (made block by block) and/or memmap (a temporary file)",
    )
    parser.add_argument(
        "--memmap_max_gb",
        type=float,
        default=2.0,
        help="memmap only sizes whose index file is at most this big",
    )
    parser.add_argument("--workdir", default=None, help="where memmap files go (temp dir)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sizes is None:
        args.sizes = QUICK_SIZES if args.quick else DEFAULT_SIZES
    return args


def _rss_anon_bytes() -> int:
    # Anonymous memory only: the pages of a memory-mapped index are the page cache's.
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no RssAnon in /proc/self/status")


class PeakSampler:
    """The highest RssAnon of this process, sampled every few milliseconds."""

    def __init__(self, interval_s: float = 0.005):
        self.peak = _rss_anon_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval_s,), daemon=True)

    def _run(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            self.peak = max(self.peak, _rss_anon_bytes())

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_anon_bytes())


class TimedRows:
    """A Rows that adds up the seconds its blocks take to read (or to generate).

    The generator and a cold page cache supply blocks at their own cost, which is the
    input's, not the search's: the table shows the ratio with and without it.
    """

    def __init__(self, rows) -> None:
        self.rows, self.shape, self.seconds = rows, rows.shape, 0.0

    def __getitem__(self, rows: slice) -> np.ndarray:
        start = time.perf_counter()
        block = np.asarray(self.rows[rows])
        self.seconds += time.perf_counter() - start
        return block


def _gemm_rate(queries, index, query_rows: int, index_rows: int) -> tuple[float, float, str]:
    """Similarities per wall and per CPU second of plain `out = A @ B.T` GEMMs, on
    in-memory arrays, and which GEMMs they were."""
    num_queries, num_index = queries.shape[0], index.shape[0]
    dim = queries.shape[1]
    if (num_index * dim + num_queries * num_index) * 4 <= _FULL_GEMM_BYTES:
        a = np.ascontiguousarray(queries[0:num_queries])
        b = np.ascontiguousarray(index[0:num_index])
        out = np.empty((num_queries, num_index), np.float32)
        np.matmul(a[:8], b[:256].T, out=out[:8, :256])  # warm up the BLAS threads
        start, cpu = time.perf_counter(), time.process_time()
        np.matmul(a, b.T, out=out)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        return num_queries * num_index / wall, num_queries * num_index / cpu, "full [Q,N] GEMM"
    # The search's own block shapes: a query block against whole index blocks.
    a = np.ascontiguousarray(queries[0:query_rows])
    out = np.empty((query_rows, index_rows), np.float32)
    blocks = [np.ascontiguousarray(index[i * index_rows : (i + 1) * index_rows]) for i in (0, 1)]
    np.matmul(a[:8], blocks[0][:256].T, out=out[:8, :256])
    start, cpu, done = time.perf_counter(), time.process_time(), 0
    for i in range(_MIN_GEMM_BLOCKS):
        np.matmul(a, blocks[i % 2].T, out=out)
        done += query_rows * index_rows
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return (
        done / wall,
        done / cpu,
        (f"slice: {_MIN_GEMM_BLOCKS} GEMMs of the search's {query_rows}x{index_rows} blocks"),
    )


def run_child(spec: dict) -> dict:
    """One size: the search, then its GEMM bound. Runs in its own process."""
    num_queries, num_index, dim = spec["queries"], spec["index"], spec["dim"]
    queries = np.ascontiguousarray(GeneratedRows(num_queries, dim, seed=1)[0:num_queries])
    index = GeneratedRows(num_index, dim, seed=2)
    if spec["source"] == "memmap":
        mapped = np.lib.format.open_memmap(spec["path"], "w+", np.float32, (num_index, dim))
        step = 65536
        for start in range(0, num_index, step):
            mapped[start : start + step] = index[start : start + step]
        mapped.flush()
        del mapped
        index = np.load(spec["path"], mmap_mode="r")
    query_rows, index_rows = block_rows(num_queries, num_index, dim, spec["k"], spec["memory"])
    index = TimedRows(index)
    before = _rss_anon_bytes()
    start = time.perf_counter()
    shown = [0.0]

    def progress(done: int, total: int) -> None:
        # On stderr, which the parent passes through: a long size shows its rate as it goes.
        if done == total or done >= shown[0] + total / 20:
            shown[0] = done
            elapsed = time.perf_counter() - start
            print(f"  {done / total:6.1%} of {num_queries}x{num_index} in {elapsed:7.1f} s: "
                  f"{done / elapsed / 1e6:.2f} Msims/s", file=sys.stderr, flush=True)  # fmt: skip

    cpu = time.process_time()
    with PeakSampler() as sampler:
        found = top_k_by_similarity(queries, index, spec["k"], spec["memory"], progress)
        search_s = time.perf_counter() - start
    cpu = time.process_time() - cpu
    if found.ids.shape != (num_queries, min(spec["k"], num_index)):
        raise RuntimeError(f"search returned {found.ids.shape}")
    result_bytes = found.ids.nbytes + found.scores.nbytes
    input_s = index.seconds
    gemm_rate, gemm_cpu_rate, gemm_kind = _gemm_rate(queries, index.rows, query_rows, index_rows)
    return {
        "search_s": search_s,
        "input_s": input_s,
        "search_rate": num_queries * num_index / search_s,
        "search_rate_no_input": num_queries * num_index / max(search_s - input_s, 1e-9),
        "gemm_rate": gemm_rate,
        # Per CPU second: the work each does, whatever else shares the cores.
        "cpu_ratio": num_queries * num_index / cpu / gemm_cpu_rate,
        "gemm_kind": gemm_kind,
        # Inputs (queries, generator pool) were resident before; the result is the output.
        "peak_bytes": sampler.peak - before - result_bytes,
        "blocks": f"{query_rows}x{index_rows}",
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(run_child(json.loads(args.child))))
        return
    sources = [s.strip() for s in args.sources.split(",") if s.strip()]
    unknown = sorted(set(sources) - {"generated", "memmap"})
    if unknown:
        raise SystemExit(f"--sources: unknown {unknown}; use generated and/or memmap")
    print(
        f"bench_search: top_k_by_similarity, {args.dim}-d float32, k={args.k}, "
        f"memory_bytes={args.memory_bytes} ({args.memory_bytes / 2**30:.2f} GiB), "
        f"{os.cpu_count()} cores; each size in a fresh process"
    )
    header = (
        f"{'source':<9} {'queries':>7} {'index':>9} {'blocks':>12} {'search_s':>9} "
        f"{'input_s':>8} {'Msims/s':>8} {'GEMM Msims/s':>12} {'ratio':>6} {'no_input':>8} "
        f"{'cpu_ratio':>9} {'peak_MiB':>9} "
        f"{'bound_MiB':>9}  GEMM"
    )
    print(header)
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="bench_search_") as workdir:
        for num_queries, num_index in parse_sizes(args.sizes):
            for source in sources:
                if source == "memmap" and num_index * args.dim * 4 > args.memmap_max_gb * 2**30:
                    print(f"{source:<9} {num_queries:>7} {num_index:>9}  skipped: file over "
                          f"--memmap_max_gb {args.memmap_max_gb}")  # fmt: skip
                    continue
                spec = {
                    "queries": num_queries, "index": num_index, "dim": args.dim, "k": args.k,
                    "memory": args.memory_bytes, "source": source,
                    "path": os.path.join(workdir, f"index_{num_index}.npy"),
                }  # fmt: skip
                child = subprocess.run(
                    [sys.executable, __file__, "--child", json.dumps(spec)],
                    check=True,
                    stdout=subprocess.PIPE,
                    text=True,
                )
                row = json.loads(child.stdout.strip().splitlines()[-1])
                if os.path.exists(spec["path"]):
                    os.remove(spec["path"])
                print(
                    f"{source:<9} {num_queries:>7} {num_index:>9} {row['blocks']:>12} "
                    f"{row['search_s']:>9.1f} {row['input_s']:>8.1f} "
                    f"{row['search_rate'] / 1e6:>8.2f} {row['gemm_rate'] / 1e6:>12.2f} "
                    f"{row['search_rate'] / row['gemm_rate']:>6.2f} "
                    f"{row['search_rate_no_input'] / row['gemm_rate']:>8.2f} "
                    f"{row['cpu_ratio']:>9.2f} "
                    f"{row['peak_bytes'] / 2**20:>9.0f} {args.memory_bytes / 2**20:>9.0f}  "
                    f"{row['gemm_kind']}",
                    flush=True,
                )
    print(
        "ratio: search similarities/s over the GEMM's (goal >= 0.7); no_input: the same "
        "without the input_s spent generating or reading the index's blocks; cpu_ratio: "
        "the same per CPU second (the work done, whatever else shares the cores); "
        "peak_MiB: the search's RssAnon high-water above its inputs (sampled every 5 ms), "
        "within bound_MiB"
    )


if __name__ == "__main__":
    main()
