"""SavedModel export of the multi-scale local and global feature extraction graphs."""

from delf_core.export.config import EXPORT_KINDS, ExportConfig
from delf_core.export.export import ExportExistsError, export_model
from delf_core.export.restore import CheckpointMismatchError, restore_feature_model

__all__ = [
    "EXPORT_KINDS",
    "CheckpointMismatchError",
    "ExportConfig",
    "ExportExistsError",
    "export_model",
    "restore_feature_model",
]
