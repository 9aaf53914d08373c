"""A step's config declares each of its fields once: seed flag name, default, help, bounds.

The `delf <step>` flags (delf_cli) and the flow's parameters (flows) are made from these
declarations, so a default or a bound is written in one place. A config is a frozen
dataclass; a field declared with `option(...)` is a flag and a flow parameter, a field
declared with `nested(...)` holds another such config whose options count as its own
(flat: `--retries`, not `--retry.retries`), and a plain field is internal.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

_KEY = "delf_option"
MISSING = dataclasses.MISSING


@dataclasses.dataclass(frozen=True)
class OptionSpec:
    """What a config field's declaration says besides its type and default.

    Attributes:
      help: One line for `--help`, the flow form and the docs.
      minimum, maximum: Inclusive bounds.
      above, below: Exclusive bounds.
      choices: The only values allowed.
      positional: A positional argument of the command (in declaration order).
      aliases: Older flag names, still accepted, not shown.
      group: The heading the flag is listed under in `--help`.
      cli: A flag of `delf <step>`.
      flow: A parameter of the flow; False where the flow sets it itself (the paths
        under its output root).
    """

    help: str
    minimum: float | None = None
    maximum: float | None = None
    above: float | None = None
    below: float | None = None
    choices: tuple[Any, ...] | None = None
    positional: bool = False
    aliases: tuple[str, ...] = ()
    group: str | None = None
    cli: bool = True
    flow: bool = True


def option(default: Any = MISSING, help: str = "", **spec: Any) -> Any:
    """A config field that is a flag and a flow parameter; see OptionSpec for `spec`."""
    return dataclasses.field(default=default, metadata={_KEY: OptionSpec(help, **spec)})


def same_as(config_cls: type, name: str) -> Any:
    """A field declared as `config_cls`'s option `name`: same default, help and bounds.

    For steps that share a flag (train and export share the model's structure), so
    that it is declared once.
    """
    field = config_cls.__dataclass_fields__[name]
    return dataclasses.field(default=field.default, metadata=field.metadata)


def nested(config_cls: type) -> Any:
    """A field holding another config, whose options are flat options of this one."""
    return dataclasses.field(default_factory=config_cls, metadata={_KEY: None})


@dataclasses.dataclass(frozen=True)
class Option:
    """One declared field, resolved: its name, value type and default.

    Attributes:
      name: The field's name, which is also the flag's and the parameter's.
      kind: bool, int, float or str: the type of one value.
      optional: None is allowed (the field's type is `X | None`).
      sequence: A tuple of `kind` values (`--flag=1,2,3` on the command line).
      default: The declared default; MISSING for a required field.
      spec: The rest of the declaration.
      owner: The path of nested fields that holds it (empty: the config itself).
    """

    name: str
    kind: type
    optional: bool
    sequence: bool
    default: Any
    spec: OptionSpec
    owner: tuple[str, ...] = ()

    @property
    def required(self) -> bool:
        return self.default is MISSING

    def parse(self, text: str) -> Any:
        """A value from its command-line text; raises ValueError saying what is expected."""
        if self.sequence:
            parts = [part.strip() for part in text.split(",") if part.strip()]
            return tuple(_parse_one(self.kind, part) for part in parts)
        return _parse_one(self.kind, text)

    def problem(self, value: Any) -> str | None:
        """Why `value` is not allowed, or None."""
        if value is None:
            return None if self.optional else "must be set"
        for one in value if self.sequence else (value,):
            found = _problem(self.spec, one)
            if found:
                return found
        return None


def _parse_one(kind: type, text: str) -> Any:
    if kind is int:
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"expected an integer, got {text!r}") from None
    if kind is float:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"expected a number, got {text!r}") from None
    return text


def _problem(spec: OptionSpec, value: Any) -> str | None:
    if spec.choices is not None and value not in spec.choices:
        return "must be one of " + ", ".join(str(choice) for choice in spec.choices)
    if spec.minimum is not None and not value >= spec.minimum:
        return f"must be at least {spec.minimum:g}"
    if spec.maximum is not None and not value <= spec.maximum:
        return f"must be at most {spec.maximum:g}"
    if spec.above is not None and not value > spec.above:
        return f"must be more than {spec.above:g}"
    if spec.below is not None and not value < spec.below:
        return f"must be less than {spec.below:g}"
    return None


def _value_type(hint: Any) -> tuple[type, bool, bool]:
    """(kind, optional, sequence) of a field's type hint."""
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        (hint,) = args
    sequence = typing.get_origin(hint) is tuple
    if sequence:
        hint = typing.get_args(hint)[0]
    if hint not in (bool, int, float, str):
        raise TypeError(f"an option must hold bool, int, float or str values, not {hint}")
    return hint, optional, sequence


@functools.cache
def options(config_cls: type) -> tuple[Option, ...]:
    """The declared options of a config class, nested configs' included, in order."""
    hints = typing.get_type_hints(config_cls)
    found: list[Option] = []
    for field in dataclasses.fields(config_cls):
        if _KEY not in field.metadata:
            continue
        spec = field.metadata[_KEY]
        if spec is None:  # nested
            found += [
                dataclasses.replace(inner, owner=(field.name, *inner.owner))
                for inner in options(hints[field.name])
            ]
            continue
        kind, optional, sequence = _value_type(hints[field.name])
        found.append(Option(field.name, kind, optional, sequence, field.default, spec))
    names = [o.name for o in found]
    if len(set(names)) != len(names):
        raise TypeError(f"{config_cls.__name__}: two options share a name in {names}")
    return tuple(found)


def build(config_cls: type, values: Mapping[str, Any], **fields: Any) -> Any:
    """A config from flat option values (by name) and other fields; defaults fill the rest.

    Values of nested configs' options build the nested configs. Unknown names raise
    TypeError, as the constructor would.
    """
    known = {o.name: o for o in options(config_cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise TypeError(f"{config_cls.__name__} has no option {unknown}")
    own: dict[str, Any] = dict(fields)
    inner: dict[str, dict[str, Any]] = {}
    for name, value in values.items():
        owner = known[name].owner
        if owner:
            inner.setdefault(owner[0], {})[name] = value
        else:
            own[name] = value
    hints = typing.get_type_hints(config_cls)
    for field_name, inner_values in inner.items():
        own[field_name] = build(hints[field_name], inner_values)
    return config_cls(**own)


def flat_values(config: Any) -> dict[str, Any]:
    """The options' values of a config, nested ones included, by name."""
    values = {}
    for found in options(type(config)):
        holder = config
        for name in found.owner:
            holder = getattr(holder, name)
        values[found.name] = getattr(holder, found.name)
    return values


def check(config: Any, skip: Callable[[Option], bool] = lambda _: False) -> None:
    """Raises ValueError naming the first option whose value is out of bounds."""
    values = flat_values(config)
    for found in options(type(config)):
        if skip(found):
            continue
        value = values[found.name]
        problem = found.problem(value)
        if problem:
            shown = ",".join(map(str, value)) if found.sequence else value
            label = found.name.upper() if found.spec.positional else f"--{found.name}"
            raise ValueError(f"{label}={shown}: {problem}")
