"""One grid cell, computed wherever an executor sends it: a worker process, a Ray task, a SLURM job.

:func:`run_cell_task` is the unit of work: it claims the cell in the run directory, computes it
(adapt the backbone with the method, evaluate), and writes its record, or a failure record with
the reason and traceback when the cell raises or its loss stops being finite. The run directory
is the only channel back, so any executor whose workers see the same filesystem works.
"""

from __future__ import annotations

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
from robench.method_spec import build_method, parse_method_spec
from robench.pretrain import PretrainConfig, default_cache_dir, initial_backbone
from robench.provenance import environment
from robench.registry import PluginInfo, Registry
from robench.results import CellKey, CellResult, PluginRecord
from robench.rng import derive_seed
from robench.store import RunStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CellTask:
    """Everything a worker needs for one cell (picklable): the run config, the store settings,
    the cell, and whether a recorded failure may be retried."""

    config: RunConfig
    settings: dict[str, Any]
    key: CellKey
    retry_failed: bool = False


@dataclass(frozen=True)
class CellStatus:
    """What became of a task: ``done``, ``failed`` (with the error line), ``busy`` (another
    process holds the cell) or ``skipped`` (already done, or failed and not to be retried)."""

    key: CellKey
    state: str
    message: str = ""


def run_cell_task(task: CellTask) -> CellStatus:
    """Compute one cell and record its result or its failure in the run directory."""
    store = RunStore(task.config.out, task.settings)
    with store.claim(task.key) as claimed:
        if not claimed:
            return CellStatus(task.key, "busy")
        if store.load(task.key) is not None:
            return CellStatus(task.key, "skipped", "already done")
        if store.load_failure(task.key) is not None and not task.retry_failed:
            return CellStatus(task.key, "skipped", "failed before")
        try:
            result = compute_cell(task.config, task.key, store.settings_hash)
        except Exception as exc:  # the isolation boundary: one cell's failure must not stop the grid
            message = f"{type(exc).__name__}: {exc}".splitlines()[0]
            store.save_failure(task.key, message, traceback.format_exc())
            logger.warning("cell %s failed: %s", task.key, message)
            return CellStatus(task.key, "failed", message)
        store.save(result)
        store.clear_failure(task.key)
        _log_result(result)
        return CellStatus(task.key, "done")


def compute_cell(config: RunConfig, key: CellKey, settings_hash: str) -> CellResult:
    """Adapt the starting backbone with the cell's method and evaluate it (no file written)."""
    registry, data, backbone, weights_id = prepare_dataset(config, key.dataset)
    spec = parse_method_spec(key.method)
    method_info = registry.info("method", spec.name)
    distortion_info = registry.info("distortion", key.distortion)
    method, distortion = build_method(registry, spec), make_distortion(distortion_info, config)
    severities = tuple(config.severities or distortion.severities)
    labelled = label_budget(data.train.labels, config.label_fraction, key.seed, data.name)
    device = config.torch_device()
    steps = training_steps(config, len(data.train))
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
    evaluation = evaluate_encoder(encoder, data, labelled, distortion, severities, key.seed, EvalConfig(), device)
    eval_s = time.perf_counter() - started
    height, width = data.image_size
    return CellResult(
        key=key, settings_hash=settings_hash, backbone=config.backbone.label,
        weights=weights_id, label_fraction=config.label_fraction,
        uses_labels=bool(method.uses_labels), uses_clean_images=bool(method.uses_clean_images),
        severities=severities, accuracy=evaluation.accuracy, predictions=evaluation.predictions,
        test_labels=data.test.labels.cpu().tolist(), history=ctx.history,
        method=_record(method_info, {"steps": steps, "batch_size": config.batch_size, "options": _options(method)}),
        distortion=_record(distortion_info, {"group": distortion.group, "table": distortion.table(height, width)}),
        dataset=_record(registry.info("dataset", key.dataset), {
            "num_train": len(data.train), "num_test": len(data.test),
            "num_labelled": int(labelled.numel()), "image_size": [height, width]}),
        timing={"fit_s": round(fit_s, 3), "eval_s": round(eval_s, 3)},
        environment=environment(device),
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
