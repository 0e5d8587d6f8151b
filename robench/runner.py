"""The runner: expand the grid, adapt and evaluate every cell, write leaderboards; resumable.

The grid is datasets x distortions x methods x seeds. Everything is validated before anything is
written; finished cells are skipped on a re-run of the same command, so an interrupted run
resumes where it stopped.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from robench.api import Distortion
from robench.backbone import file_digest
from robench.config import DEFAULT_EPOCHS, RunConfig, make_config
from robench.context import FitContext
from robench.data import DatasetSplits, Split, label_budget, stratified_subset
from robench.errors import ConfigError, PluginError
from robench.evaluate import EvalConfig, evaluate_encoder
from robench.leaderboard import build as build_leaderboard
from robench.leaderboard import write_csv
from robench.method_spec import MethodSpec, build_method, parse_method_spec
from robench.pretrain import PretrainConfig, default_cache_dir, initial_backbone
from robench.provenance import environment
from robench.registry import PluginInfo, Registry
from robench.results import CellKey, CellResult, PluginRecord
from robench.rng import derive_seed
from robench.store import RunStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plan:
    """A validated run: the config, the registry, resolved names and the cells."""

    config: RunConfig
    registry: Registry
    datasets: tuple[str, ...]
    distortions: tuple[str, ...]
    methods: tuple[str, ...]
    cells: tuple[CellKey, ...]

    def severities(self, distortion: str) -> tuple[int, ...]:
        """Severities evaluated for ``distortion``."""
        return self.config.severities or self.registry.get("distortion", distortion).severities


@dataclass(frozen=True)
class RunOutcome:
    """What a run produced: the leaderboard and its summary, the files written, and how many
    cells were computed or reused."""

    leaderboard: pd.DataFrame
    summary: pd.DataFrame
    run_dir: Path
    csv_paths: dict[str, Path]
    computed: int
    reused: int


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
    datasets = _resolve(registry, "dataset", config.datasets, "--datasets")
    methods = tuple(build_method_spec(registry, text).text for text in config.methods)
    distortions = tuple(registry.resolve_distortions(config.distortions))
    for name in distortions:
        distortion = make_distortion(registry.info("distortion", name), config)
        for severity in config.severities or ():
            distortion.check_severity(severity, source="--severities")
    if config.reference != "none" and config.reference not in methods:
        raise ConfigError(f"reference method {config.reference!r} (from --reference) is not among the "
                          f"methods of the run; choose from: {', '.join(methods)}")
    cells = tuple(
        CellKey(d, t, m, s)
        for d in datasets for t in distortions for m in methods for s in config.seeds
    )
    return Plan(config, registry, datasets, distortions, methods, cells)


def execute(config: RunConfig) -> RunOutcome:
    """Validate, then compute every missing cell and write one leaderboard CSV per dataset."""
    the_plan = plan(config)
    device = config.torch_device()
    store = RunStore(config.out, run_settings(config))
    store.check_compatible()
    loaded = {name: load_dataset(the_plan.registry, name, config) for name in the_plan.datasets}
    store.open(
        {"datasets": list(the_plan.datasets), "distortions": list(the_plan.distortions),
         "methods": list(the_plan.methods), "seeds": list(config.seeds)},
        environment(device),
    )
    bar = tqdm(total=len(the_plan.cells), desc="cells", unit="cell", disable=config.quiet)
    computed = reused = 0
    tables, summaries, paths = [], [], {}
    for name, data in loaded.items():
        keys = [k for k in the_plan.cells if k.dataset == name]
        todo = [k for k in keys if store.load(k) is None]
        reused += len(keys) - len(todo)
        bar.update(len(keys) - len(todo))
        if todo:
            _compute_cells(the_plan, data.to(device), todo, store, device, bar)
            computed += len(todo)
        results = [store.load(k) for k in keys]
        assert all(r is not None for r in results), "a computed cell could not be read back"
        table, summary = build_leaderboard(results, the_plan.methods, config.reference)
        paths.update(write_leaderboards(store, name, table, summary))
        tables.append(table)
        summaries.append(summary)
    bar.close()
    return RunOutcome(_concat(tables), _concat(summaries), config.out, paths, computed, reused)


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


def write_leaderboards(store: RunStore, dataset: str, table: pd.DataFrame, summary: pd.DataFrame) -> dict[str, Path]:
    """Write a dataset's leaderboard and summary CSVs into the run directory; returns their paths."""
    paths = {dataset: store.leaderboard_path(dataset), f"{dataset} summary": store.summary_path(dataset)}
    write_csv(table, paths[dataset])
    write_csv(summary, paths[f"{dataset} summary"])
    return paths


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def make_distortion(info: PluginInfo, config: RunConfig) -> Distortion:
    """An instance of a distortion plugin with the run's severity-table choice applied."""
    distortion = info.cls()
    if config.severity_table != "auto" and distortion.tables:
        if config.severity_table not in distortion.tables:
            raise ConfigError(
                f"distortion {info.name!r} has no table {config.severity_table!r} (from "
                f"--severity-table); it offers: {', '.join(distortion.tables)}"
            )
        distortion.table_override = config.severity_table
    return distortion


