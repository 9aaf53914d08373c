"""The gldv2 flow's parameters: pydantic models, so the UI shows a form and bad values fail early.

Each model is one group of the Prefect UI's run form and one `--param` of
`prefect deployment run gldv2/<name>` (`--param train='{"max_iters": 2}'`). The download,
build and train groups are made from their steps' configs (DownloadConfig, BuildConfig,
TrainConfig), whose declarations give each field's default, bounds and help; the flow
sets the paths under its output root.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from pydantic import Field, field_validator, model_validator

from beam_jobs.options import DASK_RUNNER, LOCAL_RUNNER, RUNNERS, check_runner, is_dask
from delf_core import step_config, storage
from delf_core.build_image_dataset.config import BuildConfig
from delf_core.download.config import DownloadConfig
from delf_core.export.config import EXPORT_KINDS
from delf_core.gldv2 import layout
from delf_core.training.cluster_config import ClusterConfig
from delf_core.training.config import TrainConfig
from flows.evaluation_configs import (
    DELG_SCORE_THRESHOLD,
    SEED_SCORE_THRESHOLD,
    CheckModelConfig,
    DelgExtraction,
    PerformRetrievalConfig,
)
from flows.step_params import FlowParams, StepParams, step_params

# Where each step writes, under the flow's output root: the seed README's names.
DATASET_DIR = layout.DEFAULT_DATASET_DIR
TFRECORD_DIR = f"{DATASET_DIR}/tfrecord"
TRAINING_DIR = "gldv2_training"
MINI_MIRROR_DIR = "mini_mirror"

ExportKind = Literal["local", "global", "local_and_global"]
assert set(EXPORT_KINDS) == {"local", "global", "local_and_global"}


class DownloadFlowOptions(FlowParams):
    """Where the flow downloads from and on what it fans out, besides the step's flags."""

    mini_mirror: bool = Field(
        False,
        description="make the mini dataset under the output root and download it from a "
        "mirror on 127.0.0.1 instead of base_url (no network needed)",
    )
    use_dask: bool = Field(False, description="spread the tars over a Dask cluster")
    dask_address: str | None = Field(
        None, description="the Dask scheduler (tcp://host:8786); none starts a local cluster"
    )


DownloadParams = step_params(
    "DownloadParams",
    DownloadConfig,
    "Which GLDv2 tars to fetch (all by default), from where, and how many at once.",
    base=DownloadFlowOptions,
    defaults={f"num_{split}": count for split, count in layout.MAX_TARS.items()},
)


class BuildFlowOptions(FlowParams):
    """The Beam runner of the build, besides the step's flags."""

    runner: str = Field(
        LOCAL_RUNNER,
        description=f"one of {', '.join(RUNNERS)}: FnApiRunner locally, DaskRunner on a "
        "Dask cluster, DataflowRunner in GCP",
    )
    dask_address: str | None = Field(
        None,
        description=f"{DASK_RUNNER} only: the Dask scheduler (tcp://host:8786), whose "
        "workers have this package installed; none starts a local cluster for the build",
    )
    pipeline_options: list[str] = Field(
        default_factory=list, description="Beam flags, e.g. --project=... --region=..."
    )

    @field_validator("runner")
    @classmethod
    def _known_runner(cls, runner: str) -> str:
        return check_runner(runner)

    @model_validator(mode="after")
    def _address_needs_dask(self) -> BuildFlowOptions:
        if self.dask_address is not None and not is_dask(self.runner):
            raise ValueError(f"dask_address is for runner {DASK_RUNNER}, not {self.runner}")
        return self

    def beam_options(self) -> list[str]:
        """The Beam flags besides the runner: the Dask scheduler's, then pipeline_options."""
        address = (
            [] if self.dask_address is None else [f"--dask_client_address={self.dask_address}"]
        )
        return [*address, *self.pipeline_options]


BuildParams = step_params(
    "BuildParams",
    BuildConfig,
    "The TFRecord build (build_image_dataset) of the clean subset, on a Beam runner.",
    base=BuildFlowOptions,
    # The seed README's command: a per-class validation split.
    defaults={"generate_train_validation_splits": True},
)

TrainClusterParams = step_params(
    "TrainClusterParams",
    ClusterConfig,
    "Where training runs: in the flow's process, or on N TF workers on a Dask cluster.",
)

