"""The un-adapted backbone: the pretrained encoder, evaluated as it is (the reference row)."""

from __future__ import annotations

from torch import nn

from robench.api import FitContext, Method, hookimpl


class NoAdaptation(Method):
    """The pretrained encoder as is: no training, no labels, no clean images."""

    name = "none"

    def fit(self, ctx: FitContext) -> nn.Module:
        return ctx.backbone


@hookimpl
def robench_methods() -> list[type[Method]]:
    return [NoAdaptation]
