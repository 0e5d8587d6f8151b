"""One grid cell, computed wherever an executor sends it: a worker process, a Ray task, a SLURM job.

:func:`run_cell_task` is the unit of work: it claims the cell in the run directory, computes it
(adapt the backbone with the method, evaluate), and writes its record, or a failure record with
the reason and traceback when the cell raises or its loss stops being finite. The run directory
is the only channel back, so any executor whose workers see the same filesystem works.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import math
import time
import traceback
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from robench.api import Distortion
from robench.backbone import input_size
from robench.config import DEFAULT_EPOCHS, RunConfig
from robench.context import FitContext
from robench.data import DatasetSplits, Split, label_budget, stratified_subset
from robench.dataset_cache import load_splits
from robench.errors import ConfigError, PluginError
from robench.evaluate import EvalConfig, evaluate_encoder
from robench.host_memory import keep_freed_memory
from robench.method_spec import build_method, parse_method_spec
from robench.pretrain import PretrainConfig, default_cache_dir, initial_backbone
from robench.provenance import environment
from robench.registry import PluginInfo, Registry
from robench.results import CellKey, CellResult, PluginRecord
from robench.rng import derive_seed
from robench.store import RunStore
from robench.training import weights_are_finite

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CellTask:
    """Everything a worker needs for some cells (picklable): the run config, the store settings,
    the cells, and whether recorded failures may be retried. Several cells form one task when
    they share a dataset, method and seed and the method trains them together (``fit_group``)."""

    config: RunConfig
    settings: dict[str, Any]
    keys: tuple[CellKey, ...]
    retry_failed: bool = False


@dataclass(frozen=True)
class CellStatus:
    """What became of a cell: ``done``, ``failed`` (with the error line), ``busy`` (another
    process holds it) or ``skipped`` (already done, or failed and not to be retried)."""

    key: CellKey
    state: str
    message: str = ""


def run_cell_task(task: CellTask) -> list[CellStatus]:
    """Compute a task's cells and record each result or failure in the run directory.

    Cells computed together that fail together are retried one by one, so one cell's failure
    (a NaN loss under one distortion, say) never takes its group down.
    """
    keep_freed_memory()
    store = RunStore(task.config.out, task.settings)
    statuses: list[CellStatus] = []
    with contextlib.ExitStack() as held:
        todo = []
        for key in task.keys:
            if not held.enter_context(store.claim(key)):
                statuses.append(CellStatus(key, "busy"))
            elif store.load(key) is not None:
                statuses.append(CellStatus(key, "skipped", "already done"))
            elif store.load_failure(key) is not None and not task.retry_failed:
                statuses.append(CellStatus(key, "skipped", "failed before"))
            else:
                todo.append(key)
        if len(todo) > 1:
            try:
                results = compute_cells(task.config, todo, store.settings_hash)
            except Exception as exc:  # isolation: fall back to one cell at a time
                logger.warning("cells %s computed together failed (%s); computing them one by one",
                               ", ".join(map(str, todo)), type(exc).__name__)
            else:
                return statuses + [_record_success(store, r) for r in results]
        return statuses + [_run_one(store, task.config, key) for key in todo]


def _run_one(store: RunStore, config: RunConfig, key: CellKey) -> CellStatus:
    try:
        (result,) = compute_cells(config, [key], store.settings_hash)
    except Exception as exc:  # the isolation boundary: one cell's failure must not stop the grid
        message = f"{type(exc).__name__}: {exc}".splitlines()[0]
        store.save_failure(key, message, traceback.format_exc())
        logger.warning("cell %s failed: %s", key, message)
        return CellStatus(key, "failed", message)
    return _record_success(store, result)


def _record_success(store: RunStore, result: CellResult) -> CellStatus:
    store.save(result)
    store.clear_failure(result.key)
    _log_result(result)
    return CellStatus(result.key, "done")


def compute_cells(config: RunConfig, keys: list[CellKey], settings_hash: str) -> list[CellResult]:
    """Adapt the starting backbone with the cells' method and evaluate each result (no file is
    written). Several cells (one dataset, method and seed) go through the method's ``fit_group``."""
    registry, data, backbone, weights_id = prepare_dataset(config, keys[0].dataset)
    spec = parse_method_spec(keys[0].method)
    method = build_method(registry, spec)
    # Plugins that draw from torch's global RNG (e.g. a new head's init) stay reproducible too.
    torch.manual_seed(derive_seed("cell", *dataclasses.astuple(keys[0])))
    budgets = [label_budget(data.train.labels, config.label_fraction, key.seed, data.name) for key in keys]
    contexts = [_context(config, registry, data, backbone, method, key, labelled)
                for key, labelled in zip(keys, budgets)]
    started = time.perf_counter()
    encoders = method.fit_group(contexts) if len(keys) > 1 else [method.fit(contexts[0])]
    fit_s = (time.perf_counter() - started) / len(keys)
    return [_evaluate(config, registry, data, weights_id, method, ctx, key, labelled, encoder, fit_s, settings_hash,
                      len(keys))
            for ctx, key, labelled, encoder in zip(contexts, keys, budgets, encoders)]


