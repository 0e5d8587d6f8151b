"""The shared training step: returns the loss without a host sync, refuses non-finite losses."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robench.training import clip_and_step, make_optimizer, weights_are_finite


def test_clip_and_step_returns_the_detached_loss_and_steps() -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    before = model.weight.detach().clone()
    optimizer = make_optimizer(model, 1e-2)
    loss = model(torch.randn(8, 4)).pow(2).mean()
    value = clip_and_step(loss, model, optimizer)
    assert isinstance(value, torch.Tensor) and not value.requires_grad
    assert value.item() == pytest.approx(loss.item())
    assert not torch.equal(before, model.weight)


def test_a_non_finite_loss_raises_and_shows_in_the_weights() -> None:
    model = nn.Linear(4, 2)
    optimizer = make_optimizer(model, 1e-2)
    assert weights_are_finite(model)
    with pytest.raises(FloatingPointError, match="loss became nan"):
        clip_and_step(model(torch.randn(8, 4)).sum() * float("nan"), model, optimizer)
    assert not weights_are_finite(model)
