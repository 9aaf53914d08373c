"""Download errors: which ones a retry can fix, and which ones it cannot."""

from __future__ import annotations


class DownloadError(Exception):
    """A file could not be fetched or unpacked; the message is one line naming it."""


class TransientError(DownloadError):
    """A failure that a later attempt may not meet: timeouts, resets, 5xx, short bodies."""


class PermanentHTTPError(DownloadError):
    """The server answered with a status no retry will change (404, 403, ...)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class ChecksumMismatchError(DownloadError):
    """The bytes never matched the published md5, even after re-downloading."""


class UnsafeTarError(DownloadError):
    """A tar member would write outside its split folder, or is a link or device."""


class CorruptFileError(DownloadError):
    """A CSV or md5 file never had the expected form, even after fetching it again."""