def can_group(registry: Registry, method_text: str) -> bool:
    """Whether a method spec trains several cells together (it defines ``fit_group``)."""
    return hasattr(registry.get("method", parse_method_spec(method_text).name), "fit_group")


def _context(config: RunConfig, registry: Registry, data: DatasetSplits, backbone: nn.Module, method,
             key: CellKey, labelled: torch.Tensor) -> FitContext:
    distortion = make_distortion(registry.info("distortion", key.distortion), config)
    return FitContext(
        method=method, backbone=copy.deepcopy(backbone), train_images=data.train.images,
        labelled_indices=labelled, labelled_labels=data.train.labels[labelled.to(data.train.labels.device)],
        num_classes=data.num_classes, hflip=data.hflip, distortion=distortion,
        severities=tuple(config.severities or distortion.severities), dataset=data.name,
        label_fraction=config.label_fraction, seed=key.seed, steps=training_steps(config, len(data.train)),
        batch_size=config.batch_size, device=config.torch_device(), show_progress=not config.quiet,
        compile=config.compile,
    )


def _evaluate(config: RunConfig, registry: Registry, data: DatasetSplits, weights_id: str, method,
              ctx: FitContext, key: CellKey, labelled: torch.Tensor, encoder: nn.Module, fit_s: float,
              settings_hash: str, group: int) -> CellResult:
    method_info = registry.info("method", method.name)
    if not isinstance(encoder, nn.Module) or not hasattr(encoder, "forward_features"):
        raise PluginError(
            f"method {key.method!r} ({method_info.origin}) returned {type(encoder).__name__} from "
            "fit; it must return the encoder (a timm VisionTransformer)"
        )
    if not weights_are_finite(encoder):
        raise FloatingPointError(f"method {key.method!r} returned an encoder with non-finite weights "
                                 "(its training diverged)")
    distortion = ctx.distortion
    started = time.perf_counter()
    evaluation = evaluate_encoder(encoder, data, labelled, distortion, ctx.severities, key.seed, EvalConfig(),
                                  ctx.device)
    eval_s = time.perf_counter() - started
    height, width = data.image_size
    return CellResult(
        key=key, settings_hash=settings_hash, backbone=config.backbone.label,
        weights=weights_id, label_fraction=config.label_fraction,
        uses_labels=bool(method.uses_labels), uses_clean_images=bool(method.uses_clean_images),
        severities=ctx.severities, accuracy=evaluation.accuracy, predictions=evaluation.predictions,
        test_labels=data.test.labels.cpu().tolist(), history=ctx.history,
        method=_record(method_info, {"steps": ctx.steps, "batch_size": config.batch_size,
                                     "options": _options(method)}),
        distortion=_record(registry.info("distortion", key.distortion),
                           {"group": distortion.group, "table": distortion.table(height, width)}),
        dataset=_record(registry.info("dataset", key.dataset), {
            "num_train": len(data.train), "num_test": len(data.test),
            "num_labelled": int(labelled.numel()), "image_size": [height, width]}),
        timing={"fit_s": round(fit_s, 3), "eval_s": round(eval_s, 3), "trained_together": group},
        environment=environment(ctx.device),
    )


