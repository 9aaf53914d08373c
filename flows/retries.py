"""Which task failures a retry may cure: transient I/O, not bad paths or bad input."""

from __future__ import annotations

import tensorflow as tf

# A path that is not there, or not allowed, fails the same way on every try.
_PERMANENT = (
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)
# What tf.io.gfile (SavedModel loading, gs://) raises for a flaky connection.
_TRANSIENT_TF = (
    tf.errors.UnavailableError,
    tf.errors.DeadlineExceededError,
    tf.errors.AbortedError,
)


def transient_io_error(task, task_run, state) -> bool:
    """A Prefect `retry_condition_fn`: retry OSErrors (timeouts, resets), not bad input.

    ValueErrors (a bad config, a malformed dataset file, an export of the wrong kind)
    and missing files are not retried.
    """
    error = state.result(raise_on_failure=False)
    if isinstance(error, _PERMANENT):
        return False
    return isinstance(error, (OSError, *_TRANSIENT_TF))
