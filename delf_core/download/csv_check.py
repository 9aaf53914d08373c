"""Checking a downloaded CSV before it is put in place: UTF-8, the header, every row's width."""

from __future__ import annotations

import csv
import io
from typing import BinaryIO

from delf_core.gldv2.layout import allow_long_csv_fields


def check_csv(handle: BinaryIO, name: str, columns: tuple[str, ...]) -> int:
    """Reads the whole CSV as a stream and returns its number of data rows.

    Args:
      handle: the file, opened for binary reading.
      name: names the file in messages.
      columns: the header it must have; every row must have as many fields.

    Raises:
      ValueError: one line naming the file, the row when one is wrong, and what is wrong.
    """
    allow_long_csv_fields()
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
