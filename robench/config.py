"""The run configuration: one frozen dataclass whose fields are the flags of ``robench run``.

:func:`make_config` builds it from keyword arguments as a notebook or the CLI gives them
(comma-separated strings or sequences), and checks every value that can be checked without
the plugin registry. Errors name the flag and the valid values.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from robench.backbone import BackboneSpec, check_weights_path
from robench.errors import ConfigError, unknown_choice
from robench.pretrain import PRETRAIN_MODES, TIMM_PREFIX

DEFAULT_EPOCHS = 5
SEVERITY_TABLE_CHOICES = ("auto", "imagenet-c", "cifar-10-c")


@dataclass(frozen=True)
class RunConfig:
    """Everything ``robench run`` needs; field names match the flags (``label_fraction`` is
    ``--label-fraction``). See ``robench run --help`` for each field's meaning."""

    datasets: tuple[str, ...] = ("digits",)
    distortions: tuple[str, ...] = ("gaussian_noise", "gaussian_blur")
    methods: tuple[str, ...] = ("none", "finetune")
    seeds: tuple[int, ...] = (0, 1, 2)
    severities: tuple[int, ...] | None = None
    severity_table: str = "auto"
    label_fraction: float = 0.1
    epochs: int | None = None
    steps: int | None = None
    batch_size: int = 128
    backbone: BackboneSpec = field(default_factory=BackboneSpec)
    weights: str | None = None
    pretrain: str = "supervised"
    pretrain_epochs: int = 50
    max_train: int | None = None
    max_test: int | None = None
    device: str = "auto"
    out: Path = Path("runs/default")
    cache_dir: Path | None = None
    data_root: Path | None = None
    download: bool = False
    plugins: tuple[str, ...] = ()
    reference: str = "none"
    executor: str = "local"
    ray_address: str | None = None
    gpus_per_cell: float = 0.0
    cpus_per_cell: int = 1
    slurm_partition: str | None = None
    slurm_timeout_min: int = 60
    slurm_local: bool = False
    share_teacher: bool = True
    compile: bool = False
    quiet: bool = False

    def torch_device(self) -> torch.device:
        """The resolved device (``auto``: CUDA when available, else CPU)."""
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)


_BACKBONE_FIELDS = {"backbone": "model", "img_size": "img_size", "patch_size": "patch_size",
                    "embed_dim": "embed_dim", "depth": "depth", "num_heads": "num_heads"}
_NAME_LISTS = ("datasets", "distortions", "methods", "plugins")


def flag(name: str) -> str:
    """The CLI flag of a config field, e.g. ``--label-fraction``."""
    return "--" + name.replace("_", "-")


def make_config(**kwargs: Any) -> RunConfig:
    """A validated :class:`RunConfig` from keyword arguments.

    Lists accept sequences or comma-separated strings; the backbone accepts a
    :class:`BackboneSpec` or the separate keys ``backbone`` (a timm name), ``img_size``,
    ``patch_size``, ``embed_dim``, ``depth``, ``num_heads``.

    Raises:
        ConfigError: for an unknown key or an invalid value (names the flag and valid values).
    """
    known = {f.name for f in dataclasses.fields(RunConfig)} | set(_BACKBONE_FIELDS)
    for key in kwargs:
        if key not in known:
            raise unknown_choice("run option", key, "arguments", known)
    values: dict[str, Any] = {}
    for name in _NAME_LISTS:
        if kwargs.get(name) is not None:
            values[name] = _names(kwargs[name], name)
    if kwargs.get("seeds") is not None:
        values["seeds"] = _ints(kwargs["seeds"], "seeds", minimum=0)
    if kwargs.get("severities") is not None:
        values["severities"] = _ints(kwargs["severities"], "severities", minimum=None)
    for name, minimum in (("epochs", 1), ("steps", 1), ("batch_size", 1), ("pretrain_epochs", 1),
                          ("max_train", 1), ("max_test", 1)):
        if kwargs.get(name) is not None:
            values[name] = _int(kwargs[name], name, minimum)
    if kwargs.get("label_fraction") is not None:
        values["label_fraction"] = _fraction(kwargs["label_fraction"])
    for name in ("out", "cache_dir", "data_root"):
        if kwargs.get(name) is not None:
            values[name] = Path(kwargs[name]).expanduser()
    if kwargs.get("weights") is not None:
        values["weights"] = _weights(str(kwargs["weights"]).strip())
    if kwargs.get("pretrain") is not None:
        values["pretrain"] = _choice(kwargs["pretrain"], "pretrain", PRETRAIN_MODES)
    if kwargs.get("device") is not None:
        values["device"] = _device(str(kwargs["device"]))
    if kwargs.get("severity_table") is not None:
        values["severity_table"] = _choice(kwargs["severity_table"], "severity_table", SEVERITY_TABLE_CHOICES)
    if kwargs.get("quiet") is not None:
        values["quiet"] = _bool(kwargs["quiet"], "quiet")
    for name in ("reference", "executor", "ray_address", "slurm_partition"):
        if kwargs.get(name) is not None:
            values[name] = str(kwargs[name]).strip()
    for name, minimum in (("cpus_per_cell", 1), ("slurm_timeout_min", 1)):
        if kwargs.get(name) is not None:
            values[name] = _int(kwargs[name], name, minimum)
    if kwargs.get("gpus_per_cell") is not None:
        values["gpus_per_cell"] = _non_negative(kwargs["gpus_per_cell"], "gpus_per_cell")
    for name in ("share_teacher", "compile"):
        if kwargs.get(name) is not None:
            values[name] = _bool(kwargs[name], name)
    if kwargs.get("download") is not None:
        values["download"] = _bool(kwargs["download"], "download")
    if kwargs.get("slurm_local") is not None:
        values["slurm_local"] = _bool(kwargs["slurm_local"], "slurm_local")
    values["backbone"] = _backbone(kwargs)
    config = RunConfig(**values)
    _check_consistency(config)
    return config


