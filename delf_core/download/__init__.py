"""The `download` step: resilient fetching, checksum checks and safe unpacking of GLDv2 tars."""

from delf_core.download.errors import (
    ChecksumMismatchError,
    DownloadError,
    PermanentHTTPError,
    TransientError,
    UnsafeTarError,
)
from delf_core.download.fetch import FetchResult, RetryPolicy, fetch_file
from delf_core.download.step import (
    DownloadConfig,
    DownloadReport,
    FileOutcome,
    TarJob,
    download,
    download_metadata_file,
    download_tar,
    fetch_checksums,
    plan_jobs,
)
from delf_core.download.untar import unpack_tar

__all__ = [
    "ChecksumMismatchError",
    "DownloadConfig",
    "DownloadError",
    "DownloadReport",
    "FetchResult",
    "FileOutcome",
    "PermanentHTTPError",
    "RetryPolicy",
    "TarJob",
    "TransientError",
    "UnsafeTarError",
    "download",
    "download_metadata_file",
    "download_tar",
    "fetch_checksums",
    "fetch_file",
    "plan_jobs",
    "unpack_tar",
]
