"""Fetching one URL to a local file: streaming md5, Range resume, retries with backoff."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import random
import re
import time
from collections.abc import Callable
from pathlib import Path

import requests

from delf_core.download.errors import (
    ChecksumMismatchError,
    DownloadError,
    PermanentHTTPError,
    TransientError,
)

# Bytes of a read that a dropped connection cuts short are lost with it, so reads stay
# small enough that a resume repeats little.
_CHUNK_BYTES = 256 * 1024
# Statuses worth another attempt: timeouts, throttling and server-side faults.
_RETRY_STATUSES = {408, 425, 429, 500, 502, 503, 504}
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_CONTENT_RANGE_UNSATISFIED = re.compile(r"bytes \*/(\d+)")


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry a failing file.

    Attributes:
      retries: attempts after the first one.
      backoff_seconds: the first delay; each later one doubles, up to `max_backoff_seconds`.
      max_backoff_seconds: cap on one delay.
      connect_timeout: seconds to wait for a connection.
      read_timeout: seconds to wait for the next bytes of a response.
    """

    retries: int = 5
    backoff_seconds: float = 1.0
    max_backoff_seconds: float = 60.0
    connect_timeout: float = 10.0
    read_timeout: float = 60.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Exponential backoff with "equal jitter": half fixed, half random.

        The jitter spreads out retries of many workers that failed together.
        """
        base = min(self.max_backoff_seconds, self.backoff_seconds * 2 ** (attempt - 1))
        return base / 2 + (rng or random).uniform(0, base / 2)


@dataclasses.dataclass(frozen=True)
class FetchResult:
    path: Path
    size: int
    md5: str
    attempts: int


def md5_of_file(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_file(
    session: requests.Session,
    url: str,
    dest: Path,
    *,
    expected_md5: str | None = None,
    policy: RetryPolicy = RetryPolicy(),
    on_bytes: Callable[[int], None] | None = None,
    tee: Callable[[int, bytes], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> FetchResult:
    """Downloads `url` to `dest`, which appears only once complete and verified.

    Bytes go to `<dest>.part`; a `.part` left by an earlier run is resumed with an HTTP
    Range request. The md5 is updated as the bytes arrive. A wrong md5 discards the
    file and counts as a failed attempt. `tee`, if given, receives each chunk with its
    offset in the file, once the chunk is written.

    Raises:
      PermanentHTTPError: on a 4xx status other than the retryable ones (no retry).
      ChecksumMismatchError: when every attempt produced a wrong md5.
      DownloadError: when every attempt failed for another reason.
    """
    part = dest.with_name(dest.name + ".part")
    attempt = 0
    while True:
        attempt += 1
        try:
            size, md5 = _fetch_once(session, url, part, policy, on_bytes, tee)
            if expected_md5 is not None and md5 != expected_md5:
                part.unlink()
                raise ChecksumMismatchError(
                    f"{dest.name}: md5 {md5} does not match the published {expected_md5}"
                )
            os.replace(part, dest)
            return FetchResult(dest, size, md5, attempt)
        except PermanentHTTPError:
            raise
        except (TransientError, ChecksumMismatchError) as error:
            if attempt > policy.retries:
                if isinstance(error, ChecksumMismatchError):
                    raise ChecksumMismatchError(f"{error} after {attempt} attempts") from None
                raise DownloadError(
                    f"{dest.name}: gave up after {attempt} attempts: {error}"
                ) from None
            sleep(policy.delay(attempt))


def _fetch_once(
    session: requests.Session,
    url: str,
    part: Path,
    policy: RetryPolicy,
    on_bytes: Callable[[int], None] | None,
    tee: Callable[[int, bytes], None] | None,
) -> tuple[int, str]:
    """One attempt; returns (size, md5) of the complete `.part` file."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        with session.get(
            url,
            headers=headers,
            stream=True,
            timeout=(policy.connect_timeout, policy.read_timeout),
        ) as response:
            offset = _check_status(response, url, part, offset)
            if offset < 0:  # the .part already held every byte
                return part.stat().st_size, md5_of_file(part)
            return _stream_body(response, part, offset, on_bytes, tee)
    except requests.exceptions.RequestException as error:
        # Connection refused or reset, timeouts and bodies cut short all land here.
        raise TransientError(f"{url}: {type(error).__name__}: {_first_line(error)}") from None


def _check_status(response: requests.Response, url: str, part: Path, offset: int) -> int:
    """The offset to append at: 0 to start over, -1 when `.part` is already complete."""
    status = response.status_code
    if status == 206 and offset:
        match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        if match and int(match.group(1)) == offset:
            return offset
        raise TransientError(f"{url}: server resumed at the wrong offset")
    if status == 200:
        return 0  # no Range support, or a fresh download: start from the first byte
    if status == 416 and offset:
        match = _CONTENT_RANGE_UNSATISFIED.match(response.headers.get("Content-Range", ""))
        if match and int(match.group(1)) == offset:
            return -1
        part.unlink()
        raise TransientError(f"{url}: partial file larger than the remote one, starting over")
    reason = f"HTTP {status} {response.reason or ''}".strip()
    if status in _RETRY_STATUSES or status >= 500:
        raise TransientError(f"{url}: {reason}")
    raise PermanentHTTPError(f"{url}: {reason}", status)


def _stream_body(
    response: requests.Response,
    part: Path,
    offset: int,
    on_bytes: Callable[[int], None] | None,
    tee: Callable[[int, bytes], None] | None,
) -> tuple[int, str]:
    digest = hashlib.md5()
    if offset:
        # Resuming: the bytes already on disk must enter the digest first.
        with open(part, "rb") as handle:
            while chunk := handle.read(_CHUNK_BYTES):
                digest.update(chunk)
    length = response.headers.get("Content-Length")
    expected = int(length) if length is not None else None
    received = 0
    with open(part, "ab" if offset else "wb") as handle:
        for chunk in response.iter_content(_CHUNK_BYTES):
            handle.write(chunk)
            digest.update(chunk)
            if tee:
                tee(offset + received, chunk)
            received += len(chunk)
            if on_bytes:
                on_bytes(len(chunk))
    if expected is not None and received != expected:
        raise TransientError(f"short body: got {received} of {expected} bytes")
    return offset + received, digest.hexdigest()


def _first_line(error: BaseException) -> str:
    text = str(error)
    return text.splitlines()[0][:200] if text else ""
