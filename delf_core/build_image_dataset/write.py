"""Writing one planned shard: read, check and frame each image, then publish the file whole."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
import uuid

import fsspec

from delf_core import records, storage
from delf_core.build_image_dataset.plan import PlannedImage, Problem, ShardPlan
from delf_core.gldv2 import images


@dataclasses.dataclass(frozen=True)
class ShardResult:
    prefix: str
    index: int
    name: str
    records: int
    problems: tuple[Problem, ...]


class StrictModeError(RuntimeError):
    """--strict: an image was missing, unreadable or not a plain JPEG."""


def write_shard(
    shard: ShardPlan, output_directory: str, strict: bool = False, on_problem=None
) -> ShardResult:
    """Writes `shard` to `<output_directory>/<prefix>-NNNNN-of-NNNNN`.

    Missing or unreadable images are left out and returned as problems; odd but readable
    ones (CMYK, PNG under a .jpg name) are re-encoded, written, and returned as problems.

    Args:
      on_problem: called with each problem as it is found (for metrics).

    Raises:
      StrictModeError: with `strict`, at the first image with any problem.
    """
    import tensorflow as tf

    fs, root = storage.resolve(output_directory)
    target = storage.join(root, shard.name)
    split = shard.prefix
    problems: list[Problem] = []
    written = 0
    local_tmp = _temporary_path(fs, root, shard.name)
    try:
        with tf.io.TFRecordWriter(local_tmp) as writer:
            for image in shard.images:
                checked, problem = _read_checked(image, split)
                if problem is not None:
                    if strict:
                        detail = f" ({problem.detail})" if problem.detail else ""
                        raise StrictModeError(f"{image.path}: {problem.problem}{detail} (--strict)")
                    problems.append(problem)
                    if on_problem:
                        on_problem(problem)
                if checked is None:
                    continue
                example = records.make_example(
                    image.image_id, checked.encoded, checked.height, checked.width, image.label
                )
                writer.write(example)
                written += 1
        _publish(fs, local_tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(local_tmp)
    return ShardResult(split, shard.index, shard.name, written, tuple(problems))


def _read_checked(
    image: PlannedImage, split: str
) -> tuple[images.CheckedImage | None, Problem | None]:
    """The checked image, or None, and the problem to report, if any."""
    try:
        with fsspec.open(image.path, "rb") as handle:
            checked = images.check_image(handle.read())
    except FileNotFoundError:
        return None, Problem(split, image.image_id, image.path, images.MISSING)
    except images.BadImageError as error:
        return None, Problem(split, image.image_id, image.path, images.UNREADABLE, str(error))
    if checked.reencoded:
        return checked, Problem(split, image.image_id, image.path, images.REENCODED)
    return checked, None


def _temporary_path(fs, root: str, name: str) -> str:
    """A local file to write into: beside the target when local, so the rename is atomic."""
    suffix = f".{name}.{uuid.uuid4().hex[:8]}.tmp"
    if storage.is_local(fs):
        fs.makedirs(root, exist_ok=True)
        return os.path.join(root, suffix)
    return os.path.join(tempfile.gettempdir(), suffix.lstrip("."))


def _publish(fs, local_tmp: str, target: str) -> None:
    if storage.is_local(fs):
        os.replace(local_tmp, target)
    else:
        fs.put_file(local_tmp, target)
