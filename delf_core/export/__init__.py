"""SavedModel export of the multi-scale local and global feature extraction graphs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from delf_core.export.config import EXPORT_KINDS, ExportConfig
from delf_core.lazy import lazy_names

if TYPE_CHECKING:
    from delf_core.export.export import ExportExistsError, export_model
    from delf_core.export.restore import CheckpointMismatchError, restore_feature_model

# The names that need TensorFlow load on first use, so that the export flags (which
# import delf_core.export.config, and so this package) parse without it.
_LAZY = {
    "ExportExistsError": "delf_core.export.export",
    "export_model": "delf_core.export.export",
    "CheckpointMismatchError": "delf_core.export.restore",
    "restore_feature_model": "delf_core.export.restore",
}

__all__ = [
    "EXPORT_KINDS",
    "CheckpointMismatchError",
    "ExportConfig",
    "ExportExistsError",
    "export_model",
    "restore_feature_model",
]


__getattr__ = lazy_names(__name__, _LAZY)
