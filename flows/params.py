"""The gldv2 flow's parameters: pydantic models, so the UI shows a form and bad values fail early.

Each model is one group of the Prefect UI's run form and one `--param` of
`prefect deployment run gldv2/<name>` (`--param train='{"max_iters": 2}'`). They map onto
the configs of the steps (DownloadConfig, BuildConfig, TrainConfig, ModelCheck,
RetrievalCheck), which stay plain dataclasses usable without Prefect.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from delf_core import storage
from delf_core.export.config import EXPORT_KINDS
from delf_core.gldv2 import layout
from delf_core.training.config import DATASET_VERSIONS, TrainConfig
from flows.check_model import ModelCheck
from flows.extract_dataset import DELG_SCORE_THRESHOLD, DelgExtraction
from flows.extract_features import SEED_SCORE_THRESHOLD
from flows.perform_retrieval import RetrievalCheck

# Where each step writes, under the flow's output root: the seed README's names.
DATASET_DIR = "gldv2_dataset"
TFRECORD_DIR = "gldv2_dataset/tfrecord"
TRAINING_DIR = "gldv2_training"
MINI_MIRROR_DIR = "mini_mirror"

ExportKind = Literal["local", "global", "local_and_global"]
assert set(EXPORT_KINDS) == {"local", "global", "local_and_global"}


class _Params(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DownloadParams(_Params):
    """Which GLDv2 tars to fetch, from where, and how many at once."""

    num_train: int = Field(500, ge=0, le=layout.MAX_TARS[layout.TRAIN], description="train tars")
    num_index: int = Field(100, ge=0, le=layout.MAX_TARS[layout.INDEX], description="index tars")
    num_test: int = Field(20, ge=0, le=layout.MAX_TARS[layout.TEST], description="test tars")
    base_url: str = Field(layout.DEFAULT_BASE_URL, description="the GLDv2 bucket or a mirror")
    mini_mirror: bool = Field(
        False,
        description="make the mini dataset under the output root and download it from a "
        "mirror on 127.0.0.1 instead of base_url (no network needed)",
    )
    max_workers: int = Field(8, ge=1, description="tars downloaded at once")
    delete_tars: bool = Field(False, description="delete each tar once verified and unpacked")
    retries: int = Field(5, ge=0, description="retries of each HTTP request")
    backoff_seconds: float = Field(1.0, ge=0.0, description="first wait between request retries")
    use_dask: bool = Field(False, description="spread the tars over a Dask cluster")
    dask_address: str | None = Field(
        None, description="the Dask scheduler (tcp://host:8786); none starts a local cluster"
    )


class BuildParams(_Params):
    """The TFRecord build (build_image_dataset), on a Beam runner."""

    num_shards: int = Field(128, ge=1)
    validation_split_size: float = Field(0.2, gt=0.0, lt=1.0)
    seed: int = 0
    runner: str = Field("FnApiRunner", description="FnApiRunner locally, DataflowRunner in GCP")
    pipeline_options: list[str] = Field(
        default_factory=list, description="Beam flags, e.g. --project=... --region=..."
    )


# TrainConfig fields the flow sets itself: the paths follow the output root.
_FLOW_SET_TRAIN_FIELDS = {"logdir", "train_file_pattern", "validation_file_pattern"}
_TRAIN_FIELDS = {field.name for field in dataclasses.fields(TrainConfig)}


class TrainParams(_Params):
    """The train step's flags; `flags` takes any other flag of `delf train` by name."""

    model: Literal["delf", "delg"] = Field("delf", description="delg adds the global head")
    batch_size: int = Field(32, ge=1)
    initial_lr: float = Field(0.01, gt=0.0)
    max_iters: int = Field(500000, ge=1)
    image_size: int = Field(321, ge=32)
    imagenet_checkpoint: str | None = Field(
        None, description="resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5 (path or URL)"
    )
    dataset_version: str = Field(
        "gld_v2_clean", description="class count: gld_v2_clean, or manifest for a partial set"
    )
    flags: dict[str, Any] = Field(
        default_factory=dict, description="other train flags, e.g. {'use_autoencoder': false}"
    )

    @field_validator("dataset_version")
    @classmethod
    def _known_version(cls, value: str) -> str:
        if value not in DATASET_VERSIONS:
            raise ValueError(f"use one of {', '.join(DATASET_VERSIONS)}")
        return value

    @field_validator("flags")
    @classmethod
    def _known_flags(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(value) - _TRAIN_FIELDS)
        if unknown:
            raise ValueError(f"not flags of train: {unknown}")
        managed = sorted(set(value) & (_FLOW_SET_TRAIN_FIELDS | set(cls.model_fields)))
        if managed:
            raise ValueError(f"{managed}: set by the flow or by their own parameter")
        return value

    def to_config(self, output_root: str) -> TrainConfig:
        """The TrainConfig of this run, reading the shards built under `output_root`."""
        tfrecords = storage.join(output_root, TFRECORD_DIR)
        return TrainConfig(
            logdir=storage.join(output_root, TRAINING_DIR),
            train_file_pattern=storage.join(tfrecords, "train*"),
            validation_file_pattern=storage.join(tfrecords, "validation*"),
            dataset_version=self.dataset_version,
            batch_size=self.batch_size,
            initial_lr=self.initial_lr,
            max_iters=self.max_iters,
            image_size=self.image_size,
            imagenet_checkpoint=self.imagenet_checkpoint,
            delg_global_features=self.model == "delg",
            **self.flags,
        )


class EvaluateParams(_Params):
    """Which exports and evaluations follow training."""

    test_model: bool = Field(
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
    use_geometric_verification: bool = True
    retrieval_score_threshold: float = DELG_SCORE_THRESHOLD
    retrieval_image_scales: list[float] | None = Field(
        None, description="the pyramid for retrieval; none: the DELG configs' seven scales"
    )
    retrieval_global_scales_ind: list[int] | None = Field(
        None, description="scales the global descriptor pools; none: the configs' (or all)"
    )

    @model_validator(mode="after")
    def _scales_fit(self) -> EvaluateParams:
        if self.retrieval_global_scales_ind is not None:
            count = len(self.retrieval_image_scales or DelgExtraction().image_scales)
            bad = [i for i in self.retrieval_global_scales_ind if not 0 <= i < count]
            if bad:
                raise ValueError(f"retrieval_global_scales_ind {bad}: only {count} scales")
        return self

    def model_check(self) -> ModelCheck:
        return ModelCheck(
            pair=self.pair, score_threshold=self.score_threshold, exports=tuple(self.exports)
        )

    def retrieval_check(self) -> RetrievalCheck:
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
        return RetrievalCheck(
            use_geometric_verification=self.use_geometric_verification, extraction=extraction
        )
