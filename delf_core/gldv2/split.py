"""The per-class train/validation split and the record order, as pure functions of the seed."""

from __future__ import annotations

import hashlib

import numpy as np


def validation_cutoff(num_images: int, validation_split_size: float) -> int:
    """Validation images of a class: max(1, int(size * n)), as the original."""
    return max(1, int(validation_split_size * num_images))


def split_class(
    image_ids: list[str], label: int, seed: int, validation_split_size: float
) -> tuple[list[str], list[str]]:
    """(train ids, validation ids) of one class.

    The result depends only on the seed, the class and its set of ids, never on the
    order images were found in or on how the work is spread over workers.
    """
    ordered = sorted(image_ids)
    rng = np.random.default_rng(int.from_bytes(_digest(f"{seed}/class/{label}"), "big"))
    shuffled = [ordered[i] for i in rng.permutation(len(ordered))]
    cutoff = validation_cutoff(len(shuffled), validation_split_size)
    return shuffled[cutoff:], shuffled[:cutoff]


def order_key(seed: int, image_id: str) -> bytes:
    """A pseudo-random sort key; sorting a split by it mixes the classes within every shard."""
    return _digest(f"{seed}/image/{image_id}")


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=8).digest()