TrainParams = step_params(
    "TrainParams",
    TrainConfig,
    "The train step's flags; the flow sets the logdir and the TFRecord patterns. "
    "dask_address or num_workers: one training on several TF workers on Dask.",
    base=TrainClusterParams,
    # The seed README's command trains on the clean subset.
    defaults={"dataset_version": "gld_v2_clean"},
)


def train_cluster(train: StepParams) -> ClusterConfig:
    """Where `train` runs its workers (ClusterConfig), checked.

    Raises:
      ValueError: naming a bad value (an address that is not tcp://host:port).
    """
    names = {o.name for o in step_config.options(ClusterConfig)}
    values = {k: v for k, v in train.model_dump().items() if k in names}
    cluster = step_config.build(ClusterConfig, values)
    cluster.validate()
    return cluster


def train_config(train: StepParams, output_root: str) -> TrainConfig:
    """The TrainConfig of this run, reading the shards built under `output_root`."""
    tfrecords = storage.join(output_root, TFRECORD_DIR)
    return train.to_config(
        logdir=storage.join(output_root, TRAINING_DIR),
        train_file_pattern=storage.join(tfrecords, "train*"),
        validation_file_pattern=storage.join(tfrecords, "validation*"),
    )


class EvaluateParams(FlowParams):
    """Which exports and evaluations follow training."""

    check_model: bool = Field(
        True, description="export, extract the test pair and match it (the seed's test)"
    )
    pair: tuple[str, str] | None = Field(
        None, description="two images of one landmark; none picks two downloaded ones"
    )
    score_threshold: float = Field(
        SEED_SCORE_THRESHOLD, description="attention threshold of the test's DelfConfig"
    )
    exports: list[ExportKind] = Field(
        default_factory=list, description="exports besides the tested one"
    )
    retrieval: bool = Field(
        True, description="DELG only: test queries against the index, metrics.txt"
    )
    use_geometric_verification: bool = Field(
        PerformRetrievalConfig.use_geometric_verification,
        description="re-rank the top 100 by RANSAC inliers too (metrics.txt then also "
        "holds the *_after_gv protocols)",
    )
    retrieval_score_threshold: float = Field(
        DELG_SCORE_THRESHOLD, description="attention threshold of the DELG DelfConfig"
    )
    retrieval_image_scales: list[float] | None = Field(
        None, description="the pyramid for retrieval; none: the DELG configs' seven scales"
    )
    retrieval_global_scales_ind: list[int] | None = Field(
        None, description="scales the global descriptor pools; none: the configs' (or all)"
    )
    index_runner: str | None = Field(
        None,
        description="none extracts the retrieval index in the flow's process; "
        f"{', '.join(RUNNERS)} run the extract_features Beam job on it instead",
    )
    index_pipeline_options: list[str] = Field(
        default_factory=list,
        description="the index job's Beam flags, e.g. --dask_client_address=tcp://host:8786",
    )

    @field_validator("index_runner")
    @classmethod
    def _known_index_runner(cls, runner: str | None) -> str | None:
        return None if runner is None else check_runner(runner)

    @model_validator(mode="after")
    def _scales_fit(self) -> EvaluateParams:
        if self.retrieval_global_scales_ind is not None:
            count = len(self.retrieval_image_scales or DelgExtraction().image_scales)
            bad = [i for i in self.retrieval_global_scales_ind if not 0 <= i < count]
            if bad:
                raise ValueError(f"retrieval_global_scales_ind {bad}: only {count} scales")
        return self

    def check_model_config(self) -> CheckModelConfig:
        return CheckModelConfig(
            pair=self.pair, score_threshold=self.score_threshold, exports=tuple(self.exports)
        )

    def perform_retrieval_config(self) -> PerformRetrievalConfig:
        extraction = DelgExtraction(score_threshold=self.retrieval_score_threshold)
        if self.retrieval_image_scales is not None:
            scales = tuple(self.retrieval_image_scales)
            extraction = dataclasses.replace(
                extraction, image_scales=scales, global_scales_ind=tuple(range(len(scales)))
            )
        if self.retrieval_global_scales_ind is not None:
            extraction = dataclasses.replace(
                extraction, global_scales_ind=tuple(self.retrieval_global_scales_ind)
            )
        return PerformRetrievalConfig(
            use_geometric_verification=self.use_geometric_verification,
            extraction=extraction,
            index_runner=self.index_runner,
            index_pipeline_options=tuple(self.index_pipeline_options),
        )
