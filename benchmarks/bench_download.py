"""Benchmark of the download step on a throttled local mirror, against its bound and a baseline."""

from __future__ import annotations

import argparse
import concurrent.futures
import io
import shutil
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import BinaryIO

import numpy as np
import requests

from delf_core.download import DownloadConfig, download
from delf_core.download.fetch import md5_of_file
from delf_core.gldv2 import layout
from delf_core.gldv2.mirror import MirrorServer

MB = 1e6  # the mirror's unit
_READ_BYTES = 1 << 20


def add_bucket_flags(parser: argparse.ArgumentParser, num_tars: int, tar_mb: float) -> None:
    """The flags of a throttled bucket and the download from it; bench_flow_download's too."""
    parser.add_argument("--num_tars", type=int, default=num_tars)
    parser.add_argument("--tar_mb", type=float, default=tar_mb)
    parser.add_argument("--rate_limit_mb", type=float, default=20, help="MB/s per connection")
    parser.add_argument("--max_workers", type=int, default=8)
    parser.add_argument("--member_kb", type=int, default=256, help="size of each image")
    parser.add_argument("--workdir", default=None, help="where to make the run's folder")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    add_bucket_flags(parser, num_tars=8, tar_mb=64)
    parser.add_argument("--keep", action="store_true", help="leave the run's folder in place")
    return parser.parse_args(argv)


def write_tar(path: Path, rng: np.random.Generator, members: int, member_bytes: int) -> str:
    """A tar of `members` incompressible fake JPEGs; returns its md5."""
    payload = memoryview(rng.bytes(members * member_bytes))
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for k in range(members):
            info = tarfile.TarInfo(layout.image_relpath(rng.bytes(8).hex()))
            info.size = member_bytes
            archive.addfile(info, io.BytesIO(payload[k * member_bytes : (k + 1) * member_bytes]))
    return md5_of_file(path)


def make_bucket(root: Path, num_tars: int, members: int, member_bytes: int) -> list[Path]:
    """The train tars, their md5 files and every CSV, in the GLDv2 bucket layout."""
    rng = np.random.default_rng(0)
    tars = []
    for index in range(num_tars):
        tar = root / layout.tar_bucket_path(layout.TRAIN, index)
        digest = write_tar(tar, rng, members, member_bytes)
        md5_path = root / layout.md5_bucket_path(layout.TRAIN, index)
        md5_path.parent.mkdir(parents=True, exist_ok=True)
        md5_path.write_text(layout.md5_line(digest, tar.name))
        tars.append(tar)
    for remote in (r for split in layout.SPLITS for r in layout.METADATA_FILES[split]):
        path = root / remote.bucket_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(",".join(remote.columns) + "\n")
    return tars


def get(url: str, handle: BinaryIO | None = None) -> int:
    """Bytes of one plain streaming GET, written to `handle` or thrown away."""
    received = 0
    with requests.get(url, stream=True, timeout=60) as response:
        response.raise_for_status()
        for chunk in response.iter_content(_READ_BYTES):
            received += len(chunk)
            if handle:
                handle.write(chunk)
    return received


def tar_url(base_url: str, index: int) -> str:
    return layout.join_url(base_url, layout.tar_bucket_path(layout.TRAIN, index))


def loopback_capacity(base_url: str, num_tars: int, workers: int) -> float:
    """Aggregate MB/s of `workers` parallel GETs from an unthrottled mirror.

    The most this machine moves over loopback, whatever the downloader does.
    """
    urls = [tar_url(base_url, index) for index in range(num_tars)]
    began = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        total = sum(pool.map(get, urls))
    return total / MB / (time.perf_counter() - began)


def run_delf(base_url: str, out: Path, num_tars: int, workers: int, images: int) -> float:
    """Wall seconds of the download step; exits when it fails or misses images."""
    config = DownloadConfig(
        num_train=num_tars,
        num_index=0,
        num_test=0,
        output_dir=str(out),
        base_url=base_url,
        max_workers=workers,
    )
    began = time.perf_counter()
    report = download(config)
    elapsed = time.perf_counter() - began
    if report.failed:
        sys.exit(f"download failed: {[o.error for o in report.failed]}")
    if report.images != images:
        sys.exit(f"download unpacked {report.images} images, expected {images}")
    return elapsed


def run_sequential(base_url: str, out: Path, num_tars: int) -> float:
    """Wall seconds of the plain way: one tar at a time, GET to a file, md5 it, extract."""
    out.mkdir(parents=True)
    began = time.perf_counter()
    for index in range(num_tars):
        tar = out / layout.tar_name(index)
        with open(tar, "wb") as handle:
            get(tar_url(base_url, index), handle)
        md5_url = layout.join_url(base_url, layout.md5_bucket_path(layout.TRAIN, index))
        expected = layout.parse_md5_file(requests.get(md5_url, timeout=60).text, md5_url)
        if md5_of_file(tar) != expected:
            sys.exit(f"sequential baseline: md5 mismatch for {tar.name}")
        with tarfile.open(tar) as archive:
            archive.extractall(out / layout.TRAIN, filter="data")
    return time.perf_counter() - began


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.workdir:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
    # A fresh folder even inside --workdir, so the cleanup never touches other files.
    workdir = Path(tempfile.mkdtemp(prefix="bench_download_", dir=args.workdir))
    member_bytes = args.member_kb * 1024
    members = max(1, round(args.tar_mb * MB / member_bytes))
    try:
        began = time.perf_counter()
        tars = make_bucket(workdir / "bucket", args.num_tars, members, member_bytes)
        generate_s = time.perf_counter() - began
        total_mb = sum(t.stat().st_size for t in tars) / MB
        print(
            f"bench_download: {args.num_tars} tars x {total_mb / args.num_tars:.1f} MB, "
            f"rate limit {args.rate_limit_mb:.1f} MB/s per connection, "
            f"{args.max_workers} workers"
        )
        print(f"generate_bucket_s {generate_s:.1f}")
        throttled = MirrorServer(workdir / "bucket", rate_limit_mb=args.rate_limit_mb)
        with throttled, MirrorServer(workdir / "bucket") as unthrottled:
            capacity = loopback_capacity(unthrottled.url, args.num_tars, args.max_workers)
            connections = min(args.max_workers, args.num_tars)
            bound = min(args.rate_limit_mb * connections, capacity)
            print(f"loopback_capacity_MBps {capacity:.1f}")
            print(f"bound_MBps {bound:.1f}")

            out = workdir / "delf"
            images = args.num_tars * members
            delf_s = run_delf(throttled.url, out, args.num_tars, args.max_workers, images)
            # Free the disk before the next copy of the data lands.
            shutil.rmtree(out)
            print(f"delf_download_MBps {total_mb / delf_s:.1f}")
            print(f"ratio_to_bound {total_mb / delf_s / bound:.2f}")

            out = workdir / "sequential"
            sequential_s = run_sequential(throttled.url, out, args.num_tars)
            shutil.rmtree(out)
        print(f"sequential_baseline_s {sequential_s:.1f}")
        print(f"delf_download_s {delf_s:.1f}")
        print(f"speedup_vs_sequential {sequential_s / delf_s:.2f}")
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
