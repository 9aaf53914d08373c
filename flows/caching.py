"""A Prefect cache policy that trusts a cached result only while the step's outputs stand."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from typing import Any

from prefect.cache_policies import CachePolicy


@dataclasses.dataclass(kw_only=True)
class OutputsStandCache(CachePolicy):
    """Keys a task on what determines its outputs, and re-runs it when they are gone.

    Prefect trusts a cache record even after the files it describes were deleted. Here,
    when the outputs no longer stand but a record exists, the task gets no key: it runs
    again, and the old record, valid again once the outputs are back, stays. On a first
    run there is no record, so the task runs under its key and the next run is Cached.

    Attributes:
      identity: the task's inputs -> a string naming exactly the outputs they produce.
      outputs_stand: the task's inputs -> whether those outputs are all in place.
      prefix: starts every key, to tell the steps apart in the result storage.
    """

    identity: Callable[[dict[str, Any]], str]
    outputs_stand: Callable[[dict[str, Any]], bool]
    prefix: str = "outputs"

    def compute_key(
        self, task_ctx, inputs: dict[str, Any], flow_parameters, **kwargs
    ) -> str | None:
        key = f"{self.prefix}-" + hashlib.sha256(self.identity(inputs).encode()).hexdigest()
        if self.outputs_stand(inputs):
            return key
        store = getattr(task_ctx, "result_store", None)
        if store is not None and store.exists(key):
            return None
        return key
