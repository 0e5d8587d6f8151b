"""The runner: expand the grid, send missing cells to an executor, write leaderboards; resumable.

The grid is datasets x distortions x methods x seeds. Everything is validated before anything is
written. Each cell's result (or failure) is a file in the run directory, written atomically, so
a run killed at any moment resumes with the same command: finished cells are skipped, a torn or
foreign record is recomputed, and cells another live process is computing are waited for.
A cell that raises is recorded as failed and the others go on; ``--retry-failed`` reruns it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from robench.backbone import file_digest
from robench.cells import (
    CellStatus,
    CellTask,
    can_group,
    load_dataset,
    make_distortion,
    prepare_dataset,
    pretrain_config,
    run_cell_task,
)
from robench.config import DEFAULT_EPOCHS, RunConfig, make_config
from robench.config_file import config_to_toml
from robench.errors import ConfigError
from robench.evaluate import EvalConfig
from robench.leaderboard import build as build_leaderboard
from robench.leaderboard import write_csv
from robench.method_spec import MethodSpec, build_method, parse_method_spec
from robench.provenance import environment
from robench.registry import Registry
from robench.results import CellKey
from robench.store import RunStore

logger = logging.getLogger(__name__)

POLL_SECONDS = 2.0


@dataclass(frozen=True)
class Plan:
    """A validated run: the config, the registry, resolved names and the cells."""

    config: RunConfig
    registry: Registry
    datasets: tuple[str, ...]
    distortions: tuple[str, ...]
    methods: tuple[str, ...]
    cells: tuple[CellKey, ...]

    def grid(self) -> dict[str, list[Any]]:
        """The grid's axes, as recorded in the manifest."""
        return {"datasets": list(self.datasets), "distortions": list(self.distortions),
                "methods": list(self.methods), "seeds": list(self.config.seeds)}


@dataclass(frozen=True)
class RunOutcome:
    """What a run produced: the leaderboard and its summary, the files written, how many cells
    were computed or reused, and the cells that failed (key -> error line)."""

    leaderboard: pd.DataFrame
    summary: pd.DataFrame
    run_dir: Path
    csv_paths: dict[str, Path]
    computed: int
    reused: int
    failed: dict[CellKey, str] = field(default_factory=dict)


def run(**kwargs: Any) -> pd.DataFrame:
    """Run a benchmark grid and return its leaderboard (long format, one row per distortion,
    severity, method and metric).

    Takes the same options as ``robench run`` (see :class:`robench.config.RunConfig`), e.g.
    ``robench.run(datasets="digits", methods=["none", "finetune"], seeds=[0, 1], steps=20)``.

    Raises:
        RobenchError: for invalid options or broken plugins (nothing is written then).
    """
    return execute(make_config(**kwargs)).leaderboard


def plan(config: RunConfig) -> Plan:
    """Resolve names against the plugin registry and check severities; writes nothing."""
    registry = Registry(config.plugins)
    datasets = tuple(registry.info("dataset", name, "--datasets").name for name in config.datasets)
    methods = tuple(build_method_spec(registry, text).text for text in config.methods)
    distortions = tuple(registry.resolve_distortions(config.distortions))
    for name in distortions:
        distortion = make_distortion(registry.info("distortion", name), config)
        for severity in config.severities or ():
            distortion.check_severity(severity, source="--severities")
    if config.reference != "none" and config.reference not in methods:
        raise ConfigError(f"reference method {config.reference!r} (from --reference) is not among the "
                          f"methods of the run; choose from: {', '.join(methods)}")
    registry.get("executor", config.executor, "--executor")(config).check()
    cells = tuple(
        CellKey(d, t, m, s)
        for d in datasets for t in distortions for m in methods for s in config.seeds
    )
    return Plan(config, registry, datasets, distortions, methods, cells)


