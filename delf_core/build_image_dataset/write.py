"""Writing one planned shard: read, check and frame each image, then publish the file whole."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
import uuid
from collections.abc import Callable

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
    """--strict: an image was missing, unreadable, too large or not a plain JPEG."""


def strict_error(problem: Problem) -> StrictModeError:
    """The one-line error of --strict for `problem`, the same when planning or writing."""
    detail = f" ({problem.detail})" if problem.detail else ""
    return StrictModeError(
        f"{problem.path or problem.image_id}: {problem.problem}{detail} (--strict)"
    )


def write_shard(
    shard: ShardPlan,
    output_directory: str,
    strict: bool = False,
    on_problem=None,
    max_image_pixels: int = images.DEFAULT_MAX_PIXELS,
    on_image: Callable[[], None] | None = None,
) -> ShardResult:
    """Writes `shard` to `<output_directory>/<prefix>-NNNNN-of-NNNNN`.

    Missing, unreadable and too large images are left out and returned as problems; odd
    but readable ones (CMYK, PNG under a .jpg name) are re-encoded, written, and
    returned as problems.

    Args:
      on_problem: called with each problem as it is found (for metrics).
      max_image_pixels: images whose header claims more pixels are left out undecoded.
      on_image: called after each image, written or left out (for progress).

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
                checked, problem = _read_checked(image, split, max_image_pixels)
                if problem is not None:
                    if strict:
                        raise strict_error(problem)
                    problems.append(problem)
                    if on_problem:
                        on_problem(problem)
                if checked is not None:
                    example = records.make_example(
                        image.image_id, checked.encoded, checked.height, checked.width, image.label
                    )
                    writer.write(example)
                    written += 1
                if on_image:
                    on_image()
        _publish(fs, local_tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(local_tmp)
    return ShardResult(split, shard.index, shard.name, written, tuple(problems))


def _read_checked(
    image: PlannedImage, split: str, max_image_pixels: int
) -> tuple[images.CheckedImage | None, Problem | None]:
    """The checked image, or None, and the problem to report, if any."""
    try:
        with fsspec.open(image.path, "rb") as handle:
            checked = images.check_image(handle.read(), max_image_pixels)
    except FileNotFoundError:
        return None, Problem(split, image.image_id, image.path, images.MISSING)
    except (PermissionError, IsADirectoryError) as error:
        detail = f"cannot read the file: {error.strerror}"
        return None, Problem(split, image.image_id, image.path, images.UNREADABLE, detail)
    except images.ImageTooLargeError as error:
        return None, Problem(split, image.image_id, image.path, images.TOO_LARGE, str(error))
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
        storage.durable_replace(local_tmp, target)
    else:  # an object appears only once its upload completes
        fs.put_file(local_tmp, target)
