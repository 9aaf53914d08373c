"""Fetching one URL to a local file: streaming md5, Range resume, retries with backoff."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import random
import re
import time
from collections.abc import Callable
from pathlib import Path

import requests
import urllib3

from delf_core import storage
from delf_core.download.errors import (
    ChecksumMismatchError,
    CorruptFileError,
    DownloadError,
    PermanentHTTPError,
    TransientError,
)
from delf_core.download.redact import redact_url, scrub
from delf_core.step_config import check, option

log = logging.getLogger(__name__)

# Bytes of a read that a dropped connection cuts short are lost with it, so reads stay
# small enough that a resume repeats little.
_CHUNK_BYTES = 256 * 1024
# On a slow link, bytes received are written (and reach the progress bar) at least this often.
_FLUSH_SECONDS = 1.0
# Statuses worth another attempt: timeouts, throttling and server-side faults.
_RETRY_STATUSES = {408, 425, 429, 500, 502, 503, 504}
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_CONTENT_RANGE_UNSATISFIED = re.compile(r"bytes \*/(\d+)")


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry a failing file (flags of `delf download`).

    Attributes:
      max_backoff_seconds: cap on one delay between attempts.
      connect_timeout: seconds to wait for a connection.
    """

    retries: int = option(5, "attempts after the first for each file", minimum=0)
    backoff_seconds: float = option(
        1.0, "first delay between attempts; doubles each time, with jitter", minimum=0
    )
    max_backoff_seconds: float = 60.0
    connect_timeout: float = 10.0
    timeout_seconds: float = option(
        60.0, "seconds without a byte before an attempt is abandoned", above=0
    )
    min_bytes_per_second: float = option(
        1024.0,
        "an attempt slower than this over --rate_window_seconds is cut short and resumed "
        "(a server trickling bytes never trips --timeout_seconds); 0: no check",
        minimum=0,
    )
    rate_window_seconds: float = option(
        60.0, "seconds over which --min_bytes_per_second is measured", above=0
    )
    file_deadline_seconds: float = option(
        24 * 3600.0,
        "longest one attempt at one file may take before it is cut short and resumed; 0: none",
        minimum=0,
    )

    def validate(self) -> None:
        """Raises ValueError naming the flag of a value out of range."""
        check(self)

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
    validate: Callable[[Path], object] | None = None,
    refresh_md5: Callable[[], str] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> FetchResult:
    """Downloads `url` to `dest`, which appears only once complete and verified.

    Bytes go to `<dest>.part`; a `.part` left by an earlier run is resumed with an HTTP
    Range request. The md5 is updated as the bytes arrive. A wrong md5, or bytes that
    `validate` rejects with a ValueError, discard the file and count as a failed
    attempt. After a wrong md5, `refresh_md5` (if given) fetches the published digest
    again: a digest damaged on its way is then replaced, not blamed on the file. `tee`,
    if given, receives each chunk with its offset in the file, once it is written.
    Credentials in `url` never appear in a message.

    Raises:
      PermanentHTTPError: on a 4xx status other than the retryable ones (no retry).
      ChecksumMismatchError: when every attempt produced a wrong md5.
      CorruptFileError: when `validate` rejected every attempt.
      DownloadError: when every attempt failed for another reason.
    """
    part = dest.with_name(dest.name + ".part")
    attempt = 0
    while True:
        attempt += 1
        try:
            size, md5 = _fetch_once(session, url, part, policy, on_bytes, tee)
            if expected_md5 is not None and md5 != expected_md5 and refresh_md5 is not None:
                expected_md5 = refresh_md5()
            if expected_md5 is not None and md5 != expected_md5:
                part.unlink()
                raise ChecksumMismatchError(
                    f"{dest.name}: md5 {md5} does not match the published {expected_md5}"
                )
            if validate is not None:
                try:
                    validate(part)
                except ValueError as error:
                    part.unlink()
                    raise CorruptFileError(str(error)) from None
            storage.durable_replace(part, dest)
            return FetchResult(dest, size, md5, attempt)
        except PermanentHTTPError:
            raise
        except (TransientError, ChecksumMismatchError, CorruptFileError) as error:
            if attempt > policy.retries:
                if isinstance(error, ChecksumMismatchError):
                    raise ChecksumMismatchError(f"{error} after {attempt} attempts") from None
                if isinstance(error, CorruptFileError):
                    raise CorruptFileError(f"{error} (fetched {attempt} times)") from None
                raise DownloadError(
                    f"{dest.name}: gave up after {attempt} attempts: {error}"
                ) from None
            log.info(
                "%s: attempt %d of %d failed: %s", dest.name, attempt, policy.retries + 1, error
            )
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
    shown = redact_url(url)
    pace = _Pace(policy, shown)
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        with session.get(
            url,
            headers=headers,
            stream=True,
            timeout=(policy.connect_timeout, policy.timeout_seconds),
        ) as response:
            offset = _check_status(response, shown, part, offset)
            if offset < 0:  # the .part already held every byte
                return part.stat().st_size, md5_of_file(part)
            return _stream_body(response, part, offset, on_bytes, tee, pace)
    except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError) as error:
        # Connection refused or reset, timeouts and bodies cut short all land here.
        detail = scrub(_first_line(error), url)
        raise TransientError(f"{shown}: {type(error).__name__}: {detail}") from None


