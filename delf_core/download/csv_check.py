"""Checking a downloaded CSV before it is put in place: UTF-8, the header, every row's width."""

from __future__ import annotations

import csv
import io
from typing import BinaryIO

# A train_clean.csv row lists every image of a landmark in one field, beyond the csv
# module's default limit of 128 KiB; raising the limit only allows more.
_FIELD_LIMIT = 2**31 - 1


def check_csv(handle: BinaryIO, name: str, columns: tuple[str, ...]) -> int:
    """Reads the whole CSV as a stream and returns its number of data rows.

    Args:
      handle: the file, opened for binary reading.
      name: names the file in messages.
      columns: the header it must have; every row must have as many fields.

    Raises:
      ValueError: one line naming the file, the row when one is wrong, and what is wrong.
    """
    if csv.field_size_limit() < _FIELD_LIMIT:
        csv.field_size_limit(_FIELD_LIMIT)
    text = io.TextIOWrapper(handle, encoding="utf-8-sig", newline="")
    reader = csv.reader(text)
    expected = ",".join(columns)
    rows = 0
    try:
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{name}: empty file; expected the header {expected}")
        if tuple(field.strip() for field in header) != columns:
            got = ",".join(header)[:120]
            raise ValueError(f"{name}: header is {got!r}, expected {expected!r}")
        for row in reader:
            if not row:
                continue  # a blank line, which CSV readers skip
            rows += 1
            if len(row) != len(columns):
                raise ValueError(
                    f"{name}: line {reader.line_num} has {len(row)} fields, expected "
                    f"{len(columns)} ({expected})"
                )
    except UnicodeDecodeError:
        raise ValueError(f"{name}: not UTF-8 text after line {reader.line_num}") from None
    except csv.Error as error:
        raise ValueError(f"{name}: line {reader.line_num} is not CSV: {error}") from None
    finally:
        text.detach()  # the caller owns the handle
    return rows
