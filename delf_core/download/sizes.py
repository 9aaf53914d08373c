"""The true size of each file a download plans: from its manifest record, else an HTTP HEAD."""

from __future__ import annotations

import concurrent.futures
import logging

import requests

from delf_core import storage
from delf_core.download.config import DownloadConfig
from delf_core.download.fetch import RetryPolicy
from delf_core.download.manifest import SplitManifest
from delf_core.download.redact import redact_url
from delf_core.gldv2 import layout

log = logging.getLogger(__name__)


def remote_size(url: str, policy: RetryPolicy) -> int | None:
    """The Content-Length the server gives for `url`, or None when it gives none."""
    try:
        response = requests.head(
            url, allow_redirects=True, timeout=(policy.connect_timeout, policy.timeout_seconds)
        )
    except requests.exceptions.RequestException as error:
        log.debug("%s: no size: %s", redact_url(url), type(error).__name__)
        return None
    length = response.headers.get("Content-Length", "")
    # ASCII digits only: a hostile header such as "²" passes isdigit() and fails int().
    if response.status_code != 200 or not (length.isascii() and length.isdigit()):
        return None
    return int(length)


def planned_sizes(config: DownloadConfig) -> dict[tuple[str, str], int | None]:
    """{(split, file name): bytes} of every CSV and tar the download plans.

    A file its manifest records as done has the recorded size; the others are asked
    for with HEAD requests, `max_workers` at once. None where the server gives no size.
    """
    fs, root = storage.resolve(config.output_dir)
    counts = config.tar_counts()
    sizes: dict[tuple[str, str], int | None] = {}
    asked: dict[tuple[str, str], str] = {}
    for split in layout.SPLITS:
        manifest = SplitManifest(fs, storage.join(root, split), split)
        files = [("metadata", r.name, r.bucket_path) for r in layout.METADATA_FILES[split]]
        files += [
            ("tars", layout.tar_name(i), layout.tar_bucket_path(split, i))
            for i in range(counts[split])
        ]
        for kind, name, bucket_path in files:
            entry = manifest.entry(kind, name)
            if entry is not None and isinstance(entry.get("size"), int):
                sizes[(split, name)] = entry["size"]
            else:
                asked[(split, name)] = layout.join_url(config.base_url, bucket_path)
    with concurrent.futures.ThreadPoolExecutor(config.max_workers) as pool:
        found = pool.map(lambda url: remote_size(url, config.retry), asked.values())
        sizes.update(zip(asked, found, strict=True))
    return sizes
