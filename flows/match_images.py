"""The `match_images` step as a Prefect task: inlier count and the match picture as an artifact."""

from __future__ import annotations

import base64
import io
import json
import posixpath
import time
from typing import Any

from prefect import task

from delf_core import manifests, storage
from delf_core.features import feature_io
from delf_core.features.record import features_fingerprint
from delf_core.matching import (
    MatchConfig,
    draw_matches,
    match_features,
    read_image,
    write_png,
)
from flows.caching import OutputsStandCache
from flows.run_summary import COUNTED
from flows.summary import publish_summary

# The picture in the artifact is embedded in the markdown as a data: URI (the UI renders
# it; an image artifact needs a public URL), downscaled and as JPEG, which is a fifth of
# the PNG's size for photographs, so the artifact stays small in the database.
ARTIFACT_MAX_WIDTH = 800
ARTIFACT_JPEG_QUALITY = 85


def _match_identity(inputs: dict[str, Any]) -> str:
    # The features' content, not their paths: re-extracted features give a new key.
    return json.dumps(
        {
            "features_1": manifests.sha256_file(inputs["features_1_path"]),
            "features_2": manifests.sha256_file(inputs["features_2_path"]),
            # Features extracted again (a new model) match again, even if unchanged.
            "generations": [
                features_fingerprint(posixpath.dirname(inputs[f"features_{i}_path"]))
                for i in (1, 2)
            ],
            "image_1": inputs["image_1_path"],
            "image_2": inputs["image_2_path"],
            "output_image": inputs["output_image"],
            "seed": inputs.get("seed", 0),
        },
        sort_keys=True,
    )


def _match_stands(inputs: dict[str, Any]) -> bool:
    fs, path = storage.resolve(inputs["output_image"])
    return fs.exists(path)


def picture_markdown(picture) -> str:
    """The picture at most 800 px wide, as a data: URI the UI shows."""
    small = picture.copy()
    small.thumbnail((ARTIFACT_MAX_WIDTH, picture.height))
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=ARTIFACT_JPEG_QUALITY)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"![matched images](data:image/jpeg;base64,{data})"


@task(
    name="match_images",
    tags=["match_images"],
    **COUNTED,
    task_run_name="match_images",
    cache_policy=OutputsStandCache(
        identity=_match_identity, outputs_stand=_match_stands, prefix="match_images"
    ),
)
def match_images_task(
    image_1_path: str,
    image_2_path: str,
    features_1_path: str,
    features_2_path: str,
    output_image: str,
    seed: int = 0,
) -> int:
    """Matches two images' local features with a seeded RANSAC and draws the inliers.

    Args:
        image_1_path: Image 1 (for the picture).
        image_2_path: Image 2.
        features_1_path: Image 1's `.delf` (or `.delg_local`) file.
        features_2_path: Image 2's.
        output_image: The PNG to write.
        seed: RANSAC seed, so that the same features always give the same count.

    Returns:
        The number of inliers.
    """
    started = time.monotonic()
    result = match_features(
        feature_io.read_from_file(features_1_path),
        feature_io.read_from_file(features_2_path),
        MatchConfig(seed=seed),
    )
    picture = draw_matches(
        read_image(image_1_path),
        read_image(image_2_path),
        result.locations_1,
        result.locations_2,
        result.inliers,
    )
    write_png(output_image, picture)
    publish_summary(
        "match_images",
        {
            "inliers": int(result.num_inliers),
            "putative matches": int(result.num_matches),
            "image 1": f"`{image_1_path}`",
            "image 2": f"`{image_2_path}`",
            "picture": f"`{output_image}`",
        },
        started=started,
        more=picture_markdown(picture),
    )
    return int(result.num_inliers)
