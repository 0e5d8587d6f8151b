"""Hook specifications: how plugins add distortions, methods and datasets to robench.

A plugin is a module (or any object) with functions decorated by :data:`hookimpl` and named after
these specs. Built-in plugins register through exactly the same hooks as third-party packages,
which declare an entry point in the group ``robench``::

    [project.entry-points.robench]
    my_plugin = "my_package.robench_plugin"
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from robench.api import Dataset, Distortion, Executor, Method

PROJECT_NAME = "robench"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# -- registration phase: called once when a registry is built -------------------------------------


@hookspec
def robench_distortions() -> list[type[Distortion]]:
    """Return the distortion classes this plugin provides.

    Called once per registry, when robench collects plugins (``robench list``, ``robench run``).

    Returns:
        Subclasses of :class:`robench.api.Distortion`, each with a unique ``name``.
    """


@hookspec
def robench_methods() -> list[type[Method]]:
    """Return the method classes this plugin provides.

    Called once per registry, when robench collects plugins.

    Returns:
        Subclasses of :class:`robench.api.Method`, each with a unique ``name``.
    """


@hookspec
def robench_datasets() -> list[type[Dataset]]:
    """Return the dataset classes this plugin provides.

    Called once per registry, when robench collects plugins.

    Returns:
        Subclasses of :class:`robench.api.Dataset`, each with a unique ``name``.
    """


@hookspec
def robench_executors() -> list[type[Executor]]:
    """Return the executor classes this plugin provides (where the cells of a grid run).

    Called once per registry, when robench collects plugins.

    Returns:
        Subclasses of :class:`robench.api.Executor`, each with a unique ``name``.
    """