def describe(config: RunConfig) -> str:
    """The dry run: the grid, its size, and (for an existing run directory) its progress."""
    the_plan = plan(config)
    lines = [f"{name}: {', '.join(map(str, values))}" for name, values in the_plan.grid().items()]
    lines.append(f"severities: {', '.join(map(str, config.severities)) if config.severities else 'all of each distortion'}")
    lines.append(f"cells: {len(the_plan.cells)} = " + " x ".join(str(len(v)) for v in the_plan.grid().values()))
    store = RunStore(config.out, run_settings(config))
    if (config.out / "manifest.json").is_file():
        store.check_compatible()
        counts = _progress(store, the_plan.cells)
        lines.append(f"in {config.out}: " + ", ".join(f"{len(v)} {k}" for k, v in counts.items()))
    lines.append(f"executor: {config.executor}; nothing was run (dry run)")
    return "\n".join(lines)


def execute(config: RunConfig, retry_failed: bool = False) -> RunOutcome:
    """Validate, compute every missing cell through the executor, and write one leaderboard and
    summary per dataset from the finished cells."""
    the_plan = plan(config)
    settings = run_settings(config)
    store = RunStore(config.out, settings)
    store.check_compatible()
    loaded = {name: load_dataset(the_plan.registry, name, config) for name in the_plan.datasets}
    store.open(the_plan.grid(), environment(config.torch_device()), config_to_toml(config))
    executor = the_plan.registry.get("executor", config.executor, "--executor")(config)
    bar = tqdm(total=len(the_plan.cells), desc="cells", unit="cell", disable=config.quiet)
    states: dict[str, int] = {}
    for name in loaded:
        keys = [k for k in the_plan.cells if k.dataset == name]
        todo = [k for k in keys if _needs_work(store, k, retry_failed)]
        bar.update(len(keys) - len(todo))
        if not todo:
            continue
        prepare_dataset(config, name, loaded[name])  # pretrains once, here, before workers start
        tasks = _tasks(the_plan, todo, settings, retry_failed)
        busy = []
        for status in executor.run(tasks):
            busy += [status.key] if status.state == "busy" else []
            states[status.state] = states.get(status.state, 0) + 1
            bar.update(status.state != "busy")
        for status in _wait_for(store, busy, config, settings, retry_failed):
            states[status.state] = states.get(status.state, 0) + 1
            bar.update()
    bar.close()
    return _finish(store, the_plan, config.reference, states.get("done", 0), states.get("failed", 0))


def rebuild_leaderboards(run_dir: Path, reference: str = "none") -> RunOutcome:
    """Rebuild the leaderboards of a run directory from its stored cells (no training)."""
    store = RunStore.existing(run_dir)
    results = store.load_all()
    if not results:
        raise ConfigError(f"run directory {str(run_dir)!r} holds no finished cell")
    methods = store.manifest().get("grid", {}).get("methods", [])
    known = {r.key.method for r in results}
    if reference != "none" and reference not in known:
        raise ConfigError(f"reference method {reference!r} (from --reference) has no results in "
                          f"{str(run_dir)!r}; choose from: {', '.join(sorted(known))}")
    tables, summaries, paths = [], [], {}
    for dataset in sorted({r.key.dataset for r in results}):
        table, summary = build_leaderboard([r for r in results if r.key.dataset == dataset], methods, reference)
        paths.update(write_leaderboards(store, dataset, table, summary))
        tables.append(table)
        summaries.append(summary)
    return RunOutcome(_concat(tables), _concat(summaries), run_dir, paths, 0, len(results))


def status(run_dir: Path) -> dict[str, list[tuple[CellKey, str]]]:
    """Cells of a run directory's grid by state: done, failed (with the error), running (claimed
    by a live process) and pending."""
    store = RunStore.existing(run_dir)
    grid = store.manifest().get("grid", {})
    keys = [CellKey(d, t, m, s) for d in grid.get("datasets", []) for t in grid.get("distortions", [])
            for m in grid.get("methods", []) for s in grid.get("seeds", [])]
    out: dict[str, list[tuple[CellKey, str]]] = {"done": [], "failed": [], "running": [], "pending": []}
    for key in keys:
        failure = store.load_failure(key)
        if store.load(key) is not None:
            out["done"].append((key, ""))
        elif store.is_claimed(key):
            out["running"].append((key, ""))
        elif failure is not None:
            out["failed"].append((key, failure.get("error", "")))
        else:
            out["pending"].append((key, ""))
    return out


