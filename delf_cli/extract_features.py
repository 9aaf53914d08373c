"""`delf extract_features`: the original list form (.delf) and the DELG dataset form."""

from __future__ import annotations

import argparse
import logging

from delf_core.cli_flags import add_flag

log = logging.getLogger(__name__)
IMAGE_SETS = ("query", "index")
# The two original scripts' flags and defaults. The DELG form is chosen when any of
# its flags is given.
LIST_DEFAULTS = {
    "config_path": "delf_config_example.pbtxt",
    "list_images_path": "list_images.txt",
    "output_dir": "test_features",
}
DELG_DEFAULTS = {
    "delf_config_path": "/tmp/delf_config_example.pbtxt",
    "dataset_file_path": "/tmp/gnd_roxford5k.mat",
    "images_dir": "/tmp/images",
    "image_set": "query",
    "output_features_dir": "/tmp/features",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    listed = parser.add_argument_group("list form (examples/extract_features.py)")
    add_flag(listed, "config_path", None, f"DelfConfig text file; {LIST_DEFAULTS['config_path']!r}")
    add_flag(
        listed,
        "list_images_path",
        None,
        f"one image path per line; {LIST_DEFAULTS['list_images_path']!r}",
    )
    add_flag(listed, "output_dir", None, f"<name>.delf go here; {LIST_DEFAULTS['output_dir']!r}")
    delg = parser.add_argument_group("DELG form (delg/extract_features.py)")
    add_flag(delg, "delf_config_path", None, f"DelfConfig; {DELG_DEFAULTS['delf_config_path']!r}")
    add_flag(
        delg,
        "dataset_file_path",
        None,
        f"Revisited gnd_*.mat or .pkl; {DELG_DEFAULTS['dataset_file_path']!r}",
    )
    add_flag(delg, "images_dir", None, f"<name>.jpg images; {DELG_DEFAULTS['images_dir']!r}")
    add_flag(
        delg,
        "image_set",
        None,
        "query images are cropped to their box; 'query'",
        choices=IMAGE_SETS,
    )
    add_flag(
        delg,
        "output_features_dir",
        None,
        f"<name>.delg_local/.delg_global go here; {DELG_DEFAULTS['output_features_dir']!r}",
    )


def _with_defaults(args: argparse.Namespace) -> tuple[bool, dict]:
    values = vars(args)
    delg_form = any(values.get(name) is not None for name in DELG_DEFAULTS)
    listed = [name for name in LIST_DEFAULTS if values.get(name) is not None]
    if delg_form and listed:
        raise ValueError(
            f"--{listed[0]} belongs to the list form; the DELG form takes --delf_config_path, "
            "--dataset_file_path, --images_dir, --image_set and --output_features_dir"
        )
    defaults = DELG_DEFAULTS if delg_form else LIST_DEFAULTS
    chosen = {name: values[name] if values.get(name) is not None else default
              for name, default in defaults.items()}  # fmt: skip
    return chosen, delg_form


def run(args: argparse.Namespace) -> int:
    from delf_core.features import load_delf_config
    from delf_core.features.extract import (
        ProgressLog,
        extract_images,
        items_from_dataset,
        items_from_list,
    )
    from delf_core.features.extractor import Extractor

    try:
        values, delg_form = _with_defaults(args)
        if delg_form:
            config = load_delf_config(values["delf_config_path"])
            items = items_from_dataset(
                values["dataset_file_path"], values["images_dir"], values["image_set"]
            )
            output_dir = values["output_features_dir"]
        else:
            config = load_delf_config(values["config_path"])
            if not config.use_local_features:
                raise ValueError("the list form writes local features: set use_local_features")
            items = items_from_list(values["list_images_path"])
            output_dir = values["output_dir"]
        extractor = Extractor(config)
    except (OSError, ValueError) as error:
        log.error("%s", error)
        return 1
    log.info("extracting %d images to %s", len(items), output_dir)
    report = extract_images(
        extractor, items, output_dir, delg_form=delg_form, on_progress=ProgressLog()
    )
    print(
        f"{report.extracted} extracted, {report.skipped} already done, "
        f"{len(report.failed)} failed, of {report.total} images"
    )
    for name, reason in report.failed:
        print(f"failed: {name}: {reason}")
    return 0
