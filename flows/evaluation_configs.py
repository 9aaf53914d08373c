"""What the check_model and perform_retrieval flows do: their configs and output names.

Kept apart from the flows, which load TensorFlow, so that the gldv2 flow's parameters
(and a run's start) need neither.
"""

from __future__ import annotations

import dataclasses
import posixpath

import numpy as np

from delf_core.export.config import EXPORT_KINDS
from delf_core.features.presets import DELG_PRESET, SEED_PRESET, load_preset
from delf_core.gldv2.revisited import GROUND_TRUTH_NAME
from delf_core.retrieval.top_k import DEFAULT_MEMORY_BYTES
from delf_core.training.config import TrainConfig

# The seed README's names, under the output folder.
EXPORT_NAME = "gldv2_model_{kind}"
FEATURES_DIR = "data/features"
MATCH_PICTURE = "matched_images.png"

# The seed README's test config's threshold (REFERENCE §6.1), for a fully trained model.
SEED_SCORE_THRESHOLD = load_preset(SEED_PRESET).delf_local_config.score_threshold
CONFIG_NAME = SEED_PRESET

# The DELG configs (REFERENCE §6.1), shipped as delf_core's preset. Its threshold is
# delg_gld_config's, for a fully trained R50-DELG; a model of a few steps has attention
# near softplus(0) = 0.69 and needs about 0.5.
_PRESET = load_preset(DELG_PRESET)
DELG_SCORE_THRESHOLD = _PRESET.delf_local_config.score_threshold
DELG_CONFIG_NAME = DELG_PRESET
QUERY, INDEX = "query", "index"


def _float32_repr(values) -> tuple[float, ...]:
    # As the config file prints them (0.35355338), not as float64 widens them.
    return tuple(float(str(np.float32(v))) for v in values)


@dataclasses.dataclass(frozen=True)
class DelgExtraction:
    """The DelfConfig fields the DELG instructions' configs set, with their values.

    Attributes:
        image_scales: The image pyramid.
        global_scales_ind: Which scales the global descriptor pools.
        score_threshold: Attention score a local feature needs.
        max_feature_num: Local features kept per image.
        max_image_size: Larger images are shrunk to this size first; -1 for none.
    """

    image_scales: tuple[float, ...] = _float32_repr(_PRESET.image_scales)
    global_scales_ind: tuple[int, ...] = tuple(_PRESET.delf_global_config.image_scales_ind)
    score_threshold: float = DELG_SCORE_THRESHOLD
    max_feature_num: int = _PRESET.delf_local_config.max_feature_num
    max_image_size: int = _PRESET.max_image_size


@dataclasses.dataclass(frozen=True)
class CheckModelConfig:
    """What the test of a trained model does.

    Attributes:
        pair: Two images of one landmark; None picks two downloaded train images of
            the first landmark of train_clean.csv that has two.
        score_threshold: The DelfConfig's attention threshold; the seed's 100.0 fits a
            fully trained model, a model of a few steps needs about 0.5.
        exports: Export kinds to make besides the one matched (local for DELF,
            local_and_global for DELG), e.g. ("global",).
        output_dir: Where exports, features and the picture go; None: the folder that
            holds the training logdir.
    """

    pair: tuple[str, str] | None = None
    score_threshold: float = SEED_SCORE_THRESHOLD
    exports: tuple[str, ...] = ()
    output_dir: str | None = None

    def __post_init__(self):
        unknown = sorted(set(self.exports) - set(EXPORT_KINDS))
        if unknown:
            raise ValueError(f"exports {unknown}: use kinds of {EXPORT_KINDS}")


@dataclasses.dataclass(frozen=True)
class PerformRetrievalConfig:
    """What the retrieval evaluation of a trained DELG model does.

    Attributes:
        use_geometric_verification: Re-rank by RANSAC inliers too: metrics.txt then
            holds the protocols with and without (`*_after_gv`).
        extraction: The DelfConfig's scales and thresholds (the DELG configs').
        output_dir: Where ground truth, config, features and results go; None: the
            folder that holds the training logdir (as check_model's).
        ground_truth_name: The Revisited ground truth, under `output_dir`.
        features_dir: `query/` and `index/` features go under it.
        results_dir: metrics.txt goes here.
        index_runner: None extracts the index in the flow's process; a Beam runner
            (FnApiRunner, DaskRunner, DataflowRunner) hands it to the extract_features
            Beam job, which spreads GLDv2's 761k index images over its workers.
        index_pipeline_options: The Beam job's other flags, e.g.
            `--dask_client_address=tcp://scheduler:8786` or `--project=...`.
        search_memory_bytes: Bound on the global search's working memory.
    """

    # On, as the DELG instructions run perform_retrieval (the command's default is off).
    use_geometric_verification: bool = True
    extraction: DelgExtraction = DelgExtraction()
    output_dir: str | None = None
    ground_truth_name: str = GROUND_TRUTH_NAME
    features_dir: str = "data/gldv2_features"
    results_dir: str = "results/gldv2"
    index_runner: str | None = None
    index_pipeline_options: tuple[str, ...] = ()
    search_memory_bytes: int = DEFAULT_MEMORY_BYTES


def model_output_dir(train: TrainConfig, output_dir: str | None) -> str:
    """`output_dir`, or by default the folder that holds the training logdir."""
    return output_dir or posixpath.dirname(train.logdir.rstrip("/")) or "."
