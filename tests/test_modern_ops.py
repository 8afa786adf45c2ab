"""Transformers, gated nets and LayerNorm CNNs: every method runs, DeepLIFT's completeness holds to float
precision (Σ R = S_c(x) − S_c(x̄), zero and random baselines), and the model comes back unchanged."""

from __future__ import annotations

import pytest
import torch

import gradattr
from test_hygiene import assert_unchanged, snapshot
from zoo_modern import BLOCKS

F64 = torch.float64
FAST_OPTIONS = {
    "integrated_gradients": {"steps": 8},
    "smoothgrad": {"samples": 3},
    "shapley_sampling": {"samples": 2},
}


def build(name: str, dtype: torch.dtype = F64) -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model, x = BLOCKS[name]()
    return model.to(dtype).eval(), x.to(dtype)


@pytest.mark.parametrize("name", sorted(BLOCKS))
@pytest.mark.parametrize("baseline_kind", ["zero", "random"])
def test_deeplift_is_complete_to_float_precision(name: str, baseline_kind: str) -> None:
    model, x = build(name)
    baseline = torch.zeros_like(x[:1]) if baseline_kind == "zero" else torch.randn_like(x[:1])
    before = snapshot(model)
    r = gradattr.attribute(model, x, method="deeplift", target=1, baseline=baseline)
    assert_unchanged(model, before)
    with torch.no_grad():
        delta = model(x)[:, 1] - model(baseline)[:, 1]
    gap = (r.flatten(1).sum(1) - delta).abs() / delta.abs().clamp_min(1e-12)
    assert float(gap.max()) < 1e-6, f"{name}: relative completeness gap {float(gap.max()):.2e}"


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_every_method_runs_finite_and_leaves_the_model_unchanged(name: str) -> None:
    model, x = build(name, torch.float32)
    before = snapshot(model)
    for method in gradattr.METHODS:
        if method in gradattr.LAYER_METHODS:
            continue
        r = gradattr.attribute(model, x, method=method, target=0, **FAST_OPTIONS.get(method, {}))
        assert r.shape == x.shape and torch.isfinite(r).all(), method
    assert_unchanged(model, before)


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_rule_methods_differ_from_the_plain_gradient(name: str) -> None:
    """The rules reach inside the blocks: eps-LRP and DeepLIFT are not Gradient*Input in disguise."""
    model, x = build(name)
    plain = gradattr.attribute(model, x, method="gradient_x_input", target=0)
    for method in ("epsilon_lrp", "deeplift"):
        r = gradattr.attribute(model, x, method=method, target=0)
        assert (r - plain).abs().max() > 1e-6 * plain.abs().max(), method


def test_float32_completeness_is_float32_precise() -> None:
    """In float32 the gap is rounding. (A zero baseline through an RMS norm makes rsqrt(ε) ≈ 1000 the
    reference statistic: exact in float64, but the large multipliers cancel, so float32 loses ~3 digits.)"""
    model, x = build("llama", torch.float32)
    baseline = torch.randn_like(x[:1])
    r = gradattr.attribute(model, x, method="deeplift", target=2, baseline=baseline)
    with torch.no_grad():
        delta = model(x)[:, 2] - model(baseline)[:, 2]
    assert float(((r.flatten(1).sum(1) - delta).abs() / delta.abs()).max()) < 1e-4
