"""Executors: where the cells of a grid run (in this process, on a Ray cluster, as SLURM jobs).

Executors are plugins (hook ``robench_executors``); the built-in ones are ``local``, ``ray`` and
``slurm``. Every executor runs :func:`robench.cells.run_cell_task` on picklable
:class:`robench.cells.CellTask` objects and reports a :class:`robench.cells.CellStatus` per task;
results travel through the run directory, which all workers must see (a shared filesystem on a
cluster).
"""

from robench.api import Executor

__all__ = ["Executor"]