class _Pace:
    """Cuts an attempt short when it is too slow on average, or too long in all.

    A read timeout only notices silence; a server sending a byte a second keeps every
    read within it, and would hold a worker for ever.
    """

    def __init__(self, policy: RetryPolicy, shown_url: str) -> None:
        self.policy = policy
        self.shown_url = shown_url
        self.started = self.window_start = time.monotonic()
        self.window_bytes = 0

    def body_starts(self) -> None:
        """The rate is measured from the first byte of the body: waiting for the
        headers is `timeout_seconds`'s business."""
        self.window_start, self.window_bytes = time.monotonic(), 0

    def add(self, count: int) -> None:
        now = time.monotonic()
        policy = self.policy
        if policy.file_deadline_seconds and now - self.started > policy.file_deadline_seconds:
            raise TransientError(
                f"{self.shown_url}: still downloading after {now - self.started:.0f} s "
                f"(--file_deadline_seconds={policy.file_deadline_seconds:g}); will resume"
            )
        self.window_bytes += count
        elapsed = now - self.window_start
        if policy.min_bytes_per_second and elapsed >= policy.rate_window_seconds:
            rate = self.window_bytes / elapsed
            if rate < policy.min_bytes_per_second:
                raise TransientError(
                    f"{self.shown_url}: too slow, {rate:.0f} bytes/s over {elapsed:.1f} s "
                    f"(--min_bytes_per_second={policy.min_bytes_per_second:g}); will resume"
                )
            self.window_start, self.window_bytes = now, 0


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
    pace: _Pace,
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
    pending = bytearray()
    flushed_at = time.monotonic()

    def flush() -> None:
        nonlocal received, flushed_at
        if not pending:
            return
        chunk = bytes(pending)
        pending.clear()
        flushed_at = time.monotonic()
        handle.write(chunk)
        digest.update(chunk)
        if tee:
            tee(offset + received, chunk)
        received += len(chunk)
        if on_bytes:
            on_bytes(len(chunk))

    pace.body_starts()
    with open(part, "ab" if offset else "wb") as handle:
        try:
            # read1 returns what has arrived, so a trickle is measured as it comes (a
            # plain read waits for a whole chunk). Small reads are gathered into chunks.
            while data := response.raw.read1(_CHUNK_BYTES - len(pending), decode_content=True):
                pending += data
                if len(pending) >= _CHUNK_BYTES or time.monotonic() - flushed_at >= _FLUSH_SECONDS:
                    flush()
                pace.add(len(data))
        finally:
            flush()  # bytes that arrived are kept however the attempt ends: a resume follows them
    if expected is not None and received != expected:
        raise TransientError(f"short body: got {received} of {expected} bytes")
    return offset + received, digest.hexdigest()


def _first_line(error: BaseException) -> str:
    text = str(error)
    return text.splitlines()[0][:200] if text else ""
