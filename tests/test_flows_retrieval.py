"""The perform_retrieval flow: ground truth, extract_features of query and index, retrieval."""

from __future__ import annotations

import pytest
import tensorflow as tf

from delf_core.model import create_model
from delf_core.retrieval.metrics import read_metrics_file
from delf_core.training.config import TrainConfig
from flows.extract_dataset import DelgExtraction
from flows.perform_retrieval import PerformRetrievalConfig, perform_retrieval
from flows.retries import transient_io_error
from tests.test_flows_export_match import artifacts, task_states

pytestmark = pytest.mark.integration

# Two scales rather than the DELG configs' seven: the same code in a fraction of the
# time. Attention of an untrained model sits near softplus(0) = 0.69.
SMALL = DelgExtraction(image_scales=(0.5, 1.0), global_scales_ind=(0, 1), score_threshold=0.5)
STEPS = (
    "export_local_and_global_model",
    "make_revisited_ground_truth",
    "extract_features-query",
    "extract_features-index",
    "perform_retrieval",
)


def write_delg_weights(logdir) -> TrainConfig:
    """An untrained DELG model's weights where training would leave them."""
    tf.keras.utils.set_random_seed(0)
    model = create_model("delg_r50", num_classes=3)
    model.build_for(64)
    tf.train.Checkpoint(model=model).write(str(logdir / "delf_weights"))
    return TrainConfig(logdir=str(logdir), delg_global_features=True)


def test_retrieval_is_evaluated_cached_and_redone_for_a_deleted_index_file(
    prefect_harness, mini_gldv2, tmp_path
):
    train = write_delg_weights(tmp_path / "logs")
    check = PerformRetrievalConfig(extraction=SMALL)

    first = perform_retrieval(train, check, str(mini_gldv2), return_state=True)

    assert first.is_completed()
    result = first.result()
    assert result["ground_truth"] == str(tmp_path / "gnd_gldv2.pkl")
    metrics = read_metrics_file(str(tmp_path / "results" / "gldv2" / "metrics.txt"))
    assert set(metrics.mean_average_precision) == {
        "medium",
        "hard",
        "medium_after_gv",
        "hard_after_gv",
    }
    assert 0.0 <= result["mean_average_precision"]["medium"] <= 1.0
    # The mini benchmark's positives are all easy: no query has a hard one.
    assert result["mean_average_precision"]["hard"] is None
    index = tmp_path / "data" / "gldv2_features" / "index"
    globals_ = sorted(index.rglob("*.delg_global"))
    assert result["extracted"] == {"query": 8, "index": len(globals_)} and len(globals_) == 24
    assert task_states(first, expect=STEPS) == dict.fromkeys(STEPS, "Completed")
    shown = artifacts(first)
    summary = shown["gldv2-perform-retrieval"]
    assert "```\nhard\n  mAP=nan" in summary
    assert "| protocol | mAP | mP@1 |" in summary and "mP@10" in summary
    progress = ("extract-index", "extract-queries", "perform-retrieval")
    assert [shown[f"gldv2-{step}-progress"] for step in progress] == [100.0] * 3
    assert f"| mAP medium (%) | {100 * result['mean_average_precision']['medium']:.2f} |" in summary
    assert "| mAP hard (%) | n/a |" in summary and f"`{result['metrics_path']}`" in summary
    assert "| images extracted | 24 |" in shown["gldv2-extract-index"]
    assert "| images extracted | 8 |" in shown["gldv2-extract-queries"]
    assert "| kind | local_and_global |" in shown["gldv2-export-local-and-global-model"]

    second = perform_retrieval(train, check, str(mini_gldv2), return_state=True)

    assert task_states(second, expect=STEPS) == dict.fromkeys(STEPS, "Cached")
    assert second.result()["mean_average_precision"] == result["mean_average_precision"]

    globals_[0].unlink()
    third = perform_retrieval(train, check, str(mini_gldv2), return_state=True)

    states = task_states(third, expect=STEPS)
    assert states.pop("extract_features-index") == states.pop("perform_retrieval") == "Completed"
    assert set(states.values()) == {"Cached"}
    rerun = third.result()
    assert (rerun["extracted"]["index"], rerun["skipped"]["index"]) == (1, 23)
    assert globals_[0].exists()


def test_a_delf_model_is_not_evaluated(prefect_harness, tmp_path):
    train = TrainConfig(logdir=str(tmp_path / "logs"))

    state = perform_retrieval(train, PerformRetrievalConfig(), str(tmp_path), return_state=True)

    assert "no global descriptor" in state.result()["skipped"]
    assert task_states(state) == {}


class FailedWith:
    """A failed state's stand-in: its result is the error."""

    def __init__(self, error: BaseException):
        self.error = error

    def result(self, raise_on_failure: bool = True) -> BaseException:
        return self.error


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (TimeoutError("read timed out"), True),
        (ConnectionResetError(), True),
        (tf.errors.UnavailableError(None, None, "gs:// unavailable"), True),
        (FileNotFoundError("gnd_gldv2.pkl"), False),
        (ValueError("a global export"), False),
    ],
)
def test_only_transient_io_errors_are_retried(error, retried):
    assert transient_io_error(None, None, FailedWith(error)) is retried
