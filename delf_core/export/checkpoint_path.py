"""Which checkpoint an export's `--ckpt_path` names, read without TensorFlow.

A cached flow run asks whether each export is current: answering must not load
TensorFlow (seconds) when nothing is to be exported.
"""

from __future__ import annotations

import re

from delf_core import storage

# The line of a checkpoint folder's `checkpoint` state file (a text proto) naming the latest.
_LATEST = re.compile(r'^model_checkpoint_path:\s*"((?:[^"\\]|\\.)*)"\s*$', re.MULTILINE)
# The state file is a few lines; a larger one is not a checkpoint state.
_STATE_LIMIT = 1 << 20


def _latest_in(folder: str) -> str | None:
    """The latest checkpoint its state file names, when that checkpoint's index exists."""
    fs, path = storage.resolve(storage.join(folder, "checkpoint"))
    try:
        with fs.open(path, "rb") as handle:
            text = handle.read(_STATE_LIMIT).decode("utf-8", errors="replace")
    except FileNotFoundError:
        return None
    match = _LATEST.search(text)
    if match is None:
        return None
    name = re.sub(r"\\(.)", r"\1", match.group(1))
    latest = name if "://" in name or name.startswith("/") else storage.join(folder, name)
    latest_fs, latest_path = storage.resolve(latest)
    return latest if latest_fs.exists(latest_path + ".index") else None


def resolve_checkpoint(ckpt_path: str) -> str:
    """`ckpt_path` itself, or the latest checkpoint when it names a checkpoint folder.

    Raises:
        FileNotFoundError: Neither is there.
    """
    fs, path = storage.resolve(ckpt_path)
    if fs.isdir(path) and (latest := _latest_in(ckpt_path)):
        return latest
    if not fs.exists(path + ".index"):
        raise FileNotFoundError(
            f"no checkpoint at --ckpt_path={ckpt_path}: expected {ckpt_path}.index "
            "(training writes <logdir>/delf_weights)"
        )
    return ckpt_path
