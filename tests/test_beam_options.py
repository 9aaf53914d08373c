"""The runners both Beam jobs take, by the names users give them."""

from __future__ import annotations

import pytest

from beam_jobs.options import DASK_RUNNER_PATH, LOCAL_RUNNER, check_runner, pipeline_options


@pytest.mark.parametrize("given", ["DaskRunner", "daskrunner", "dask", DASK_RUNNER_PATH])
def test_the_dask_runner_is_named_by_its_short_name_and_spread_one_element_a_task(given):
    from apache_beam.options.pipeline_options import StandardOptions
    from apache_beam.runners.dask.dask_runner import DaskOptions

    options = pipeline_options([f"--runner={given}", "--dask_client_address=tcp://h:8786"])

    assert options.view_as(StandardOptions).runner == DASK_RUNNER_PATH
    dask = options.view_as(DaskOptions)
    assert (dask.address, dask.partition_size, dask.timeout) == ("tcp://h:8786", 1, 60)
    assert check_runner(given) == "DaskRunner"


def test_given_dask_partitions_and_timeout_are_kept():
    from apache_beam.runners.dask.dask_runner import DaskOptions

    options = pipeline_options(
        ["--runner=DaskRunner", "--dask_npartitions=8", "--dask_connection_timeout=5"]
    ).view_as(DaskOptions)

    assert (options.npartitions, options.partition_size, options.timeout) == (8, None, 5)


def test_the_local_runner_is_the_default():
    from apache_beam.options.pipeline_options import StandardOptions

    assert pipeline_options([]).view_as(StandardOptions).runner == LOCAL_RUNNER


def test_an_unknown_runner_is_refused_in_one_line_by_the_flow():
    from pydantic import ValidationError

    from flows.params import BuildParams

    with pytest.raises(ValueError, match=r"^runner 'Spark': use one of FnApiRunner, Direct"):
        check_runner("Spark")
    assert BuildParams(runner="dask", dask_address="tcp://h:8786").beam_options() == [
        "--dask_client_address=tcp://h:8786"
    ]
    with pytest.raises(ValidationError, match="dask_address is for runner DaskRunner"):
        BuildParams(dask_address="tcp://h:8786")
