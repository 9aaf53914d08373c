"""The export, extract_features and match_images tasks, chained by check_model."""

from __future__ import annotations

import base64
import io

import pytest
import tensorflow as tf
from PIL import Image

from delf_core.features import feature_io, load_delf_config, write_delf_config
from delf_core.features.presets import seed_delf_config
from delf_core.gldv2.labels import read_clean_labels
from delf_core.model import create_model
from delf_core.training.config import TrainConfig
from flows.check_model import CheckModelConfig, check_model, same_landmark_pair
from tests.prefect_runs import artifacts as run_artifacts
from tests.prefect_runs import task_states

LOCAL_INPUTS = {"input_image", "input_scales", "input_max_feature_num", "input_abs_thres"}
# Attention scores of an untrained model sit near softplus(0) = 0.69; the seed's 100.0
# would keep no feature at all.
UNTRAINED_THRESHOLD = 0.5
# The task runs of one check_model run of a local export.
STEPS = ("export_local_model", "extract_features", "match_images")


def write_weights(logdir, seed: int) -> TrainConfig:
    """An untrained DELF model's weights where training would leave them."""
    tf.keras.utils.set_random_seed(seed)
    model = create_model("delf_r50", num_classes=3)
    model.build_for(64)
    tf.train.Checkpoint(model=model).write(str(logdir / "delf_weights"))
    return TrainConfig(logdir=str(logdir))


def artifacts(flow_state) -> dict[str, str]:
    """Key and data of the artifacts of one flow run."""
    return run_artifacts(flow_state.state_details.flow_run_id, subflows=False)


def test_same_landmark_pair_is_two_downloaded_views_of_one_landmark(mini_gldv2):
    first, second = same_landmark_pair(str(mini_gldv2))
    labels = read_clean_labels(str(mini_gldv2 / "train" / "train_clean.csv"))
    ids = [path.rsplit("/", 1)[-1].removesuffix(".jpg") for path in (first, second)]
    assert ids[0] != ids[1] and labels[ids[0]] == labels[ids[1]]
    assert all(tf.io.gfile.exists(path) for path in (first, second))


def test_same_landmark_pair_names_the_folder_when_there_is_none(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "train_clean.csv").write_text("landmark_id,images\n1,abc0 abc1\n")
    with pytest.raises(ValueError, match="no landmark of train_clean.csv has two"):
        same_landmark_pair(str(tmp_path))


def test_seed_delf_config_reads_back_and_asks_delg_for_scales_3_to_5(tmp_path):
    local = seed_delf_config("model", use_global_features=False)
    path = str(tmp_path / "delf_config_example.pbtxt")
    write_delf_config(local, path)
    assert load_delf_config(path) == local
    assert local.delf_local_config.score_threshold == 100.0
    assert [round(s, 4) for s in local.image_scales] == [0.25, 0.3536, 0.5, 0.7071, 1, 1.4142, 2]
    delg = seed_delf_config("model", use_global_features=True, score_threshold=1.0)
    assert delg.use_global_features and list(delg.delf_global_config.image_scales_ind) == [3, 4, 5]


@pytest.mark.integration
def test_a_rerun_is_cached_and_a_deleted_feature_file_is_extracted_again(
    prefect_harness, mini_gldv2, tmp_path
):
    train = write_weights(tmp_path / "logs", seed=1)
    check = CheckModelConfig(same_landmark_pair(str(mini_gldv2)), UNTRAINED_THRESHOLD)

    first = check_model(train, check, return_state=True)

    assert first.is_completed()
    result = first.result()
    export = tmp_path / "gldv2_model_local"
    assert result["exports"] == {"local": str(export)}
    signature = tf.saved_model.load(str(export)).signatures["serving_default"]
    assert set(signature.structured_input_signature[1]) == LOCAL_INPUTS
    features = sorted((tmp_path / "data" / "features").glob("*.delf"))
    assert len(features) == 2
    assert all(len(feature_io.read_from_file(str(p)).locations) > 0 for p in features)
    assert load_delf_config(str(tmp_path / "delf_config_example.pbtxt")).model_path == str(export)
    assert isinstance(result["num_inliers"], int) and result["num_inliers"] >= 0
    assert (tmp_path / "matched_images.png").stat().st_size > 0
    assert task_states(first, expect=STEPS) == dict.fromkeys(STEPS, "Completed")
    shown = artifacts(first)
    # One artifact per step, all keyed gldv2-<step>.
    steps = ("export-local-model", "extract-features", "extract-features-progress", "match-images")
    assert set(shown) == {f"gldv2-{step}" for step in steps}
    assert shown["gldv2-extract-features-progress"] == 100.0
    export_summary = shown["gldv2-export-local-model"]
    assert f"| path | `{export}` |" in export_summary and "| exported | yes |" in export_summary
    assert "| size on disk | " in export_summary and "| duration | " in export_summary
    assert "input_abs_thres: float32[]" in export_summary
    extract_summary = shown["gldv2-extract-features"]
    assert "| images extracted | 2 |" in extract_summary
    assert f"| output folder | `{tmp_path / 'data' / 'features'}` |" in extract_summary
    match_summary = shown["gldv2-match-images"]
    assert f"| inliers | {result['num_inliers']} |" in match_summary
    assert f"| picture | `{tmp_path / 'matched_images.png'}` |" in match_summary
    data = match_summary.split("data:image/jpeg;base64,")[1].strip()
    assert Image.open(io.BytesIO(base64.b64decode(data.rstrip(")")))).width <= 800

    second = check_model(train, check, return_state=True)

    assert second.result()["num_inliers"] == result["num_inliers"]
    assert set(task_states(second, expect=STEPS).values()) == {"Cached"}

    features[0].unlink()
    third = check_model(train, check, return_state=True)

    states = task_states(third, expect=STEPS)
    assert states["export_local_model"] == "Cached"
    assert states["extract_features"] == "Completed"
    assert (third.result()["extracted"], third.result()["skipped"]) == (1, 1)
    assert features[0].exists()


@pytest.mark.integration
def test_new_weights_replace_the_export_and_its_features(prefect_harness, mini_gldv2, tmp_path):
    train = write_weights(tmp_path / "logs", seed=1)
    check = CheckModelConfig(same_landmark_pair(str(mini_gldv2)), UNTRAINED_THRESHOLD)
    check_model(train, check)
    features = sorted((tmp_path / "data" / "features").glob("*.delf"))
    before = [path.read_bytes() for path in features]

    write_weights(tmp_path / "logs", seed=2)  # as a longer training run would
    rerun = check_model(train, check, return_state=True)

    states = task_states(rerun, expect=STEPS)
    assert states["export_local_model"] == "Completed"
    assert states["extract_features"] == "Completed"
    # The stale export is kept beside the new one; features come from the new one.
    assert (tmp_path / "gldv2_model_local.previous" / "saved_model.pb").exists()
    assert rerun.result()["extracted"] == 2
    assert [path.read_bytes() for path in features] != before
