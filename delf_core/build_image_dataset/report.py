"""Finishing a build: the problem report, relabeling.csv and, last, the manifest."""

from __future__ import annotations

import csv
import dataclasses
import datetime
import io
import json
from collections import Counter

from delf_core import __version__, manifests, storage
from delf_core.build_image_dataset.config import BuildConfig
from delf_core.build_image_dataset.plan import BuildPlan, Problem
from delf_core.build_image_dataset.write import ShardResult
from delf_core.gldv2 import labels

MANIFEST_NAME = "build_image_dataset_manifest.json"
REPORT_NAME = "build_image_dataset_report.csv"
RELABELING_NAME = "relabeling.csv"
CONTEXT_NAME = "context.json"
REPORT_COLUMNS = ("split", "image_id", "path", "problem", "detail")


def write_context(plan: BuildPlan) -> str:
    """What `finalize` needs from the plan, saved beside the shard plans; returns its URL."""
    fs, path = storage.resolve(storage.join(plan.work_folder(), CONTEXT_NAME))
    context = {
        "params": plan.config.params(),
        "fingerprint": plan.fingerprint,
        "relabeling": None if plan.relabeling is None else sorted(plan.relabeling.items()),
        "planned": plan.counts(),
        "num_classes": plan.num_classes(),
        "problems": [dataclasses.astuple(p) for p in plan.problems],
    }
    storage.write_json(fs, path, context)
    return storage.url_of(fs, path)


def finalize(context_url: str, results: list[ShardResult], output_directory: str) -> dict:
    """Writes the report, relabeling.csv and the manifest (last); returns the manifest."""
    fs, root = storage.resolve(output_directory)
    context_fs, context_path = storage.resolve(context_url)
    context = json.loads(context_fs.cat(context_path))
    problems = [Problem(*row) for row in context["problems"]]
    for result in sorted(results, key=lambda r: r.name):
        problems.extend(result.problems)
    storage.write_bytes(fs, storage.join(root, REPORT_NAME), _report_csv(problems))
    if context["relabeling"] is not None:
        mapping = {old: new for old, new in context["relabeling"]}
        storage.write_bytes(
            fs, storage.join(root, RELABELING_NAME), labels.relabeling_csv(mapping).encode()
        )
    splits: dict[str, dict] = {}
    for result in sorted(results, key=lambda r: r.name):
        split = splits.setdefault(result.prefix, {"records": 0, "planned": 0, "shards": {}})
        split["records"] += result.records
        split["shards"][result.name] = result.records
    for prefix, planned in context["planned"].items():
        splits.setdefault(prefix, {"records": 0, "planned": 0, "shards": {}})["planned"] = planned
    manifest = {
        "step": "build_image_dataset",
        "delf_version": __version__,
        "fingerprint": context["fingerprint"],
        "params": context["params"],
        "splits": splits,
        "num_classes": context["num_classes"],
        "problems": dict(sorted(Counter(p.problem for p in problems).items())),
        "report": REPORT_NAME,
        # Tells this build from an earlier one of the same inputs: steps keyed on the
        # manifest (training) run again after a rebuild.
        "built_at": datetime.datetime.now(datetime.UTC).isoformat(),
    }
    storage.write_json(fs, storage.join(root, MANIFEST_NAME), manifest)
    # The shard plans have served; the manifest now tells what was built.
    context_fs.rm(context_path.rsplit("/", 1)[0], recursive=True)
    return manifest


def up_to_date_manifest(config: BuildConfig, fingerprint: str) -> dict | None:
    """The manifest of an earlier build of the same inputs, if all its shards still exist."""
    fs, root = storage.resolve(config.output_directory)
    manifest = manifests.read_json(storage.join(config.output_directory, MANIFEST_NAME))
    if not manifest or manifest.get("fingerprint") != fingerprint:
        return None
    for split in manifest["splits"].values():
        for name in split["shards"]:
            if not fs.exists(storage.join(root, name)):
                return None
    return manifest


def _report_csv(problems: list[Problem]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(REPORT_COLUMNS)
    writer.writerows(dataclasses.astuple(p) for p in problems)
    return out.getvalue().encode()
