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


class _LeftPaddedAttention(torch.nn.Module):
    """Causal attention over a sequence whose first two positions are padding: those queries see no key at
    all (every entry of their mask row is False), as in HuggingFace's SDPA path with left padding."""

    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        self.qkv, self.head = torch.nn.Linear(dim, 3 * dim), torch.nn.Linear(dim, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps = x.shape[1]
        mask = torch.ones(steps, steps, dtype=torch.bool).tril()
        mask[:, :2] = False
        q, k, v = self.qkv(x)[:, None].chunk(3, dim=-1)
        attended = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)[:, 0]
        return self.head(torch.tanh(attended).sum(1))


def test_queries_with_every_key_masked_get_zero_attention_as_in_pytorch() -> None:
    """PyTorch (2.5+) gives a query with no visible key the weights 0 (not 0/0 = NaN); gradattr's expansion
    of ``scaled_dot_product_attention`` for the rules does the same, so DeepLIFT stays finite and complete."""
    from gradattr.engine.ops.expanders import scaled_dot_product_attention

    torch.manual_seed(0)
    model = _LeftPaddedAttention().double()
    x = torch.randn(3, 6, 8, dtype=torch.float64)
    q, k, v = (torch.randn(3, 1, 6, 4, dtype=torch.float64) for _ in range(3))
    mask = torch.ones(6, 6, dtype=torch.bool).tril()
    mask[:, :2] = False
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v, attn_mask=mask), expected, rtol=1e-12, atol=0)
    r, gap = gradattr.attribute(model, x, "deeplift", target=1, baseline=0.1, return_gap=True)
    assert bool(r.isfinite().all()) and float(r.abs().max()) > 0
    assert float(gap.abs().max()) < 1e-12


class _CappedAttentionScores(torch.nn.Module):
    """Gemma-2's attention: scores soft-capped, c·tanh(s / c), then the causal mask added as a large negative
    float (``additive=True``) or applied by ``masked_fill`` with −inf; softmax; weights times values."""

    def __init__(self, additive: bool, dim: int = 8) -> None:
        super().__init__()
        self.additive = additive
        self.qkv, self.head = torch.nn.Linear(dim, 3 * dim), torch.nn.Linear(dim, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        capped = torch.tanh(q @ k.transpose(-1, -2) / 50.0) * 50.0
        allowed = torch.ones(x.shape[1], x.shape[1], dtype=torch.bool).tril()
        if self.additive:
            masked = capped + torch.zeros(allowed.shape, dtype=x.dtype).masked_fill(~allowed, torch.finfo(x.dtype).min)
        else:
            masked = capped.masked_fill(~allowed, -torch.inf)
        return self.head(torch.tanh(torch.softmax(masked, dim=-1) @ v).sum(1))


@pytest.mark.parametrize("method", ("epsilon_lrp", "deeplift"))
def test_a_mask_added_after_a_nonlinearity_is_not_part_of_its_rule(method: str) -> None:
    """A constant added after a nonlinearity (the mask after Gemma-2's soft-capping) stays outside the rule's
    activation: ε-LRP gave NaN (f(z)/z with f(z) ≈ −1.8e308) and now equals the same model masked by
    masked_fill; DeepLIFT agrees too, and is complete."""
    torch.manual_seed(0)
    additive = _CappedAttentionScores(additive=True).double()
    selected = _CappedAttentionScores(additive=False).double()
    selected.load_state_dict(additive.state_dict())
    x = torch.randn(3, 5, 8, dtype=torch.float64)
    r = gradattr.attribute(additive, x, method, target=1)
    assert bool(r.isfinite().all()) and float(r.abs().max()) > 0
    torch.testing.assert_close(r, gradattr.attribute(selected, x, method, target=1), rtol=1e-9, atol=1e-12)


class _FusedGelu(torch.autograd.Function):
    """A GELU with its own backward, as BLOOM ships it (``GeLUFunction``)."""

    @staticmethod
    def forward(ctx: object, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)  # type: ignore[attr-defined]
        return torch.nn.functional.gelu(x)

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors  # type: ignore[attr-defined]
        with torch.enable_grad():
            z = x.detach().requires_grad_()
            (g,) = torch.autograd.grad(torch.nn.functional.gelu(z), z, grad)
        return g


class _WithFusedGelu(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = torch.nn.Linear(6, 8), torch.nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(_FusedGelu.apply(self.fc1(x)))


def test_a_custom_autograd_function_on_the_input_path_is_refused_by_name() -> None:
    """Its forward runs with gradients off and its own backward replaces the rules inside: DeepLIFT would be
    the plain gradient there (not complete), so it is refused, naming the Function and the module; with
    strict=False it warns and goes on; gradient methods use the Function's backward as autograd does."""
    torch.manual_seed(0)
    model = _WithFusedGelu().double()
    x = torch.randn(4, 6, dtype=torch.float64)
    with pytest.raises(gradattr.engine.UnsupportedOperationError, match=r"_FusedGelu.*custom torch.autograd.Function"):
        gradattr.attribute(model, x, "deeplift", target=0)
    with pytest.warns(UserWarning, match="_FusedGelu"):
        gradattr.attribute(model, x, "deeplift", target=0, strict=False)
    expected = torch.autograd.functional.jacobian(lambda t: model(t)[:, 0].sum(), x)
    torch.testing.assert_close(gradattr.attribute(model, x, "saliency", target=0, abs=False), expected)
