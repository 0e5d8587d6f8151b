"""The SLURM executor, through submitit: each cell one task of a SLURM job array.

``--slurm-partition``, ``--slurm-timeout-min``, ``--gpus-per-cell`` and ``--cpus-per-cell`` set
the job; job logs go to ``RUN_DIR/slurm/``. ``--slurm-local`` runs the same jobs with submitit's
local executor (subprocesses on this machine), for testing a configuration without a cluster.
The run directory and the pretraining cache must be on a filesystem the nodes share.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence

from robench.api import Executor
from robench.cells import CellStatus, CellTask, run_cell_task
from robench.errors import ConfigError
from robench.hookspecs import hookimpl


class SlurmExecutor(Executor):
    """Runs each cell as a SLURM array task through submitit (--slurm-local: local subprocesses)."""

    name = "slurm"

    def check(self) -> None:
        try:
            import submitit  # noqa: F401
        except ImportError:
            raise ConfigError("executor 'slurm' needs submitit: pip install 'robench[cluster]'") from None
        if not self.config.slurm_local and shutil.which("sbatch") is None:
            raise ConfigError("executor 'slurm' found no sbatch on this machine; run on a SLURM login node "
                              "or add --slurm-local to test with local subprocesses")

    def run(self, tasks: Sequence[CellTask]) -> Iterator[CellStatus]:
        import submitit

        cfg = self.config
        executor = submitit.AutoExecutor(folder=cfg.out / "slurm" / "%j", cluster="local" if cfg.slurm_local else "slurm")
        params = {"timeout_min": cfg.slurm_timeout_min, "cpus_per_task": cfg.cpus_per_cell,
                  "gpus_per_node": int(cfg.gpus_per_cell)}
        if cfg.slurm_partition and not cfg.slurm_local:
            params["slurm_partition"] = cfg.slurm_partition
        executor.update_parameters(**params)
        jobs = executor.map_array(run_cell_task, list(tasks))
        for job in submitit.helpers.as_completed(jobs):
            yield from job.result()


@hookimpl
def robench_executors() -> list[type[Executor]]:
    return [SlurmExecutor]
