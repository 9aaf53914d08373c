"""Benchmark of the download fan-out under Prefect: the flow against the library it wraps.

The bound is `delf_core.download.download` on the same throttled mirror in the same run:
the flow adds one task per tar (a cache key, state changes on the API, results) on a
thread pool or a local Dask cluster, and should cost little beside the transfer.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

# A private Prefect home: no cache records from elsewhere, none left behind.
_HOME = tempfile.mkdtemp(prefix="bench-flow-prefect-")
os.environ.update(
    PREFECT_HOME=_HOME,
    PREFECT_LOGGING_LEVEL="WARNING",
    DO_NOT_TRACK="1",
    PREFECT_SERVER_ANALYTICS_ENABLED="false",
)

from bench_download import MB, add_bucket_flags, make_bucket, run_delf  # noqa: E402

from delf_cli.prefect_server import allow_slow_start  # noqa: E402

allow_slow_start()  # the embedded server starts slowly on a busy machine

from delf_core.download import DownloadConfig  # noqa: E402
from delf_core.gldv2.mirror import MirrorServer  # noqa: E402
from flows.download import run_download  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    add_bucket_flags(parser, num_tars=16, tar_mb=16)
    parser.add_argument("--dask", action="store_true", help="also on a local Dask cluster")
    return parser.parse_args(argv)


def run_flow(base_url: str, out: Path, args: argparse.Namespace, dask: str | None = None) -> float:
    """Wall seconds of the download flow; exits when it does not complete."""
    config = DownloadConfig(
        args.num_tars, 0, 0, output_dir=str(out), base_url=base_url, max_workers=args.max_workers
    )
    began = time.perf_counter()
    state = run_download(config, dask_address=dask, return_state=True)
    elapsed = time.perf_counter() - began
    if not state.is_completed():
        sys.exit(f"the download flow ended {state.name}: {state.message}")
    return elapsed


def run_on_dask(base_url: str, out: Path, args: argparse.Namespace) -> tuple[float, float]:
    """Seconds to start a local Dask cluster (not counted), and of the flow on it."""
    import distributed
    from prefect.client.orchestration import get_client

    began = time.perf_counter()
    workers = min(os.cpu_count() or 1, args.max_workers)
    with distributed.LocalCluster(
        n_workers=workers,
        threads_per_worker=-(-args.max_workers // workers),
        env={"PREFECT_API_URL": str(get_client(sync_client=True).api_url)},
    ) as cluster:
        started = time.perf_counter() - began
        return started, run_flow(base_url, out, args, dask=cluster.scheduler_address)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    run_dir = Path(tempfile.mkdtemp(prefix="bench-flow-download-", dir=args.workdir))
    try:
        member_bytes = args.member_kb * 1024
        members = max(1, round(args.tar_mb * MB / member_bytes))
        tars = make_bucket(run_dir / "bucket", args.num_tars, members, member_bytes)
        total_mb = sum(t.stat().st_size for t in tars) / MB
        with MirrorServer(run_dir / "bucket", rate_limit_mb=args.rate_limit_mb) as mirror:
            # Starts Prefect's embedded server before any timing.
            run_flow(mirror.url, run_dir / "warm-up", parse_args(["--num_tars", "1"]))
            library = run_delf(
                mirror.url,
                run_dir / "library",
                args.num_tars,
                args.max_workers,
                members * len(tars),
            )
            flow = run_flow(mirror.url, run_dir / "flow", args)
            cached = run_flow(mirror.url, run_dir / "flow", args)
            dask_start = dask = 0.0
            if args.dask:
                dask_start, dask = run_on_dask(mirror.url, run_dir / "dask", args)
        print(
            f"bench_flow_download: {args.num_tars} tars x {total_mb / args.num_tars:.1f} MB, "
            f"rate limit {args.rate_limit_mb:.1f} MB/s per connection, "
            f"{args.max_workers} workers"
        )
        print(f"bound_library_MBps {total_mb / library:.1f}")
        print(f"flow_threads_MBps {total_mb / flow:.1f}")
        print(f"flow_threads_ratio_to_bound {library / flow:.3f}")
        print(f"flow_overhead_per_tar_ms {1000 * (flow - library) / args.num_tars:.0f}")
        print(f"flow_cached_rerun_s {cached:.2f}")
        if args.dask:
            print(f"dask_cluster_start_s {dask_start:.1f}")
            print(f"flow_dask_MBps {total_mb / dask:.1f}")
            print(f"flow_dask_ratio_to_bound {library / dask:.3f}")
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.rmtree(_HOME, ignore_errors=True)


if __name__ == "__main__":
    main()
