"""The Ray executor: each cell a Ray task with ``--gpus-per-cell`` GPUs and ``--cpus-per-cell`` CPUs.

Uses the running Ray instance if there is one (``ray.init()`` in a notebook), else connects to
``--ray-address`` (a cluster, e.g. ``auto`` or ``ray://head:10001``), else starts Ray on this
machine. Workers must see the run directory and the pretraining cache at the same paths.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from robench.api import Executor
from robench.cells import CellStatus, CellTask, run_cell_task
from robench.errors import ConfigError
from robench.hookspecs import hookimpl


class RayExecutor(Executor):
    """Runs each cell as a Ray task (one machine or a cluster via --ray-address)."""

    name = "ray"

    def check(self) -> None:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ConfigError("executor 'ray' needs Ray: pip install 'robench[cluster]'") from None

    def run(self, tasks: Sequence[CellTask]) -> Iterator[CellStatus]:
        import ray

        if not ray.is_initialized():
            ray.init(address=self.config.ray_address, log_to_driver=False)
        remote = ray.remote(num_gpus=self.config.gpus_per_cell, num_cpus=self.config.cpus_per_cell)(run_cell_task)
        pending = [remote.remote(task) for task in tasks]
        while pending:
            finished, pending = ray.wait(pending, num_returns=1)
            yield from ray.get(finished[0])


@hookimpl
def robench_executors() -> list[type[Executor]]:
    return [RayExecutor]
