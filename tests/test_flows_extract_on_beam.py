"""The retrieval index extracted by the extract_features Beam job instead of in the flow."""

from __future__ import annotations

import pytest
from prefect import flow

from delf_core.export import ExportConfig, export_model
from delf_core.gldv2 import layout
from delf_core.gldv2.revisited import write_revisited_ground_truth
from flows.evaluation_configs import INDEX
from flows.extract_dataset import extract_dataset_task
from tests.test_flows_retrieval import SMALL, write_delg_weights

pytestmark = pytest.mark.integration


@flow
def extract_index(out: str, inputs: dict, runner: str | None) -> dict:
    """The index task as the perform_retrieval flow calls it; its state's name and result."""
    state = extract_dataset_task(
        INDEX, inputs["export"], inputs["truth"], inputs["images"], out, SMALL,
        config_path=inputs["config"], runner=runner, return_state=True,
    )  # fmt: skip
    return {"state": state.name, **state.result()}


def _features(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.delg_*"))}


def test_the_beam_job_extracts_the_flows_files_and_a_rerun_skips(
    prefect_harness, mini_gldv2, tmp_path
):
    train = write_delg_weights(tmp_path / "logs")
    export = export_model(
        ExportConfig.for_kind(
            "local_and_global",
            ckpt_path=f"{train.logdir}/delf_weights",
            export_path=str(tmp_path / "export"),
        )
    )
    truth = str(tmp_path / "gnd_gldv2.pkl")
    write_revisited_ground_truth(str(mini_gldv2), truth)
    inputs = {"export": export, "truth": truth, "images": str(mini_gldv2 / layout.INDEX),
              "config": str(tmp_path / "delg_config.pbtxt")}  # fmt: skip
    in_flow, on_beam = tmp_path / "in_flow", tmp_path / "on_beam"

    expected = extract_index(str(in_flow), inputs, None)
    first = extract_index(str(on_beam), inputs, "FnApiRunner")

    assert first["state"] == "Completed"
    assert (first["extracted"], first["skipped"], first["failed"]) == (24, 0, [])
    assert len(_features(in_flow)) == 2 * 24
    assert _features(on_beam) == _features(in_flow)
    assert first["fingerprint"] != expected["fingerprint"]  # each folder has its record

    mtimes = {p: p.stat().st_mtime_ns for p in on_beam.rglob("*")}
    again = extract_index(str(on_beam), inputs, "FnApiRunner")

    assert again["state"] == "Cached" and again["fingerprint"] == first["fingerprint"]
    assert {p: p.stat().st_mtime_ns for p in on_beam.rglob("*")} == mtimes

    removed = sorted(on_beam.rglob("*.delg_global"))[0]
    removed.unlink()
    redone = extract_index(str(on_beam), inputs, "FnApiRunner")

    assert redone["state"] == "Completed"
    assert (redone["extracted"], redone["skipped"]) == (1, 23)
    assert _features(on_beam) == _features(in_flow)
    assert redone["fingerprint"] != first["fingerprint"]


def test_an_unknown_runner_is_refused_in_one_line(prefect_harness, tmp_path):
    with pytest.raises(ValueError, match=r"^runner 'Spark': use one of FnApiRunner,"):
        extract_dataset_task.fn(INDEX, "x", "y", "z", str(tmp_path), runner="Spark")
