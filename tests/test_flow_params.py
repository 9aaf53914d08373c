"""The gldv2 flow's parameters: the deployments' values validate, bad ones fail early."""

from __future__ import annotations

import pydantic
import pytest

from delf_cli.deployment_params import apply_overrides, deployment_parameters
from delf_cli.main import main
from delf_core.training.cluster_config import ClusterConfig
from flows.gldv2 import gldv2
from flows.params import (
    BuildParams,
    DownloadParams,
    EvaluateParams,
    TrainParams,
    train_cluster,
    train_config,
)

GROUPS = {
    "download": DownloadParams,
    "build": BuildParams,
    "train": TrainParams,
    "evaluate": EvaluateParams,
}


@pytest.mark.parametrize("name", ["gldv2-full", "gldv2-mini"])
def test_each_deployment_gives_valid_parameters(name):
    parameters = deployment_parameters(name)
    guard_rails = {"max_crash_resumes", "notify_block"}
    assert {"output_root", *GROUPS} <= set(parameters) <= {"output_root", *GROUPS, *guard_rails}
    groups = {group: GROUPS[group].model_validate(parameters[group]) for group in GROUPS}
    config = train_config(groups["train"], parameters["output_root"])
    assert config.delg_global_features
    assert config.train_file_pattern == f"{parameters['output_root']}/gldv2_dataset/tfrecord/train*"
    if name == "gldv2-full":
        assert (groups["download"].num_train, groups["download"].num_index) == (500, 100)
        assert groups["download"].num_test == 20 and config.max_iters == 500000
        assert parameters["max_crash_resumes"] == 3 and parameters["notify_block"] is None
        assert not config.deterministic  # the faster input pipeline and kernels
    else:
        assert groups["download"].mini_mirror and config.max_iters == 2
        assert config.deterministic  # the same metrics on every run


def test_overrides_replace_a_group_and_keep_strings():
    parameters = apply_overrides(
        {"output_root": "a", "train": {"max_iters": 9}},
        ['train={"delg_global_features": false}', "output_root=gs://bucket/run"],
    )
    assert parameters == {
        "output_root": "gs://bucket/run",
        "train": {"delg_global_features": False},
    }
    with pytest.raises(ValueError, match="name=<json value>"):
        apply_overrides({}, ["no-equals-sign"])


@pytest.mark.parametrize(
    ("model", "values", "message"),
    [
        (TrainParams, {"no_such_flag": 1}, "no_such_flag"),
        (TrainParams, {"logdir": "/x"}, "logdir"),
        (TrainParams, {"dataset_version": "gld_v3"}, "gld_v2_clean"),
        (TrainParams, {"batch_size": 0}, "greater than or equal to 1"),
        (BuildParams, {"validation_split_size": 1.0}, "less than 1"),
        (DownloadParams, {"output_dir": "/elsewhere"}, "output_dir"),
        (DownloadParams, {"num_train": 501}, "less than or equal to 500"),
        (EvaluateParams, {"exports": ["local", "kaggle"]}, "local_and_global"),
        (
            EvaluateParams,
            {"retrieval_image_scales": [0.5, 1.0], "retrieval_global_scales_ind": [2]},
            "only 2 scales",
        ),
    ],
)
def test_a_bad_value_is_refused_naming_it(model, values, message):
    with pytest.raises(pydantic.ValidationError, match=message):
        model.model_validate(values)


def test_retrieval_scales_become_the_extraction_config():
    check = EvaluateParams(retrieval_image_scales=[0.5, 1.0]).perform_retrieval_config()
    assert check.extraction.image_scales == (0.5, 1.0)
    assert check.extraction.global_scales_ind == (0, 1)


def test_the_mini_mirror_refuses_more_tars_than_it_has_and_writes_nothing(
    prefect_harness, tmp_path
):
    state = gldv2(
        output_root=str(tmp_path / "run"),
        download={"num_train": 3, "num_index": 1, "num_test": 1, "mini_mirror": True},
        return_state=True,
    )
    assert state.is_failed()
    assert "the mini mirror has" in state.message and "'train': 3" in state.message
    assert not (tmp_path / "run").exists()


def test_delf_gldv2_names_an_unknown_deployment(capsys):
    assert main(["gldv2", "--deployment=gldv2-huge"]) == 2
    assert "no deployment 'gldv2-huge'; there are: gldv2-full, gldv2-mini" in (
        capsys.readouterr().err
    )


def test_train_on_dask_workers_trains_the_same_model():
    on_dask = TrainParams(num_workers=2, stall_timeout=60, max_iters=9)
    cluster = train_cluster(on_dask)
    assert cluster == ClusterConfig(num_workers=2, stall_timeout=60) and cluster.enabled
    # Where it runs is not what it trains: the run's identity (its cache key) is the same.
    assert train_config(on_dask, "/r") == train_config(TrainParams(max_iters=9), "/r")
    assert not train_cluster(TrainParams()).enabled
    with pytest.raises(ValueError, match=r"^--dask_address=host:8786: expected a scheduler"):
        train_cluster(TrainParams(dask_address="host:8786"))
