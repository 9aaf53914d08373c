"""absl-style flags on argparse: `--name=value`, `--name value`, `--flag`/`--noflag`.

A step's flags are made from its config's declared options (delf_core.step_config):
`add_options` declares them, `option_values` reads them back for `step_config.build`.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping
from typing import Any

from delf_core import step_config
from delf_core.step_config import MISSING, Option, options

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


def _bool_flags(parser: argparse.ArgumentParser) -> set[str]:
    """The names of the parser's `--name`/`--noname` pairs, argument groups' included."""
    flags = parser._option_string_actions  # groups share their parser's table
    return {
        option[2:]
        for option, action in flags.items()
        if isinstance(action, argparse._StoreTrueAction)
        and isinstance(flags.get(f"--no{option[2:]}"), argparse._StoreFalseAction)
    }


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


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text}")
    return value


def _argument_type(found: Option):
    # Bounds are checked on the whole config (step_config.check), as the flow does.
    def parse(text: str) -> Any:
        try:
            return found.parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    parse.__name__ = found.kind.__name__  # argparse names the type in its errors
    return parse


def _shown(found: Option, value: Any) -> Any:
    return ",".join(map(str, value)) if found.sequence and value else value


def add_options(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    config_cls: type,
    *,
    only: Iterable[str] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> None:
    """The flags of `config_cls`'s options (those with `cli`), or of the `only` ones.

    `defaults` replaces declared defaults, for commands that share a config but not its
    defaults (the export scripts). Values are parsed here; `build_config` checks bounds.
    """
    wanted = None if only is None else set(only)
    defaults = defaults or {}
    groups: dict[str, argparse._ArgumentGroup] = {}
    for found in options(config_cls):
        if not found.spec.cli or (wanted is not None and found.name not in wanted):
            continue
        default = defaults.get(found.name, found.default)
        target = parser
        if found.spec.group is not None:
            if found.spec.group not in groups:
                groups[found.spec.group] = parser.add_argument_group(found.spec.group)
            target = groups[found.spec.group]
        if found.spec.positional:
            target.add_argument(
                found.name,
                type=_argument_type(found),
                metavar=found.name.upper(),
                help=found.spec.help,
            )
        elif found.kind is bool:
            add_bool_flag(target, found.name, default, found.spec.help)
        else:
            if default is MISSING:
                raise TypeError(f"{config_cls.__name__}.{found.name}: a flag needs a default")
            target.add_argument(
                f"--{found.name}",
                dest=found.name,
                type=_argument_type(found),
                default=default,
                choices=None if found.sequence else found.spec.choices,
                metavar=found.name.upper(),
                help=f"{found.spec.help} (default: {_shown(found, default)!r})",
            )
        for alias in found.spec.aliases:
            target.add_argument(
                f"--{alias}", dest=found.name, type=_argument_type(found), help=argparse.SUPPRESS
            )


def option_values(args: argparse.Namespace, config_cls: type) -> dict[str, Any]:
    """The parsed values of `config_cls`'s flags, by option name."""
    parsed = vars(args)
    return {o.name: parsed[o.name] for o in options(config_cls) if o.name in parsed}


def build_config(args: argparse.Namespace, config_cls: type, **fields: Any) -> Any:
    """The config of the parsed flags (and `fields`), its options' bounds checked.

    Raises:
      ValueError: naming the first flag out of bounds (`--name=value: must be ...`).
    """
    config = step_config.build(config_cls, option_values(args, config_cls), **fields)
    step_config.check(config)
    return config
