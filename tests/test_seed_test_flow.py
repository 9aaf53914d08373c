"""The seed README's export and test steps, as written, with `delf` on the mini dataset."""

from __future__ import annotations

import csv
import re

import pytest
from PIL import Image

from delf_cli.main import main
from delf_core.features import feature_io, load_delf_config, write_delf_config
from delf_core.features.presets import SEED_PRESET, load_preset
from delf_core.gldv2.layout import image_relpath

pytestmark = pytest.mark.e2e

# The seed's delf_config_example.pbtxt as its README edits it (model path, TF2 export,
# no PCA: delf_core's preset). The threshold is the seed's 100 lowered to 0: the
# attention of a model trained for a few steps on the mini dataset stays far below 100.
UNTRAINED_THRESHOLD = 0.0


def _two_views_of_one_landmark(dataset) -> list[str]:
    with open(dataset / "train" / "train_clean.csv", newline="") as handle:
        row = next(csv.DictReader(handle))
    first, second = row["images"].split()[:2]
    return [str(dataset / "train" / image_relpath(image)) for image in (first, second)]


def test_train_export_extract_and_match_as_the_seed_readme(
    mini_records, mini_gldv2, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    assert main([
        "train", f"--train_file_pattern={mini_records}/train*",
        f"--validation_file_pattern={mini_records}/validation*",
        "--dataset_version=manifest", "--logdir=gldv2_training/", "--image_size=64",
        "--batch_size=4", "--max_iters=4", "--num_eval_batches=1",
    ]) == 0  # fmt: skip
    assert main([
        "export_local_model", "--ckpt_path=gldv2_training/delf_weights",
        "--export_path=gldv2_model_local",
    ]) == 0  # fmt: skip

    write_delf_config(
        load_preset(SEED_PRESET, "gldv2_model_local", UNTRAINED_THRESHOLD),
        "delf_config_example.pbtxt",
    )
    assert load_delf_config("delf_config_example.pbtxt").is_tf2_exported
    images = _two_views_of_one_landmark(mini_gldv2)
    (tmp_path / "list_images.txt").write_text("\n".join(images) + "\n")
    assert main([
        "extract_features", "--config_path", "delf_config_example.pbtxt",
        "--list_images_path", "list_images.txt", "--output_dir", "data/features",
    ]) == 0  # fmt: skip
    names = [image.rsplit("/", 1)[1].removesuffix(".jpg") for image in images]
    for name in names:
        features = feature_io.read_from_file(f"data/features/{name}.delf")
        assert 0 < len(features.locations) <= 1000
        assert features.descriptors.shape[1] == 128  # the autoencoder's descriptors

    capsys.readouterr()
    assert main([
        "match_images", "--image_1_path", images[0], "--image_2_path", images[1],
        "--features_1_path", f"data/features/{names[0]}.delf",
        "--features_2_path", f"data/features/{names[1]}.delf",
        "--output_image", "matched_images.png",
    ]) == 0  # fmt: skip
    assert re.search(r"Found \d+ inliers", capsys.readouterr().out)
    picture = Image.open(tmp_path / "matched_images.png")
    widths = [Image.open(image).width for image in images]
    assert picture.format == "PNG" and picture.width == sum(widths)
