"""The `build_image_dataset` step: GLDv2 images to sharded TFRecords, planned then written."""

from __future__ import annotations

from typing import TYPE_CHECKING

from delf_core.build_image_dataset.config import BuildConfig
from delf_core.lazy import lazy_names

if TYPE_CHECKING:
    from delf_core.build_image_dataset.plan import (
        BuildPlan,
        PlannedImage,
        ShardPlan,
        build_fingerprint,
        plan_build,
    )
    from delf_core.build_image_dataset.report import (
        MANIFEST_NAME,
        REPORT_NAME,
        finalize,
        up_to_date_manifest,
        write_context,
    )
    from delf_core.build_image_dataset.write import ShardResult, write_shard

_PLAN = "delf_core.build_image_dataset.plan"
_REPORT = "delf_core.build_image_dataset.report"
_WRITE = "delf_core.build_image_dataset.write"
# Planning reads the CSVs with pandas, a second to import: loaded on first use, so that
# the build's flags (delf_cli imports the config, and so this package) parse without it.
__getattr__ = lazy_names(
    __name__,
    {
        "BuildPlan": _PLAN,
        "PlannedImage": _PLAN,
        "ShardPlan": _PLAN,
        "plan_build": _PLAN,
        "build_fingerprint": _PLAN,
        "MANIFEST_NAME": _REPORT,
        "REPORT_NAME": _REPORT,
        "finalize": _REPORT,
        "up_to_date_manifest": _REPORT,
        "write_context": _REPORT,
        "ShardResult": _WRITE,
        "write_shard": _WRITE,
    },
)

__all__ = [
    "MANIFEST_NAME",
    "REPORT_NAME",
    "BuildConfig",
    "BuildPlan",
    "PlannedImage",
    "ShardPlan",
    "ShardResult",
    "build_fingerprint",
    "finalize",
    "plan_build",
    "up_to_date_manifest",
    "write_context",
    "write_shard",
]
