"""The shipped DelfConfigs, as package data: the seed README's and the DELG instructions'."""

from __future__ import annotations

from importlib import resources

from delf_core.features.config import DelfConfig, parse_delf_config

# The seed README's test config (a local export) and the DELG configs' (local and global).
SEED_PRESET = "delf_config_example.pbtxt"
DELG_PRESET = "delg_config.pbtxt"


def preset_text(name: str) -> str:
    """The text of the preset file `name` (SEED_PRESET or DELG_PRESET)."""
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def load_preset(
    name: str, model_path: str = "", score_threshold: float | None = None
) -> DelfConfig:
    """The preset `name`, for the export at `model_path`.

    Args:
        name: SEED_PRESET or DELG_PRESET.
        model_path: The SavedModel folder.
        score_threshold: Attention score a local feature needs; None keeps the
            preset's, which suits a fully trained model.

    Returns:
        A new config message.
    """
    config = parse_delf_config(preset_text(name), source=name)
    config.model_path = model_path
    if score_threshold is not None:
        config.delf_local_config.score_threshold = score_threshold
    return config


def seed_delf_config(
    model_path: str, use_global_features: bool, score_threshold: float | None = None
) -> DelfConfig:
    """The seed README's delf_config_example.pbtxt for a TF2 export at `model_path`.

    Args:
        model_path: The SavedModel folder.
        use_global_features: For a local_and_global (DELG) export, whose signature also
            takes the global scale indices: the DELG config's global part is added.
        score_threshold: Attention score a local feature needs; None for the seed's
            100.0, which suits a fully trained model.

    Returns:
        The config message.
    """
    config = load_preset(SEED_PRESET, model_path, score_threshold)
    if use_global_features:
        config.use_global_features = True
        config.delf_global_config.CopyFrom(load_preset(DELG_PRESET).delf_global_config)
    return config
