"""Method specs on --methods: NAME[:PRESET][:KEY=VALUE]..."""

from __future__ import annotations

import pytest

from robench.errors import ConfigError
from robench.method_spec import build_method, parse_method_spec
from robench.registry import Registry

REGISTRY = Registry(entry_points=False)


def test_parse() -> None:
    spec = parse_method_spec(" asym_kd:attn:attn_rows=all:lr=3e-4 ")
    assert (spec.text, spec.name, spec.preset) == ("asym_kd:attn:attn_rows=all:lr=3e-4", "asym_kd", "attn")
    assert spec.overrides == (("attn_rows", "all"), ("lr", "3e-4"))
    assert parse_method_spec("finetune:lr=1e-3").preset is None


def test_build_applies_preset_then_overrides_with_types() -> None:
    method = build_method(REGISTRY, parse_method_spec("asym_kd:global:lr=3e-4:attn_blocks=0+-1:severity=5"))
    assert method.options.terms == ("global",)
    assert method.options.lr == 3e-4 and method.options.attn_blocks == (0, -1) and method.options.severity == 5
    method = build_method(REGISTRY, parse_method_spec("asym_kd:terms=patch+attn:severity=none:max_grad_norm=none"))
    assert method.options.terms == ("patch", "attn") and method.options.severity is None
    assert method.options.max_grad_norm is None
    assert build_method(REGISTRY, parse_method_spec("none")).options is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("asym_kd:globl", "unknown preset of method 'asym_kd' 'globl' (from --methods). Did you mean 'global'?"),
        ("finetune:lrr=1", "unknown option of method 'finetune' 'lrr' (from --methods). Did you mean 'lr'?"),
        ("finetune:lr=fast", "option finetune:lr='fast' (from --methods) is not a valid float"),
        ("asym_kd:severity=2.5", "option asym_kd:severity='2.5' (from --methods) is not a valid int"),
        ("asym_kd:terms=global+cls", "terms ('global', 'cls'): choose from global, patch, attn"),
        ("none:lr=1", "method 'none' (from --methods) takes no preset or options"),
        ("asym_kd:global:attn", "'attn' is not KEY=VALUE; the form is NAME[:PRESET][:KEY=VALUE]"),
        ("finetune:lr=", "has an empty key or value"),
        ("asym_kdd", "unknown method 'asym_kdd' (from --methods). Did you mean 'asym_kd'?"),
    ],
)
def test_bad_specs_are_one_clear_error(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        build_method(REGISTRY, parse_method_spec(text))
    assert message in str(err.value) and "\n" not in str(err.value)
