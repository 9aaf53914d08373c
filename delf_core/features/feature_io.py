"""Local features as DelfFeatures messages: the .delf and .delg_local files (REFERENCE §6.5)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from google.protobuf import unknown_fields
from google.protobuf.message import DecodeError

from delf_core.features import _files, datum_io
from delf_core.features.protos import feature_pb2


class LocalFeatures(NamedTuple):
    """Local features of one image, all float32; unpacks in the original reader's order."""

    locations: np.ndarray  # [N, 2], (y, x) in pixels
    scales: np.ndarray  # [N]
    descriptors: np.ndarray  # [N, D]
    attention: np.ndarray  # [N]
    orientations: np.ndarray  # [N]


def features_to_proto(
    locations: np.ndarray,
    scales: np.ndarray,
    descriptors: np.ndarray,
    attention: np.ndarray,
    orientations: np.ndarray | None = None,
) -> feature_pb2.DelfFeatures:
    """Converts local features to a DelfFeatures message.

    Args:
      locations: [N, 2] (y, x) feature locations.
      scales: [N] feature scales.
      descriptors: [N, D] descriptors.
      attention: [N] (or [N, 1]) attention scores, stored as `strength`.
      orientations: [N] orientations; 0.0 for every feature when None.

    Returns:
      The message. Every float field is set explicitly, 0.0 included, so that it is
      serialized as the original writer does.

    Raises:
      ValueError: when the arrays disagree on N or have the wrong rank.
    """
    locations = np.asarray(locations, dtype=np.float32)
    if locations.ndim != 2 or locations.shape[1] != 2:
        raise ValueError(f"locations have shape {list(locations.shape)}, expected [N, 2]")
    n = locations.shape[0]
    scales = _vector("scales", scales, n)
    attention = _vector("attention", attention, n)
    orientations = (
        np.zeros(n, np.float32)
        if orientations is None
        else _vector("orientations", orientations, n)
    )
    descriptors = np.asarray(descriptors)
    if n == 0 and descriptors.size == 0:
        descriptors = descriptors.reshape(0, 0)
    if descriptors.ndim != 2 or descriptors.shape[0] != n:
        raise ValueError(
            f"descriptors have shape {list(descriptors.shape)}, expected [{n}, D] "
            f"to match {n} locations"
        )

    message = feature_pb2.DelfFeatures()
    for i in range(n):
        feature = message.feature.add()
        feature.y = locations[i, 0]
        feature.x = locations[i, 1]
        feature.scale = scales[i]
        feature.orientation = orientations[i]
        feature.strength = attention[i]
        feature.descriptor.CopyFrom(datum_io.array_to_datum(descriptors[i]))
    return message


def proto_to_features(message: feature_pb2.DelfFeatures) -> LocalFeatures:
    """Converts a DelfFeatures message to arrays.

    Args:
      message: the message.

    Returns:
      LocalFeatures of float32 arrays; with no features, arrays of length 0 and
      descriptors of shape [0, 0].

    Raises:
      ValueError: when a feature has no descriptor, the descriptors differ in size, or
        a value is NaN or infinite.
    """
    n = len(message.feature)
    locations = np.empty((n, 2), np.float32)
    scales = np.empty(n, np.float32)
    attention = np.empty(n, np.float32)
    orientations = np.empty(n, np.float32)
    rows = []
    for i, feature in enumerate(message.feature):
        if not feature.HasField("descriptor"):
            raise ValueError(f"feature {i} has no descriptor")
        locations[i] = (feature.y, feature.x)
        scales[i] = feature.scale
        attention[i] = feature.strength
        orientations[i] = feature.orientation
        rows.append(datum_io.datum_to_array(feature.descriptor).astype(np.float32).ravel())
    if rows and any(row.size != rows[0].size for row in rows):
        sizes = sorted({row.size for row in rows})
        raise ValueError(f"descriptors differ in size: {sizes}")
    descriptors = np.stack(rows) if rows else np.zeros((0, 0), np.float32)
    features = LocalFeatures(locations, scales, descriptors, attention, orientations)
    # No writer stores NaN or infinity: such values mean damaged bytes that happened to
    # parse, and would otherwise become silent nonsense in matching.
    for name, values in zip(LocalFeatures._fields, features, strict=True):
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{name} hold values that are not finite (a damaged file?)")
    return features


def serialize_to_string(
    locations: np.ndarray,
    scales: np.ndarray,
    descriptors: np.ndarray,
    attention: np.ndarray,
    orientations: np.ndarray | None = None,
) -> bytes:
    """The bytes of a .delf file for these features (arguments as `features_to_proto`)."""
    return features_to_proto(
        locations, scales, descriptors, attention, orientations
    ).SerializeToString()


def parse_from_string(data: bytes) -> LocalFeatures:
    """The features held by the bytes of a .delf file.

    Raises:
      ValueError: when the bytes are not a DelfFeatures message.
    """
    message = feature_pb2.DelfFeatures()
    try:
        message.ParseFromString(data)
    except DecodeError as err:
        raise ValueError(f"not a serialized DelfFeatures message ({err})") from err
    # Arbitrary bytes can parse as a message made only of unknown fields; a real file
    # has nothing but `feature` entries at the top level.
    unknown = unknown_fields.UnknownFieldSet(message)
    if len(unknown):
        raise ValueError(
            f"not a serialized DelfFeatures message (unknown field {unknown[0].field_number})"
        )
    return proto_to_features(message)


def write_to_file(
    path: str,
    locations: np.ndarray,
    scales: np.ndarray,
    descriptors: np.ndarray,
    attention: np.ndarray,
    orientations: np.ndarray | None = None,
) -> None:
    """Writes a .delf / .delg_local file; it appears whole or not at all.

    Args:
      path: local path or URL.
      locations: [N, 2] (y, x) feature locations.
      scales: [N] feature scales.
      descriptors: [N, D] descriptors.
      attention: [N] attention scores.
      orientations: [N] orientations; 0.0 for every feature when None.

    Raises:
      ValueError: when the arrays disagree on N or have the wrong rank.
    """
    _files.write_bytes(
        path, serialize_to_string(locations, scales, descriptors, attention, orientations)
    )


def read_from_file(path: str) -> LocalFeatures:
    """Reads a .delf / .delg_local file.

    Args:
      path: local path or URL.

    Returns:
      LocalFeatures(locations, scales, descriptors, attention, orientations).

    Raises:
      ValueError: naming `path` when the file is not a DelfFeatures message.
    """
    return _files.read_parsed(path, parse_from_string)


def _vector(name: str, values: np.ndarray, n: int) -> np.ndarray:
    values = np.asarray(values, dtype=np.float32)
    # Models emit scores as [N, 1]; accept that shape as well as [N].
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.shape != (n,):
        raise ValueError(
            f"{name} have shape {list(values.shape)}, expected [{n}] to match {n} locations"
        )
    return values
