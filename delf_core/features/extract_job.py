"""The extract_features job: its flags, inputs, plan of what is left, report and manifest."""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import os
from collections.abc import Iterable
from typing import Any

from delf_core import __version__, manifests, storage
from delf_core.step_config import option

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
# The flags naming the images, which --images_glob replaces in either form.
_IMAGE_FLAGS = ("list_images_path", "dataset_file_path", "images_dir", "image_set")
REPORT_NAME = "extract_features_report.csv"
# Also holds the record of which model made each file (delf_core.features.record): the
# job keeps that record's "images" and adds its own fields beside it.
MANIFEST_NAME = "extract_features_manifest.json"


_LIST_FORM = "list form (examples/extract_features.py)"
_DELG_FORM = "DELG form (delg/extract_features.py)"


def _listed(help: str, name: str) -> Any:
    return option(None, f"{help}; {LIST_DEFAULTS[name]!r}", group=_LIST_FORM)


def _delg(help: str, name: str, **spec: Any) -> Any:
    return option(None, f"{help}; {DELG_DEFAULTS[name]!r}", group=_DELG_FORM, **spec)


@dataclasses.dataclass(frozen=True)
class ExtractFeaturesConfig:
    """The flags of `delf extract_features`: both original scripts' and `--images_glob`.

    Flags left unset take their form's original default (`job()`); the DELG form is
    chosen when any of its flags is given.
    """

    config_path: str | None = _listed("DelfConfig text file", "config_path")
    list_images_path: str | None = _listed("one image path per line", "list_images_path")
    output_dir: str | None = _listed("<name>.delf go here", "output_dir")
    delf_config_path: str | None = _delg("DelfConfig", "delf_config_path")
    dataset_file_path: str | None = _delg("Revisited gnd_*.mat or .pkl", "dataset_file_path")
    images_dir: str | None = _delg("<name>.jpg images", "images_dir")
    image_set: str | None = _delg(
        "query images are cropped to their box", "image_set", choices=IMAGE_SETS
    )
    output_features_dir: str | None = _delg(
        "<name>.delg_local/.delg_global go here", "output_features_dir"
    )
    allow_failures: bool = option(
        False,
        f"exit 0 even when some images failed (each is listed in <output folder>/{REPORT_NAME})",
    )
    images_glob: str | None = option(
        None,
        "images to extract, named after their file stem, e.g. 'gs://B/index/*/*/*/*.jpg'; "
        "replaces --list_images_path (list form) or --dataset_file_path, --images_dir "
        "and --image_set (DELG form)",
    )

    def job(self) -> ExtractJobConfig:
        """The job these flags ask for, each form with its original defaults.

        Raises:
            ValueError: flags of the two forms mixed, or --images_glob with another input.
        """
        values = dataclasses.asdict(self)
        delg_form = any(values[name] is not None for name in DELG_DEFAULTS)
        listed = [name for name in LIST_DEFAULTS if values[name] is not None]
        if delg_form and listed:
            raise ValueError(
                f"--{listed[0]} belongs to the list form; the DELG form takes "
                "--delf_config_path, --dataset_file_path, --images_dir, --image_set and "
                "--output_features_dir"
            )
        if self.images_glob is not None:
            clash = [name for name in _IMAGE_FLAGS if values[name] is not None]
            if clash:
                raise ValueError(f"--images_glob replaces --{clash[0]}: give one of them")
        defaults = DELG_DEFAULTS if delg_form else LIST_DEFAULTS
        chosen = {name: default if values[name] is None else values[name]
                  for name, default in defaults.items()}  # fmt: skip
        if self.images_glob is not None:
            chosen = {k: v for k, v in chosen.items() if k not in _IMAGE_FLAGS}
        if delg_form:
            return ExtractJobConfig(
                delg_form=True,
                config_path=chosen["delf_config_path"],
                output_dir=chosen["output_features_dir"],
                images_glob=self.images_glob,
                dataset_file_path=chosen.get("dataset_file_path"),
                images_dir=chosen.get("images_dir"),
                image_set=chosen.get("image_set"),
            )
        return ExtractJobConfig(
            delg_form=False,
            config_path=chosen["config_path"],
            output_dir=chosen["output_dir"],
            list_images_path=chosen.get("list_images_path"),
            images_glob=self.images_glob,
        )


