"""One flow run writes an output_root at a time: the run holds the folder's lease."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from prefect import get_run_logger
from prefect.context import get_run_context

from delf_core.output_lease import OutputLease

# How long a run's lease outlives its process: another run waits this long after a
# crash the server did not see (a machine lost); the same run, resumed, takes it at once.
LEASE_SECONDS = 120.0


@contextlib.contextmanager
def output_root_lease(output_root: str) -> Iterator[None]:
    """Holds `output_root`'s lease for the current flow run while the block runs.

    Raises:
      OutputInUseError: at once, naming the other run and `output_root`, while another
        live run holds it.
    """
    run = get_run_context().flow_run
    with OutputLease(output_root, str(run.id), run.name, LEASE_SECONDS) as lease:
        if lease.previous is not None and lease.previous.owner != lease.owner:
            get_run_logger().info(
                "%s: took over the expired lease of run %r", output_root, lease.previous.name
            )
        yield
