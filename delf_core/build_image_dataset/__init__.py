"""The `build_image_dataset` step: GLDv2 images to sharded TFRecords, planned then written."""

from delf_core.build_image_dataset.config import BuildConfig
from delf_core.build_image_dataset.plan import BuildPlan, PlannedImage, ShardPlan, plan_build
from delf_core.build_image_dataset.report import (
    MANIFEST_NAME,
    REPORT_NAME,
    finalize,
    up_to_date_manifest,
    write_context,
)
from delf_core.build_image_dataset.write import ShardResult, write_shard

__all__ = [
    "MANIFEST_NAME",
    "REPORT_NAME",
    "BuildConfig",
    "BuildPlan",
    "PlannedImage",
    "ShardPlan",
    "ShardResult",
    "finalize",
    "plan_build",
    "up_to_date_manifest",
    "write_context",
    "write_shard",
]
