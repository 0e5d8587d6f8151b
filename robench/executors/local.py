"""The local executor: cells one after another in this process (the default)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from robench.api import Executor
from robench.cells import CellStatus, CellTask, run_cell_task
from robench.hookspecs import hookimpl


class LocalExecutor(Executor):
    """Runs cells one after another in this process, on --device."""

    name = "local"

    def run(self, tasks: Sequence[CellTask]) -> Iterator[CellStatus]:
        for task in tasks:
            yield from run_cell_task(task)


@hookimpl
def robench_executors() -> list[type[Executor]]:
    return [LocalExecutor]
