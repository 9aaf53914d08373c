"""Choosing the tf.distribute strategy and this worker's role."""

from __future__ import annotations

import dataclasses

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class Cluster:
    """The strategy and whether this worker writes the real checkpoints and summaries."""

    strategy: tf.distribute.Strategy
    is_chief: bool
    task_id: int
    num_workers: int = 1


def _role(resolver) -> tuple[int, bool, int]:
    """(workers named by TF_CONFIG, whether this one is the chief, its task id)."""
    spec = resolver.cluster_spec().as_dict()
    workers = len(spec.get("worker", [])) + len(spec.get("chief", []))
    if workers <= 1:
        return workers, True, 0
    task_type, task_id = resolver.task_type, resolver.task_id or 0
    is_chief = task_type == "chief" or (
        task_type == "worker" and task_id == 0 and "chief" not in spec
    )
    return workers, is_chief, task_id


def worker_role() -> tuple[bool, bool]:
    """(whether several workers train together, whether this one is the chief).

    Read from TF_CONFIG without making a strategy, so it may come before `make_cluster`.
    """
    workers, is_chief, _ = _role(tf.distribute.cluster_resolver.TFConfigClusterResolver())
    return workers > 1, is_chief


def shard_by_batch(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """`dataset` split over workers by batch, not by file.

    Every worker reads the whole stream and keeps its replicas' part of each global
    batch, so N workers train on the very batches one worker would (at N times the
    reading). The default (FILE) gives each worker its own shards: less reading, but
    other batches than one worker's.
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def make_cluster() -> Cluster:
    """MultiWorkerMirroredStrategy when TF_CONFIG names several workers, else Mirrored.

    MirroredStrategy uses every local GPU, or the CPU when there is none. Under several
    workers, the chief is the `chief` task if there is one, else worker 0.
    """
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    workers, is_chief, task_id = _role(resolver)
    if workers <= 1:
        return Cluster(tf.distribute.MirroredStrategy(), is_chief=True, task_id=0)
    strategy = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    return Cluster(strategy, is_chief=is_chief, task_id=task_id, num_workers=workers)