def training_steps(config: RunConfig, num_train: int) -> int:
    """The step budget: ``--steps``, or ``--epochs`` passes over the train split."""
    return config.steps or (config.epochs or DEFAULT_EPOCHS) * math.ceil(num_train / config.batch_size)


def pretrain_config(config: RunConfig) -> PretrainConfig:
    """The clean pretraining recipe of a run (``--pretrain``, ``--pretrain-epochs``)."""
    return PretrainConfig(mode=config.pretrain, epochs=config.pretrain_epochs)


def starting_backbone(config: RunConfig, data: DatasetSplits, registry: Registry) -> tuple[nn.Module, str]:
    """The backbone every method of a dataset starts from (pretrained once, then cached)."""
    return initial_backbone(
        config.backbone, data, config.weights, pretrain_config(config), config.cache_dir or default_cache_dir(),
        config.torch_device(), show_progress=not config.quiet, registry=registry,
    )


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
    """Load a dataset's splits through its plugin at the backbone's input size (cached when the
    plugin reads files), check them, and apply ``--max-train/test``."""
    info = registry.info("dataset", name, "--datasets")
    dataset = info.cls()
    dataset.download = config.download
    size = input_size(config.backbone)
    loaded = load_splits(dataset, name, info.version, config.data_root, size,
                         (config.cache_dir or default_cache_dir()))
    splits = {}
    for split in ("train", "test"):
        images, labels = loaded[split]
        _check_split(info, split, images, labels, dataset.num_classes)
        limit = config.max_train if split == "train" else config.max_test
        if limit is not None and limit < labels.numel():
            keep = stratified_subset(labels, limit, derive_seed("max", split, name))
            images, labels = images[keep], labels[keep]
        splits[split] = Split(images.contiguous(), labels)
    if splits["train"].images.shape[1:] != splits["test"].images.shape[1:]:
        raise PluginError(f"dataset {name!r} ({info.origin}) has train and test images of different sizes")
    return DatasetSplits(name, dataset.num_classes, dataset.hflip, splits["train"], splits["test"])


# A worker keeps the registry, the dataset on its device and the starting backbone between cells.
_WORKER_STATE: dict[tuple[str, str], tuple[Registry, DatasetSplits, nn.Module, str]] = {}


def prepare_dataset(
    config: RunConfig, dataset: str, data: DatasetSplits | None = None
) -> tuple[Registry, DatasetSplits, nn.Module, str]:
    """Load (or take) a dataset, move it to the device and get the starting backbone, pretraining
    it if the cache has none; kept for the following cells of this process."""
    key = (dataset, repr(config))
    if key not in _WORKER_STATE:
        _WORKER_STATE.clear()  # one dataset at a time: do not hold several on the device
        registry = Registry(config.plugins)
        if data is None:
            data = load_dataset(registry, dataset, config)
        data = data.to(config.torch_device())
        backbone, weights_id = starting_backbone(config, data, registry)
        _WORKER_STATE[key] = (registry, data, backbone, weights_id)
    return _WORKER_STATE[key]


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


def _log_result(result: CellResult) -> None:
    acc = result.accuracy["linear"]
    logger.info("%s: linear probe clean %.3f, severity mean %.3f (fit %.1fs, eval %.1fs)", result.key,
                acc["clean"], sum(acc[str(s)] for s in result.severities) / len(result.severities),
                result.timing["fit_s"], result.timing["eval_s"])


def _record(info: PluginInfo, details: dict[str, Any]) -> PluginRecord:
    return PluginRecord(info.name, info.origin, info.version, details)


def _options(plugin: object) -> dict[str, Any]:
    options = getattr(plugin, "options", None)
    return dataclasses.asdict(options) if dataclasses.is_dataclass(options) else {}