def write_leaderboards(store: RunStore, dataset: str, table: pd.DataFrame, summary: pd.DataFrame) -> dict[str, Path]:
    """Write a dataset's leaderboard and summary CSVs into the run directory; returns their paths."""
    paths = {dataset: store.leaderboard_path(dataset), f"{dataset} summary": store.summary_path(dataset)}
    write_csv(table, paths[dataset])
    write_csv(summary, paths[f"{dataset} summary"])
    return paths


def run_settings(config: RunConfig) -> dict[str, Any]:
    """The settings that determine a cell's result (the grid lists, paths and executor excluded)."""
    return {
        "backbone": dataclasses.asdict(config.backbone),
        "weights": _weights_id(config.weights),
        "pretrain": dataclasses.asdict(pretrain_config(config)),
        "evaluation": dataclasses.asdict(EvalConfig()),
        "label_fraction": config.label_fraction,
        "epochs": None if config.steps else (config.epochs or DEFAULT_EPOCHS),
        "steps": config.steps,
        "batch_size": config.batch_size,
        "severities": list(config.severities) if config.severities else None,
        "severity_table": config.severity_table,
        "max_train": config.max_train,
        "max_test": config.max_test,
    }


def _weights_id(weights: str | None) -> str | None:
    if weights is None or weights.startswith("timm:"):
        return weights
    return f"{Path(weights).name}@{file_digest(Path(weights))}"


def build_method_spec(registry: Registry, text: str) -> MethodSpec:
    """Parse a ``--methods`` item and check it builds (name, preset, option values)."""
    spec = parse_method_spec(text)
    build_method(registry, spec)
    return spec


def _needs_work(store: RunStore, key: CellKey, retry_failed: bool) -> bool:
    if store.load(key) is not None:
        return False
    return retry_failed or store.load_failure(key) is None


def _wait_for(store: RunStore, keys: Sequence[CellKey], config: RunConfig, settings: dict[str, Any],
              retry_failed: bool) -> list[CellStatus]:
    """Cells another process was computing: wait until each is released, then take over any
    that it left unfinished (the other process died)."""
    statuses = []
    for key in keys:
        logger.info("waiting for %s, claimed by another process", key)
        while store.is_claimed(key):
            time.sleep(POLL_SECONDS)
        if _needs_work(store, key, retry_failed):
            statuses.extend(run_cell_task(CellTask(config, settings, (key,), retry_failed)))
        else:
            statuses.append(CellStatus(key, "skipped"))
    return statuses


def _tasks(the_plan: Plan, keys: list[CellKey], settings: dict[str, Any], retry_failed: bool) -> list[CellTask]:
    """One task per cell, except that the distortions of one (dataset, method, seed) form one task
    when the method trains them together and ``share_teacher`` is on."""
    config = the_plan.config
    groups: dict[tuple, list[CellKey]] = {}
    for key in keys:
        together = config.share_teacher and can_group(the_plan.registry, key.method)
        groups.setdefault((key.dataset, key.method, key.seed) if together else (key,), []).append(key)
    return [CellTask(config, settings, tuple(group), retry_failed) for group in groups.values()]


def _progress(store: RunStore, keys: Sequence[CellKey]) -> dict[str, list[CellKey]]:
    counts: dict[str, list[CellKey]] = {"done": [], "failed": [], "pending": []}
    for key in keys:
        state = "done" if store.load(key) else "failed" if store.load_failure(key) else "pending"
        counts[state].append(key)
    return counts


def _finish(store: RunStore, the_plan: Plan, reference: str, done_now: int, failed_now: int) -> RunOutcome:
    results = [r for r in (store.load(k) for k in the_plan.cells) if r is not None]
    failed = {k: (store.load_failure(k) or {}).get("error", "unknown") for k in the_plan.cells
              if store.load(k) is None}
    tables, summaries, paths = [], [], {}
    for dataset in the_plan.datasets:
        mine = [r for r in results if r.key.dataset == dataset]
        if mine:
            table, summary = build_leaderboard(mine, the_plan.methods, reference)
            paths.update(write_leaderboards(store, dataset, table, summary))
            tables.append(table)
            summaries.append(summary)
    return RunOutcome(_concat(tables), _concat(summaries), the_plan.config.out, paths, done_now + failed_now,
                      len(results) - done_now, failed)


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