def _check_consistency(config: RunConfig) -> None:
    if config.epochs is not None and config.steps is not None:
        raise ConfigError("give --epochs or --steps, not both")
    if config.weights is not None and not config.weights.startswith(TIMM_PREFIX):
        check_weights_path(Path(config.weights))
    _check_writable(config.out)
    config.backbone.validate()


def _check_writable(out: Path) -> None:
    """Refuse an output that is a file, lies under a file, or cannot be written (probed by
    creating and removing a temporary directory in its nearest existing folder)."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output {str(out)!r} (from --out) exists and is not a directory")
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"output {str(out)!r} (from --out) lies under {str(existing)!r}, which is not a directory")
    try:
        with tempfile.TemporaryDirectory(dir=existing, prefix=".robench-write-probe-"):
            pass
    except OSError as exc:
        raise ConfigError(f"output {str(out)!r} (from --out) is not writable: cannot create files in "
                          f"{str(existing)!r} ({exc.strerror or exc})") from None


def _split(value: Any) -> list[str]:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",")]
    if isinstance(value, Iterable):
        return [str(part).strip() for part in value]
    return [str(value).strip()]


def _names(value: Any, name: str) -> tuple[str, ...]:
    parts = _split(value)
    if not parts or any(not p for p in parts):
        raise ConfigError(f"{flag(name)} needs a comma-separated list of names, got {value!r}")
    return tuple(dict.fromkeys(parts))


def parse_int(value: Any, name: str, minimum: int | None = None) -> int:
    """An integer option, or :class:`ConfigError` naming its flag."""
    return _int(value, name, minimum)


def parse_path(value: Any, name: str) -> Path:
    """A path option (``~`` expanded); refuses an existing directory where a file is written."""
    path = Path(value).expanduser()
    if path.is_dir():
        raise ConfigError(f"{flag(name)} {str(path)!r} is a directory; give a file name")
    return path


def _int(value: Any, name: str, minimum: int | None) -> int:
    try:
        number = int(value)
        if isinstance(value, float) and number != value:
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(f"{flag(name)} must be an integer, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise ConfigError(f"{flag(name)} must be at least {minimum}, got {number}")
    return number


def _ints(value: Any, name: str, minimum: int | None) -> tuple[int, ...]:
    parts = _split(value) if not isinstance(value, int) else [value]
    if not parts or any(p == "" for p in parts):
        raise ConfigError(f"{flag(name)} needs a comma-separated list of integers, got {value!r}")
    return tuple(dict.fromkeys(_int(p, name, minimum) for p in parts))


def _non_negative(value: Any, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{flag(name)} must be a number, got {value!r}") from None
    if number < 0:
        raise ConfigError(f"{flag(name)} must be at least 0, got {value!r}")
    return number


def _bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "1", "on"):
        return True
    if text in ("false", "no", "0", "off"):
        return False
    raise ConfigError(f"{flag(name)} must be true or false, got {value!r}")


def _fraction(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"--label-fraction must be a number in (0, 1], got {value!r}") from None
    if not 0.0 < number <= 1.0:
        raise ConfigError(f"--label-fraction must be in (0, 1], got {value!r}")
    return number


def _choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f"{flag(name)} got {value!r}; valid: {', '.join(choices)}")
    return str(value)


def _device(value: str) -> str:
    if value == "auto":
        return value
    try:
        device = torch.device(value)
    except (RuntimeError, ValueError):
        raise ConfigError(f"unknown device {value!r} (from --device); valid: auto, cpu, cuda, cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device {value!r} (from --device) is not supported; valid: auto, cpu, cuda, cuda:N")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"device {value!r} (from --device) is not available: no CUDA device; use cpu")
        if device.index is not None and device.index >= count:
            raise ConfigError(f"device {value!r} (from --device) does not exist; valid: cuda:0-cuda:{count - 1}")
    return value


def _weights(value: str) -> str:
    if value.startswith(TIMM_PREFIX):
        if not value[len(TIMM_PREFIX):]:
            raise ConfigError("--weights timm: needs a timm model name, e.g. timm:vit_small_patch16_224.augreg_in21k")
        return value
    return str(Path(value).expanduser())


def _backbone(kwargs: dict[str, Any]) -> BackboneSpec:
    """The default tiny ViT, or, when a model is named (by --backbone or by timm weights), that
    model with timm's own sizes; size options override either (``none`` keeps timm's value)."""
    given = kwargs.get("backbone")
    if isinstance(given, BackboneSpec):
        return given
    weights = str(kwargs.get("weights") or "")
    if weights.startswith(TIMM_PREFIX):
        architecture = weights[len(TIMM_PREFIX):].split(".")[0]
        if given is not None and str(given).strip() != architecture:
            raise ConfigError(f"--backbone {given} does not match --weights {weights} "
                              f"(architecture {architecture!r}); leave --backbone out or make them agree")
        given = architecture
    if given is None:
        spec = BackboneSpec()
    else:
        spec = BackboneSpec(str(given).strip(), None, None, None, None, None)
    sizes: dict[str, Any] = {}
    for key, attr in _BACKBONE_FIELDS.items():
        value = kwargs.get(key)
        if attr == "model" or value is None:
            continue
        sizes[attr] = None if str(value).strip().lower() == "none" else _int(value, key, 1)
    return dataclasses.replace(spec, **sizes)