def load_dataset(registry: Registry, name: str, config: RunConfig) -> DatasetSplits:
    """Load a dataset's splits through its plugin, check them, and apply ``--max-train/test``."""
    info = registry.info("dataset", name, "--datasets")
    dataset = info.cls()
    splits = {}
    for split in ("train", "test"):
        images, labels = dataset.load(split, config.data_root)
        _check_split(info, split, images, labels, dataset.num_classes)
        limit = config.max_train if split == "train" else config.max_test
        if limit is not None and limit < labels.numel():
            keep = stratified_subset(labels, limit, derive_seed("max", split, name))
            images, labels = images[keep], labels[keep]
        splits[split] = Split(images.contiguous(), labels)
    if splits["train"].images.shape[1:] != splits["test"].images.shape[1:]:
        raise PluginError(f"dataset {name!r} ({info.origin}) has train and test images of different sizes")
    return DatasetSplits(name, dataset.num_classes, dataset.hflip, splits["train"], splits["test"])


def run_settings(config: RunConfig) -> dict[str, Any]:
    """The settings that determine a cell's result (the grid lists and paths excluded)."""
    return {
        "backbone": dataclasses.asdict(config.backbone),
        "weights": f"{config.weights.name}@{file_digest(config.weights)}" if config.weights else None,
        "pretrain": dataclasses.asdict(PretrainConfig(epochs=config.pretrain_epochs)),
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


def _compute_cells(
    the_plan: Plan, data: DatasetSplits, keys: Sequence[CellKey], store: RunStore,
    device: torch.device, bar: tqdm,
) -> None:
    config = the_plan.config
    backbone, weights_id = initial_backbone(
        config.backbone, data, config.weights, PretrainConfig(epochs=config.pretrain_epochs),
        config.cache_dir or default_cache_dir(), device, show_progress=not config.quiet,
    )
    steps = config.steps or (config.epochs or DEFAULT_EPOCHS) * math.ceil(len(data.train) / config.batch_size)
    for key in keys:
        bar.set_postfix_str(str(key))
        result = _run_cell(the_plan, data, key, backbone, weights_id, steps, device, store.settings_hash)
        store.save(result)
        acc = result.accuracy["linear"]
        logger.info("%s: linear probe clean %.3f, severity mean %.3f (fit %.1fs, eval %.1fs)", key,
                    acc["clean"], sum(acc[str(s)] for s in result.severities) / len(result.severities),
                    result.timing["fit_s"], result.timing["eval_s"])
        bar.update()


def _run_cell(
    the_plan: Plan, data: DatasetSplits, key: CellKey, backbone: nn.Module, weights_id: str,
    steps: int, device: torch.device, settings_hash: str,
) -> CellResult:
    config = the_plan.config
    spec = parse_method_spec(key.method)
    method_info = the_plan.registry.info("method", spec.name)
    distortion_info = the_plan.registry.info("distortion", key.distortion)
    method, distortion = build_method(the_plan.registry, spec), make_distortion(distortion_info, config)
    severities = the_plan.severities(key.distortion)
    labelled = label_budget(data.train.labels, config.label_fraction, key.seed, data.name)
    # Plugins that draw from torch's global RNG (e.g. a new head's init) stay reproducible too.
    torch.manual_seed(derive_seed("cell", *dataclasses.astuple(key)))
    ctx = FitContext(
        method=method, backbone=copy.deepcopy(backbone), train_images=data.train.images,
        labelled_indices=labelled, labelled_labels=data.train.labels[labelled.to(data.train.labels.device)],
        num_classes=data.num_classes, hflip=data.hflip, distortion=distortion, severities=severities,
        dataset=data.name, label_fraction=config.label_fraction, seed=key.seed, steps=steps,
        batch_size=config.batch_size, device=device, show_progress=not config.quiet,
    )
    started = time.perf_counter()
    encoder = method.fit(ctx)
    fit_s = time.perf_counter() - started
    if not isinstance(encoder, nn.Module) or not hasattr(encoder, "forward_features"):
        raise PluginError(
            f"method {key.method!r} ({method_info.origin}) returned {type(encoder).__name__} from "
            "fit; it must return the encoder (a timm VisionTransformer)"
        )
    started = time.perf_counter()
    evaluation = evaluate_encoder(encoder, data, labelled, distortion, severities, key.seed,
                                  EvalConfig(), device)
    eval_s = time.perf_counter() - started
    height, width = data.image_size
    return CellResult(
        key=key, settings_hash=settings_hash, backbone=config.backbone.label,
        weights=weights_id, label_fraction=config.label_fraction,
        uses_labels=bool(method.uses_labels), uses_clean_images=bool(method.uses_clean_images),
        severities=tuple(severities), accuracy=evaluation.accuracy, predictions=evaluation.predictions,
        test_labels=data.test.labels.cpu().tolist(), history=ctx.history,
        method=_record(method_info, {"steps": steps, "batch_size": config.batch_size,
                                     "options": _options(method)}),
        distortion=_record(distortion_info, {"group": distortion.group,
                                             "table": distortion.table(height, width)}),
        dataset=_record(the_plan.registry.info("dataset", key.dataset), {
            "num_train": len(data.train), "num_test": len(data.test),
            "num_labelled": int(labelled.numel()), "image_size": [height, width]}),
        timing={"fit_s": round(fit_s, 3), "eval_s": round(eval_s, 3)},
        environment=environment(device),
    )


def build_method_spec(registry: Registry, text: str) -> MethodSpec:
    """Parse a ``--methods`` item and check it builds (name, preset, option values)."""
    spec = parse_method_spec(text)
    build_method(registry, spec)
    return spec


def _resolve(registry: Registry, kind: str, names: Sequence[str], source: str) -> tuple[str, ...]:
    for name in names:
        registry.info(kind, name, source)
    return tuple(names)


def _check_split(info: PluginInfo, split: str, images: torch.Tensor, labels: torch.Tensor,
                 num_classes: int) -> None:
    where = f"dataset {info.name!r} ({info.origin}), split {split!r}"
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
        raise PluginError(f"{where} returned images {tuple(images.shape)} {images.dtype}; "
                          "expected uint8 (N, 3, H, W)")
    if labels.dtype != torch.int64 or labels.shape != (images.shape[0],):
        raise PluginError(f"{where} returned labels {tuple(labels.shape)} {labels.dtype}; "
                          f"expected int64 ({images.shape[0]},)")
    if labels.numel() == 0:
        raise PluginError(f"{where} is empty")
    if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        raise PluginError(f"{where} has labels outside [0, {num_classes})")


def _record(info: PluginInfo, details: dict[str, Any]) -> PluginRecord:
    return PluginRecord(info.name, info.origin, info.version, details)


def _options(plugin: object) -> dict[str, Any]:
    options = getattr(plugin, "options", None)
    return dataclasses.asdict(options) if dataclasses.is_dataclass(options) else {}
