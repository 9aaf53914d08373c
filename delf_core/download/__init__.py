"""The `download` step: resilient fetching, checksum checks and safe unpacking of GLDv2 tars."""

from delf_core.download.config import (
    DownloadConfig,
    DownloadReport,
    FileOutcome,
    ProgressListener,
    TarJob,
)
from delf_core.download.errors import (
    ChecksumMismatchError,
    CorruptFileError,
    DownloadError,
    PermanentHTTPError,
    TransientError,
    UnsafeTarError,
)
from delf_core.download.fetch import FetchResult, RetryPolicy, fetch_file
from delf_core.download.members import UnpackLimits, UnpackResult
from delf_core.download.redact import redact_url
from delf_core.download.step import (
    download,
    download_metadata_file,
    download_tar,
    fetch_checksums,
    plan_jobs,
    write_manifests,
)
from delf_core.download.untar import unpack_tar

__all__ = [
    "ChecksumMismatchError",
    "CorruptFileError",
    "DownloadConfig",
    "DownloadError",
    "DownloadReport",
    "FetchResult",
    "FileOutcome",
    "PermanentHTTPError",
    "ProgressListener",
    "RetryPolicy",
    "TarJob",
    "TransientError",
    "UnpackLimits",
    "UnpackResult",
    "UnsafeTarError",
    "download",
    "download_metadata_file",
    "download_tar",
    "fetch_checksums",
    "fetch_file",
    "plan_jobs",
    "redact_url",
    "unpack_tar",
    "write_manifests",
]