@dataclasses.dataclass(frozen=True)
class ExtractJobConfig:
    """What to extract, from where, to where: the resolved flags of either form.

    Attributes:
        delg_form: `.delg_local`/`.delg_global` outputs instead of `.delf`.
        config_path: The DelfConfig file.
        output_dir: Where the feature files, the report and the manifest go.
        list_images_path: List form: one image path per line.
        images_glob: Either form: the images, instead of a list or a dataset file.
        dataset_file_path: DELG form: a Revisited gnd_*.mat or .pkl.
        images_dir: DELG form: `<name>.jpg` of the dataset file's images.
        image_set: DELG form: "query" (cropped to their boxes) or "index".
    """

    delg_form: bool
    config_path: str
    output_dir: str
    list_images_path: str | None = None
    images_glob: str | None = None
    dataset_file_path: str | None = None
    images_dir: str | None = None
    image_set: str | None = None

    def params(self) -> dict:
        """The fields that are set, for the manifest."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    def load(self) -> tuple:
        """The parsed DelfConfig and the images, as `delf extract_features` reads them.

        Returns:
            (DelfConfig, list of ImageItem).

        Raises:
            ValueError: a bad config or dataset file, or a glob that matches nothing.
            OSError: a missing file.
        """
        from delf_core.features import load_delf_config
        from delf_core.features.extract import items_from_dataset, items_from_list

        config = load_delf_config(self.config_path)
        if not self.delg_form and not config.use_local_features:
            raise ValueError("the list form writes local features: set use_local_features")
        if self.images_glob is not None:
            items = items_from_glob(self.images_glob)
        elif self.delg_form:
            items = items_from_dataset(self.dataset_file_path, self.images_dir, self.image_set)
        else:
            items = items_from_list(self.list_images_path)
        return config, items


def items_from_glob(pattern: str) -> list:
    """The images matching `pattern` (local or URL), sorted, named after their file stem.

    Raises:
        ValueError: nothing matches.
    """
    from delf_core.features.extract import ImageItem

    fs, path = storage.resolve(pattern)
    # One listing of the pattern's fixed prefix, not a request per file (gs:// included).
    paths = sorted(fs.glob(path))
    if not paths:
        raise ValueError(f"--images_glob {pattern!r} matches no file")
    urls = (storage.url_of(fs, p) for p in paths)
    return [ImageItem(os.path.splitext(os.path.basename(u))[0], u) for u in urls]


@dataclasses.dataclass
class ExtractPlan:
    """The images left to extract, and what planning already knows of the others.

    Attributes:
        todo: Images with at least one output file missing.
        done: How many images have all their output files already.
        duplicates: (name, reason) of images whose name an earlier image took.
    """

    todo: list
    done: int
    duplicates: list[tuple[str, str]]

    @property
    def total(self) -> int:
        return len(self.todo) + self.done + len(self.duplicates)


def existing_outputs(output_dir: str) -> set[str]:
    """Paths, relative to `output_dir`, of the files under it: one listing, not a probe each.

    On gs:// a listing returns 1000 names a request, so a rerun of a 761k-image job
    plans in minutes instead of the hours of one existence check per file.
    """
    fs, root = storage.resolve(output_dir)
    root = root.rstrip("/")
    try:
        found = fs.find(root)
    except FileNotFoundError:
        return set()
    return {p[len(root) + 1 :] for p in found if p.startswith(root + "/")}


def plan_extraction(items: Iterable, output_dir: str, delg_form: bool, config) -> ExtractPlan:
    """Which images still need extracting: those with an output file missing.

    The first image of a name wins; a later one with the same name would write the
    same files, so it is reported rather than left to race or be skipped in silence.
    """
    from delf_core.features.extract import output_paths

    existing = existing_outputs(output_dir)
    prefix = storage.join(output_dir, "")
    todo, duplicates, seen = [], [], {}
    done = 0
    for item in items:
        if item.name in seen:
            duplicates.append((item.name, f"{item.path}: same name as {seen[item.name]}"))
            continue
        seen[item.name] = item.path
        outputs = output_paths(item, output_dir, delg_form, config)
        if all(path[len(prefix) :] in existing for _, path in outputs):
            done += 1
        else:
            todo.append(item)
    return ExtractPlan(todo=todo, done=done, duplicates=duplicates)


def report_csv(failed: Iterable[tuple[str, str]]) -> bytes:
    """The report: a `name,reason` row per failed image, sorted by name."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("name", "reason"))
    writer.writerows(sorted(failed))
    return out.getvalue().encode()


def failures_line(failed: int, total: int, output_dir: str) -> str:
    """The one line a run ends with when images failed: how many, and where the report is."""
    return f"{failed} of {total} images failed; see {storage.join(output_dir, REPORT_NAME)}"


def read_manifest(output_dir: str) -> dict | None:
    """The manifest in `output_dir`, or None (missing, unreadable or half-written)."""
    return manifests.read_json(storage.join(output_dir, MANIFEST_NAME))


def finish(
    job: ExtractJobConfig,
    config,
    counts: dict[str, int],
    failed: list[tuple[str, str]],
    runner: str,
) -> dict:
    """Writes the report, then the manifest (last, whole); returns the manifest.

    Args:
        job: The job.
        config: Its DelfConfig.
        counts: "extracted" and "skipped" image counts.
        failed: (name, reason) of each failed image.
        runner: What ran the job, for the record.
    """
    from google.protobuf import text_format

    fs, root = storage.resolve(job.output_dir)
    storage.write_bytes(fs, storage.join(root, REPORT_NAME), report_csv(failed))
    extracted, skipped = counts.get("extracted", 0), counts.get("skipped", 0)
    manifest = {
        "step": "extract_features",
        "delf_version": __version__,
        "runner": runner,
        "config_path": job.config_path,
        "model_path": config.model_path,
        "delf_config": text_format.MessageToString(config),
        "params": job.params(),
        "counts": {
            "extracted": extracted,
            "skipped": skipped,
            "failed": len(failed),
            "total": extracted + skipped + len(failed),
        },
        "report": REPORT_NAME,
    }
    # Fields others keep in the folder's manifest (the flows' record of which model
    # made each file) stay; this run's fields replace their old values.
    previous = read_manifest(job.output_dir) or {}
    storage.write_json(fs, storage.join(root, MANIFEST_NAME), {**previous, **manifest})
    return manifest


def warn_if_made_otherwise(job: ExtractJobConfig, config) -> None:
    """Logs when the folder's manifest names another model or config than this job's.

    Finished images are skipped by name, so their files would stay those of the
    earlier model: say so rather than mix two models' features in silence.
    """
    from google.protobuf import text_format

    previous = read_manifest(job.output_dir) or {}
    if "delf_config" not in previous:
        return
    if previous["delf_config"] != text_format.MessageToString(config):
        log.warning(
            "%s holds features made with another DelfConfig (model %s); finished images "
            "keep them: use a new output folder to redo them",
            job.output_dir,
            previous.get("model_path"),
        )
