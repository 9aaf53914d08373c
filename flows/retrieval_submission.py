"""make_retrieval_submission as a Prefect task: the GLDv2 submission CSV of the extracted
test and index features, scored against the download's retrieval solution."""

from __future__ import annotations

import json
import math
import time

from prefect import task

from delf_core import manifests, storage
from delf_core.features.record import features_fingerprint
from delf_core.retrieval.submission import (
    SPLIT_LAYOUT,
    RetrievalSubmissionConfig,
    check_image_id,
    feature_name,
    score_submission,
    write_submission,
)
from delf_core.revisited_dataset import read_dataset_file
from flows.caching import OutputsStandCache
from flows.progress import step_progress
from flows.retries import TRANSIENT_IO_RETRIES
from flows.run_summary import COUNTED
from flows.summary import publish_summary

STEP = "make_retrieval_submission"
SUBMISSION_NAME = "retrieval_submission.csv"
# Written beside the CSV, last: its scores, so that a cached rerun can vouch for both.
SCORES_NAME = "retrieval_submission_scores.json"


def _ids(names: list[str], source: str) -> list[str]:
    """GLDv2 image ids of a ground truth's `a/b/c/<id>` names.

    Raises:
        ValueError: naming `source` when a name is not of that form.
    """
    ids = []
    for name in names:
        image_id = name.rsplit("/", 1)[-1]
        check_image_id(image_id, SPLIT_LAYOUT, source)
        if feature_name(image_id, SPLIT_LAYOUT) != name:
            raise ValueError(f"{source}: image name {name!r} is not a GLDv2 a/b/c/<id> name")
        ids.append(image_id)
    return ids


def _identity(inputs: dict) -> str:
    return json.dumps(
        {
            "ground_truth": manifests.sha256_file(inputs["ground_truth_path"]),
            "solution": manifests.sha256_file(inputs["solution_path"]),
            "test_features": features_fingerprint(inputs["test_features_dir"]),
            "index_features": features_fingerprint(inputs["index_features_dir"]),
            "test_features_dir": inputs["test_features_dir"],
            "index_features_dir": inputs["index_features_dir"],
            "output_dir": inputs["output_dir"],
            "k": inputs["k"],
        },
        sort_keys=True,
    )


def _outputs_stand(inputs: dict) -> bool:
    output_dir = inputs["output_dir"]
    return storage.exists(storage.join(output_dir, SUBMISSION_NAME)) and storage.exists(
        storage.join(output_dir, SCORES_NAME)
    )


def _percent(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:.2f}"


def _finite(scores: dict) -> dict:
    """The scores with NaN (an empty subset) as None, for JSON and the result."""

    def clean(value):
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        return None if isinstance(value, float) and math.isnan(value) else value

    return clean(scores)


@task(
    name=STEP,
    tags=["perform_retrieval"],
    **COUNTED,
    task_run_name=STEP,
    cache_policy=OutputsStandCache(identity=_identity, outputs_stand=_outputs_stand, prefix=STEP),
    **TRANSIENT_IO_RETRIES,
)
def make_retrieval_submission_task(
    ground_truth_path: str,
    test_features_dir: str,
    index_features_dir: str,
    solution_path: str,
    output_dir: str,
    k: int = 100,
) -> dict:
    """Writes the submission CSV of the ground truth's queries against its index, and scores it.

    The queries are the test images the retrieval evaluation extracted: those with
    retrieval ground truth. Test images without (Ignored, or with no answer) are not
    scored by the challenge's metric, so the mAP equals a full submission's.

    Args:
        ground_truth_path: The Revisited `gnd_gldv2.pkl` of the download
            (make_revisited_ground_truth): its query and index names.
        test_features_dir, index_features_dir: Their `.delg_global` files.
        solution_path: The download's `retrieval_solution_v2.1.csv`.
        output_dir: The CSV and its scores go here.
        k: Index ids per test image.

    Returns:
        submission_path, scores_path, rows, index images, k, per Usage (public,
        private) the scores (mAP@100, mean precisions, positions; None where empty),
        and the seconds each stage took.
    """
    started = time.monotonic()
    dataset = read_dataset_file(ground_truth_path)
    test_ids = _ids(list(dataset.query_list), ground_truth_path)
    index_ids = _ids(list(dataset.index_list), ground_truth_path)
    path = storage.join(output_dir, SUBMISSION_NAME)
    config = RetrievalSubmissionConfig(
        test_features_dir=test_features_dir,
        index_features_dir=index_features_dir,
        output_path=path,
        k=k,
    )
    written = write_submission(
        test_ids, index_ids, config, on_block=step_progress(STEP, "similarities")
    )
    scores = _finite(score_submission(path, solution_path))
    scores_path = storage.join(output_dir, SCORES_NAME)
    result = {
        "submission_path": path,
        "scores_path": scores_path,
        "rows": len(test_ids),
        "index": len(index_ids),
        "k": int(written.top.ids.shape[1]),
        **scores,
        "timings": written.timings,
    }
    manifests.write_json(scores_path, result)
    rows = [
        {
            "usage": usage,
            "queries": subset["queries"],
            "mAP@100 (%)": _percent(_nan(subset["mean_average_precision"])),
            **{
                f"{rank} (%)": _percent(_nan(value))
                for rank, value in subset["mean_precisions"].items()
            },
        }
        for usage, subset in (("Public", scores["public"]), ("Private", scores["private"]))
    ]
    publish_summary(
        STEP,
        {
            "submission": f"`{path}`",
            "test images (rows)": len(test_ids),
            "index images": len(index_ids),
            "ids per row": result["k"],
            **{f"{name} (s)": round(value, 2) for name, value in written.timings.items()},
        },
        started=started,
        table=rows,
        notes=[
            "scored as `delf compute_retrieval_metrics` scores it, against "
            f"`{solution_path}`; rows are the test images with retrieval ground truth"
        ],
    )
    return result


def _nan(value: float | None) -> float:
    return math.nan if value is None else value
