"""Training helpers shared by clean pretraining and the methods, so that all use one recipe.

Every method that trains gets the same optimiser family (AdamW), the same schedule (linear warmup
then cosine decay to zero) and the same mixed-precision rule (bf16 autocast on CUDA, full float32
on CPU), which keeps comparisons between methods about the method, not the recipe.
"""

from __future__ import annotations

import contextlib
import logging
import math
import weakref
from collections.abc import Iterator

import torch
from torch import nn

logger = logging.getLogger(__name__)

_NO_DECAY_NAMES = ("pos_embed", "cls_token", "reg_token", "dist_token")


def make_optimizer(
    model: nn.Module, lr: float, weight_decay: float = 0.05, betas: tuple[float, float] = (0.9, 0.999)
) -> torch.optim.AdamW:
    """AdamW over the trainable parameters of ``model``.

    Biases, norm parameters and token/position embeddings get no weight decay (the timm/DeiT
    convention). The fused CUDA kernel is used when every parameter is on a CUDA device.
    """
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if param.ndim <= 1 or name.split(".")[-1] in _NO_DECAY_NAMES:
            no_decay.append(param)
        else:
            decay.append(param)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    params = decay + no_decay
    fused = bool(params) and all(p.is_cuda for p in params)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused or None)


def cosine_schedule(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup over ``warmup_steps``, then cosine decay to zero at ``total_steps``."""
    total_steps = max(1, total_steps)
    warmup_steps = min(max(0, warmup_steps), total_steps - 1)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@contextlib.contextmanager
def autocast(device: torch.device | str) -> Iterator[None]:
    """bf16 autocast on CUDA; a no-op elsewhere (CPU results stay float32 and deterministic)."""
    device = torch.device(device)
    if device.type == "cuda":
        with torch.autocast("cuda", dtype=torch.bfloat16):
            yield
    else:
        yield


def clip_and_step(
    loss: torch.Tensor,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    max_grad_norm: float | None = 1.0,
) -> torch.Tensor:
    """Backward, optional gradient-norm clipping, optimiser and scheduler step.

    Returns the loss, detached, on its device: add it up and read it when logging, so the host
    does not wait for the device at every step.

    Raises:
        FloatingPointError: if the loss is NaN or infinite. On the CPU this is checked at once;
            on CUDA one step later, from an asynchronous copy, so the host never stalls (the
            model is unusable either way: the caller must discard it; a non-finite loss at the
            last step shows in the weights, which the runner checks after ``fit``).
    """
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if max_grad_norm is not None:
        nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    value = loss.detach()
    _check_finite(optimizer, value)
    return value


_PENDING_LOSSES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _check_finite(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    """Raise if ``loss`` (CPU: this step's) or the previous step's loss (CUDA) is not finite."""
    if loss.device.type != "cuda":
        pending = loss
    else:
        host = torch.empty(loss.shape, dtype=loss.dtype, pin_memory=True)
        host.copy_(loss, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        previous = _PENDING_LOSSES.get(optimizer)
        _PENDING_LOSSES[optimizer] = (host, event)
        if previous is None:
            return
        pending, done = previous
        done.synchronize()  # that step finished long ago: this waits for nothing queued since
    value = float(pending)
    if not math.isfinite(value):
        raise FloatingPointError(f"loss became {value}")


def weights_are_finite(model: nn.Module) -> bool:
    """Whether every parameter of ``model`` is finite (one device synchronisation)."""
    flags = [torch.isfinite(p).all() for p in model.parameters()]
    return bool(torch.stack(flags).all()) if flags else True


class CompiledOrEager(nn.Module):
    """A module run through ``torch.compile``, falling back to eager execution (with one warning)
    when compilation fails, which usually happens at the first call, not at ``torch.compile``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self._compiled = None
        self._failed = False

    def forward(self, *args, **kwargs):
        if self._failed:
            return self.model(*args, **kwargs)
        try:
            if self._compiled is None:
                self._compiled = torch.compile(self.model)
            return self._compiled(*args, **kwargs)
        except Exception as exc:  # compilers fail in many ways; eager execution is always correct
            logger.warning("torch.compile failed (%s: %s); running eagerly",
                                                type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
            self._failed = True
            return self.model(*args, **kwargs)
