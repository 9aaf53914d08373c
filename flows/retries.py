"""Which task failures a retry may cure, and the retry settings the flows' tasks share."""

from __future__ import annotations

import sys
from collections.abc import Callable

# A path that is not there, or not allowed, fails the same way on every try.
_PERMANENT = (
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)
# What tf.io.gfile (SavedModel loading, gs://) raises for a flaky connection.
_TRANSIENT_TF = ("UnavailableError", "DeadlineExceededError", "AbortedError")


def _transient_tf_error(error: object) -> bool:
    # Only a loaded TensorFlow raises its errors: asking must not load it (seconds).
    tf = sys.modules.get("tensorflow")
    if tf is None:
        return False
    return isinstance(error, tuple(getattr(tf.errors, name) for name in _TRANSIENT_TF))


def transient_io_error(task, task_run, state) -> bool:
    """A Prefect `retry_condition_fn`: retry OSErrors (timeouts, resets), not bad input.

    ValueErrors (a bad config, a malformed dataset file, an export of the wrong kind)
    and missing files are not retried.
    """
    error = state.result(raise_on_failure=False)
    if isinstance(error, _PERMANENT):
        return False
    return isinstance(error, OSError) or _transient_tf_error(error)


def retry_unless(*permanent: type[BaseException]) -> Callable[..., bool]:
    """A Prefect `retry_condition_fn` that retries any failure but those of `permanent`."""

    def worth_retrying(task, task_run, state) -> bool:
        error = state.result(raise_on_failure=False)
        return not isinstance(error, permanent)

    return worth_retrying


# A crash (preemption, out of memory) may pass; bad flags or bad records
# (RecordsError, LabelOutOfRangeError: ValueErrors) fail the same way every time.
unless_bad_input = retry_unless(ValueError)
# A missing checkpoint, an export path in the way or flags that do not fit the
# checkpoint fail the same way every time.
unless_bad_path_or_input = retry_unless(FileNotFoundError, FileExistsError, ValueError)
# For tasks that skip what they finished (extraction, retrieval): a retry costs little.
TRANSIENT_IO_RETRIES = dict(
    retries=2, retry_delay_seconds=[10, 60], retry_condition_fn=transient_io_error
)
