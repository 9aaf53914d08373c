"""The Beam pipeline options both jobs take, and the local runner they default to.

Importing this module does not import Beam: the flow's parameters name the runner.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from apache_beam.options.pipeline_options import PipelineOptions

# Beam 2.68+ makes DirectRunner try Prism first, which downloads a binary at run time:
# offline that fails or hangs. The FnApiRunner is the same local runner without it.
LOCAL_RUNNER = "FnApiRunner"


def pipeline_options(pipeline_args: list[str]) -> PipelineOptions:
    """Beam options from the leftover flags.

    A local run uses the offline-safe runner with one thread per core, unless told
    otherwise: JPEG decoding and file I/O release the GIL, and threads spare each
    worker process a TensorFlow import (seconds) and start-up.
    """
    from apache_beam.options.pipeline_options import (
        DirectOptions,
        PipelineOptions,
        StandardOptions,
    )

    options = PipelineOptions(pipeline_args)
    standard = options.view_as(StandardOptions)
    if standard.runner in (None, "DirectRunner", "direct"):
        standard.runner = LOCAL_RUNNER
    if standard.runner == LOCAL_RUNNER:
        direct = options.view_as(DirectOptions)
        given = {arg.split("=", 1)[0] for arg in pipeline_args}
        if "--direct_running_mode" not in given:
            direct.direct_running_mode = "multi_threading"
        if "--direct_num_workers" not in given:
            direct.direct_num_workers = os.cpu_count() or 1
    return options
