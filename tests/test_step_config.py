"""Each step is declared once: its `delf` flags and the flow's parameters come from its config."""

from __future__ import annotations

import argparse
import importlib

import pydantic
import pytest

from delf_cli.flags import build_config
from delf_cli.main import SUBCOMMANDS, parse_args
from delf_core import step_config
from delf_core.export.config import ExportConfig
from delf_core.training.cluster_config import ClusterConfig
from flows.params import BuildParams, DownloadParams, TrainClusterParams, TrainParams

# Subcommands whose flags are made from a step config, with the arguments they require.
STEP_COMMANDS = {
    name: importlib.import_module(f"delf_cli.{name}")
    for name in SUBCOMMANDS
    if hasattr(importlib.import_module(f"delf_cli.{name}"), "CONFIG")
}
REQUIRED = {"download": ["0", "0", "0"]}
# Flags of a command that are not options of its config: how or where it runs, not what.
RUN_FLAGS = {
    "extract_features": {"beam"},
    "make_mini_dataset": {"output_dir"},
    "train": {o.name for o in step_config.options(ClusterConfig)},
}
FLOW_GROUPS = [DownloadParams, BuildParams, TrainParams, TrainClusterParams]


def test_every_pipeline_step_has_a_config():
    assert set(STEP_COMMANDS) >= {
        "download", "build_image_dataset", "train", "export_local_model",
        "export_global_model", "export_local_and_global_model", "export_model",
        "extract_features", "match_images", "perform_retrieval",
    }  # fmt: skip


def _flags(module) -> dict[str, object]:
    """The dest and default of each visible `--flag` of a subcommand's parser."""
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return {
        action.dest: action.default
        for action in parser._actions
        if action.option_strings and action.dest != "help" and action.help is not argparse.SUPPRESS
    }


def _expected_config(name: str, module):
    if module.CONFIG is ExportConfig:
        return ExportConfig.for_kind(module.KIND, **getattr(module, "LEGACY_DEFAULTS", {}))
    positional = [o.name for o in step_config.options(module.CONFIG) if o.spec.positional]
    return module.CONFIG(**dict(zip(positional, map(int, REQUIRED.get(name, [])), strict=True)))


@pytest.mark.parametrize("name", sorted(STEP_COMMANDS))
def test_the_flags_are_the_configs_options_with_its_defaults(name):
    module = STEP_COMMANDS[name]
    expected = _expected_config(name, module)
    values = step_config.flat_values(expected)
    flags = _flags(module)
    options = {o.name: o for o in step_config.options(module.CONFIG) if not o.spec.positional}
    assert set(flags) - RUN_FLAGS.get(name, set()) <= set(options)
    for flag, default in flags.items():
        if flag not in RUN_FLAGS.get(name, set()):
            assert default == values[flag], flag
    # No flags at all: the config's own defaults (the original script's, for exports).
    _, args = parse_args([name, *REQUIRED.get(name, [])])
    if module.CONFIG is ExportConfig:
        from delf_cli.export_flags import config_from_args

        parsed = config_from_args(args, module.KIND, **getattr(module, "LEGACY_DEFAULTS", {}))
    else:
        parsed = build_config(args, module.CONFIG)
    assert parsed == expected


@pytest.mark.parametrize("name", sorted(STEP_COMMANDS))
def test_every_option_has_help_and_a_default_within_its_bounds(name):
    config_cls = STEP_COMMANDS[name].CONFIG
    for found in step_config.options(config_cls):
        assert found.spec.help.strip(), found.name
        if not found.required:
            assert found.problem(found.default) is None, found.name


@pytest.mark.parametrize("group", FLOW_GROUPS, ids=lambda g: g.__name__)
def test_flow_parameters_are_the_options_the_flow_does_not_set(group):
    options = step_config.options(group.step_config_class)
    flow_set = {o.name for o in options if not o.spec.flow}
    fields = group.model_fields
    assert {o.name for o in options if o.spec.flow} <= set(fields)
    assert not flow_set & set(fields)
    defaults = group()
    for found in options:
        if found.spec.flow and not found.required:
            # The flow's own defaults (the seed README's command line) are declared once,
            # beside the group; every other parameter takes the option's default.
            if found.name not in group.flow_defaults:
                assert getattr(defaults, found.name) == found.default, found.name
            assert fields[found.name].description == found.spec.help


@pytest.mark.parametrize("group", FLOW_GROUPS, ids=lambda g: g.__name__)
def test_flow_parameters_refuse_values_out_of_the_options_bounds(group):
    for found in step_config.options(group.step_config_class):
        if not found.spec.flow or found.sequence or found.kind is bool:
            continue
        if found.spec.minimum is not None:
            with pytest.raises(pydantic.ValidationError, match=found.name):
                group.model_validate({found.name: found.spec.minimum - 1})
        if found.spec.choices is not None:
            with pytest.raises(pydantic.ValidationError, match=found.name):
                group.model_validate({found.name: "no such choice"})


def test_a_flow_group_builds_the_steps_config_with_the_paths_the_flow_sets():
    config = TrainParams(max_iters=7).to_config(logdir="/run/training")
    assert config == step_config.build(
        TrainParams.step_config_class,
        {**TrainParams.flow_defaults, "max_iters": 7},
        logdir="/run/training",
    )
    assert config.dataset_version == "gld_v2_clean" and config.batch_size == 32
    download = DownloadParams(num_train=3, retries=1, max_tar_members=10).to_config(
        output_dir="/run/data"
    )
    assert (download.num_train, download.output_dir) == (3, "/run/data")
    assert (download.retry.retries, download.limits.max_tar_members) == (1, 10)


def test_absl_forms_reach_nested_options():
    _, args = parse_args(["download", "1", "0", "0", "--retries=0", "--timeout_seconds", "5"])
    config = build_config(args, STEP_COMMANDS["download"].CONFIG)
    assert (config.retry.retries, config.retry.timeout_seconds) == (0, 5.0)


def test_a_value_out_of_bounds_names_the_flag():
    _, args = parse_args(["train", "--batch_size=0"])
    with pytest.raises(ValueError, match=r"^--batch_size=0: must be at least 1$"):
        build_config(args, STEP_COMMANDS["train"].CONFIG)
    _, args = parse_args(["download", "501", "0", "0"])
    with pytest.raises(ValueError, match=r"^NUM_TRAIN=501: must be at most 500$"):
        build_config(args, STEP_COMMANDS["download"].CONFIG)


def test_a_sequence_option_parses_comma_separated_values_and_checks_each():
    _, args = parse_args(["export_global_model", "--input_scales_list=0.5,1,2"])
    assert args.input_scales_list == (0.5, 1.0, 2.0)
    with pytest.raises(ValueError, match="input_scales_list.*must be more than 0"):
        ExportConfig.for_kind("global", input_scales_list=(1.0, -1.0))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["export_local_model", "--iou=2"], "--iou=2.0: must be at most 1"),
        (["export_global_model", "--input_scales_list=1,-2"], "must be more than 0"),
        (["perform_retrieval", "--num_workers=0"], "--num_workers=0: must be at least 1"),
        (["match_images", "--max_trials=0"], "--max_trials=0: must be at least 1"),
    ],
)
def test_a_command_given_a_flag_out_of_bounds_fails_in_one_line(argv, message, caplog, capsys):
    from delf_cli.main import main

    assert main([*argv, "--export_path=/nonexistent/x"] if "export" in argv[0] else argv) != 0
    assert message in caplog.text + capsys.readouterr().err
