"""absl-style flags on argparse: `--name=value`, `--name value`, `--flag`/`--noflag`.

Shared by the `delf` command and the `python -m beam_jobs...` entry points; it parses
only the argv it is given.
"""

from __future__ import annotations

import argparse
from typing import Any

_TRUE = {"true", "t", "1", "yes", "y"}
_FALSE = {"false", "f", "0", "no", "n"}


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_flag(
    parser: argparse.ArgumentParser,
    name: str,
    default: Any,
    help: str,
    type: Any = str,
    choices: Any = None,
) -> None:
    """A valued flag; the help text ends with its default."""
    parser.add_argument(
        f"--{name}",
        dest=name,
        type=type,
        default=default,
        choices=choices,
        metavar=name.upper(),
        help=f"{help} (default: {default!r})",
    )


def add_bool_flag(parser: argparse.ArgumentParser, name: str, default: bool, help: str) -> None:
    """`--name`, `--noname` and `--name=true|false`, as absl booleans accept.

    A boolean never takes the next word as its value (absl does not either), so
    `--delete_tars 5 1 1` leaves the numbers to the positional arguments.
    """
    parser.add_argument(
        f"--{name}",
        dest=name,
        action="store_true",
        default=default,
        help=f"{help} (default: {default}; --no{name} turns it off)",
    )
    parser.add_argument(f"--no{name}", dest=name, action="store_false", help=argparse.SUPPRESS)
    _bool_flags(parser).add(name)


def _bool_flags(parser: argparse.ArgumentParser) -> set[str]:
    if not hasattr(parser, "_delf_bool_flags"):
        parser._delf_bool_flags = set()  # type: ignore[attr-defined]
    return parser._delf_bool_flags  # type: ignore[attr-defined]


def normalize_bool_values(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """Rewrites `--flag=true` to `--flag` and `--flag=false` to `--noflag`."""
    names = _bool_flags(parser)
    out = []
    for arg in argv:
        name, sep, value = arg[2:].partition("=")
        if arg.startswith("--") and sep and name in names:
            try:
                arg = f"--{name}" if parse_bool(value) else f"--no{name}"
            except argparse.ArgumentTypeError as error:
                parser.error(f"argument --{name}: {error}")
        out.append(arg)
    return out


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text}")
    return value
