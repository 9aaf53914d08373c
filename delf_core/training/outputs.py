"""What a training run writes in its logdir and returns, by name (read by export and the flows).

Importable without TensorFlow: a cached flow run decides from these alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

CHECKPOINT_DIR = "delf_tf2-ckpt"
WEIGHTS_NAME = "delf_weights"
MANIFEST_NAME = "train_manifest.json"

# (step, max_iters, metrics): how a caller (the Prefect task) follows a run's progress.
ReportCallback = Callable[[int, int, dict[str, float]], None]
# (step, max_iters): called after every call of the step function, cheap and frequent,
# so a caller can show progress on a cadence of its own, whatever `report_interval` is.
StepsCallback = Callable[[int, int], None]


@dataclasses.dataclass(frozen=True)
class TrainResult:
    step: int
    metrics: dict[str, float]
    resumed_from: int
    already_done: bool = False
    # The learning curve this run saw: the reported metrics at each report step.
    history: tuple[dict[str, float], ...] = ()
