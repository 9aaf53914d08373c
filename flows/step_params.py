"""Flow parameters made from a step's config: a pydantic model per config, for the UI form.

Each option of the config (delf_core.step_config) that the flow does not set itself
becomes a field with the option's default, bounds, choices and help, so a field added
to a step's config shows up in the flow, the deployment form and `--param` without
more edits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from delf_core import step_config
from delf_core.step_config import MISSING, Option


class FlowParams(BaseModel):
    """A group of the flow's run form; frozen, so that a default instance may be shared."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class StepParams(FlowParams):
    """The parameters of one step: its config's options, besides what the flow sets."""

    step_config_class: ClassVar[type]
    # Where the flow's defaults differ from the command's (the seed README's command line).
    flow_defaults: ClassVar[dict[str, Any]] = {}

    def option_values(self) -> dict[str, Any]:
        """The values of the step config's options, by name."""
        names = {o.name for o in step_config.options(self.step_config_class)}
        return {k: v for k, v in self.model_dump().items() if k in names}

    def to_config(self, **set_by_flow: Any) -> Any:
        """The step's config: these values, and the fields the flow sets (its paths)."""
        return step_config.build(self.step_config_class, self.option_values(), **set_by_flow)


def _annotation(found: Option) -> Any:
    kind: Any = found.kind
    if found.spec.choices is not None:
        kind = Literal[tuple(found.spec.choices)]
    if found.sequence:
        kind = tuple[kind, ...]
    return kind | None if found.optional else kind


def _field(found: Option, default: Any) -> Any:
    spec = found.spec
    bounds = {
        "ge": spec.minimum,
        "le": spec.maximum,
        "gt": spec.above,
        "lt": spec.below,
    }
    scalar_bounds = {} if found.sequence else {k: v for k, v in bounds.items() if v is not None}
    if default is MISSING:
        return Field(description=spec.help, **scalar_bounds)
    return Field(default, description=spec.help, **scalar_bounds)


def step_params(
    name: str,
    config_cls: type,
    doc: str,
    *,
    base: type[FlowParams] = FlowParams,
    defaults: Mapping[str, Any] | None = None,
) -> type[StepParams]:
    """A pydantic model of `config_cls`'s options that have `flow` set.

    Args:
      name: The model's name.
      config_cls: The step's config class.
      doc: What the group is, shown in the UI.
      base: A model with the flow's own fields for the step (runner, Dask, ...).
      defaults: The flow's defaults where they differ from the command's (the seed
        README's command line, e.g. the clean dataset version).
    """
    defaults = defaults or {}
    unknown = sorted(set(defaults) - {o.name for o in step_config.options(config_cls)})
    if unknown:
        raise TypeError(f"{config_cls.__name__} has no option {unknown}")
    fields = {
        found.name: (_annotation(found), _field(found, defaults.get(found.name, found.default)))
        for found in step_config.options(config_cls)
        if found.spec.flow
    }
    bases = (StepParams,) if base is FlowParams else (base, StepParams)
    model = create_model(name, __base__=bases, __doc__=doc, **fields)
    model.step_config_class = config_cls
    model.flow_defaults = dict(defaults)
    return model
