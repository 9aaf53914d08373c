"""Where `train` runs its workers: one process here, or N TF workers on a Dask cluster."""

from __future__ import annotations

import dataclasses

from delf_core.step_config import check, option

_GROUP = "training on several workers (Dask)"


@dataclasses.dataclass(frozen=True)
class ClusterConfig:
    """One training on several TF workers (MultiWorkerMirroredStrategy), launched on Dask.

    Neither `dask_address` nor `num_workers`: training runs in this process, as before.
    The logdir must be storage every worker reads (gs:// on several machines): the
    chief writes the checkpoints there and every worker resumes from them.
    """

    dask_address: str | None = option(
        None,
        "Dask scheduler (tcp://host:8786) whose workers each run one TF worker; "
        "none, with --num_workers: a local cluster of that many processes",
        group=_GROUP,
    )
    num_workers: int | None = option(
        None,
        "TF workers, one per Dask worker; none with --dask_address: every worker the "
        "cluster has when training starts",
        minimum=1,
        group=_GROUP,
    )
    start_timeout: float = option(
        1800.0,
        "seconds to reach the cluster, find the workers and reach the first training "
        "step (TF start, model build, checkpoint restore)",
        above=0,
        group=_GROUP,
    )
    stall_timeout: float = option(
        3600.0,
        "seconds the chief may go without finishing a step call (validations and saves "
        "included) before the run is stopped as hung",
        above=0,
        group=_GROUP,
    )

    @property
    def enabled(self) -> bool:
        """Whether training is launched on Dask rather than in this process."""
        return self.dask_address is not None or self.num_workers is not None

    def validate(self) -> None:
        """Raises ValueError naming the bad flag."""
        check(self)
        address = self.dask_address
        if address is not None and "://" not in address:
            raise ValueError(
                f"--dask_address={address}: expected a scheduler address such as tcp://host:8786"
            )
