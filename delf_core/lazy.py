"""Package names that load their module on first use.

A step's config module sits in the step's package, so importing it runs the package's
`__init__`; names there that need TensorFlow or pandas load when first used instead,
and `delf <step> --help` stays fast.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping


def lazy_names(package: str, modules: Mapping[str, str]) -> Callable[[str], object]:
    """A module `__getattr__` that imports `modules[name]` and returns its `name`."""

    def __getattr__(name: str) -> object:
        if name not in modules:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(modules[name]), name)

    return __getattr__
