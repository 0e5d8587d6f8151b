"""robench: a benchmark harness for distortion-robust representation learning with ViTs.

The notebook entry point is :func:`run`; plugin authors import from :mod:`robench.api`.
"""

from __future__ import annotations

__version__ = "0.1.0"

import os
import sys
from typing import TYPE_CHECKING, Any

# Before torch loads GNU OpenMP (libgomp, its CPU threads): an idle OpenMP thread spins 300,000
# rounds before it sleeps, some 15 ms on recent Intel cores (a long `pause`), holding a core that
# robench's CPU kernels run their own threads on (robench.native: spatter at 32 px ran 1.5x slower
# for it). 30,000 rounds still bridge the gaps between torch's operators. A value set already wins.
if "torch" not in sys.modules:
    os.environ.setdefault("GOMP_SPINCOUNT", "30000")

from robench.errors import ConfigError, PluginError, RobenchError, SupervisionError
from robench.hookspecs import hookimpl

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "ConfigError",
    "PluginError",
    "RobenchError",
    "SupervisionError",
    "__version__",
    "hookimpl",
    "run",
]


def run(**kwargs: Any) -> pd.DataFrame:
    """Run a benchmark grid and return its leaderboard as a long-format DataFrame.

    Takes the options of ``robench run`` as keywords (lists as sequences or comma-separated
    strings), e.g. ``robench.run(datasets="digits", methods=["none", "finetune"], steps=20)``.
    See :class:`robench.config.RunConfig` for every option and its default.

    Raises:
        RobenchError: for an invalid option or a broken plugin; nothing is written then.
    """
    from robench.runner import run as run_grid  # torch and pandas load only when needed

    return run_grid(**kwargs)
