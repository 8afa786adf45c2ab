"""Completeness made visible (issue 16, item 8): ``attribute(..., return_gap=True)`` returns each sample's gap
Σ R - (S_c(x) - S_c(x̄)) (the numbers of ``metrics.completeness_gap``); Integrated Gradients warns, once per call,
when the relative gap exceeds its tolerance and says how many steps would be needed; ``steps="auto"`` doubles
the steps until the gap is within the tolerance."""

from __future__ import annotations

import re
import warnings

import pytest
import torch
from torch import Tensor, nn

import gradattr
from gradattr.methods.integrated_gradients import GAP_TOLERANCE, relative_gap
from gradattr.metrics import CompletenessWarning, completeness_gap


class AttentionBlock(nn.Module):
    """Pre-norm transformer block (LayerNorm, self-attention, LayerNorm, GELU MLP) and a mean-pooled head: with a
    zero baseline the LayerNorms turn on within the first hundredth of the path, which 100 right-Riemann steps
    step over."""

    def __init__(self, width: int = 16, classes: int = 3) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attention = nn.MultiheadAttention(width, 2, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))
        self.head = nn.Linear(width, classes)

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm1(x)
        h = x + self.attention(h, h, h, need_weights=False)[0]
        h = h + self.mlp(self.norm2(h))
        return self.head(h.mean(1))


def block_and_tokens() -> tuple[nn.Module, Tensor]:
    torch.manual_seed(0)
    return AttentionBlock().eval(), torch.randn(4, 6, 16)


def small_mlp() -> tuple[nn.Module, Tensor]:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(10, 32), nn.Tanh(), nn.Linear(32, 16), nn.Softplus(), nn.Linear(16, 3))
    return model.eval(), torch.randn(16, 10)


def completeness_warnings(call) -> tuple[object, list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = call()
    return result, [w for w in caught if issubclass(w.category, CompletenessWarning)]


def relative(model: nn.Module, x: Tensor, attributions: Tensor, target: Tensor) -> Tensor:
    gap = completeness_gap(model, x, attributions, target)
    with torch.no_grad():
        out, out0 = model(x), model(torch.zeros_like(x))
    pick = target.view(-1, 1)
    return relative_gap(gap, out.gather(1, pick)[:, 0], out0.gather(1, pick)[:, 0])


@pytest.mark.parametrize("method", ["integrated_gradients", "deeplift", "shapley_sampling"])
def test_the_returned_gap_is_metrics_completeness_gap(method: str) -> None:
    model, x = small_mlp()
    baseline = 0.1 * torch.ones(1, 10)
    attributions, gap = gradattr.attribute(model, x, method=method, target=2, baseline=baseline, return_gap=True)
    assert attributions.shape == x.shape and gap.shape == (16,)
    expected = completeness_gap(model, x, attributions, 2, baseline)
    torch.testing.assert_close(gap, expected, rtol=0, atol=1e-6)
    if method != "integrated_gradients":  # DeepLIFT and Shapley sampling are complete by construction
        assert float(gap.abs().max()) < 1e-5


def test_the_gap_of_a_layer_is_in_the_layer_space() -> None:
    model, x = small_mlp()
    attributions, gap = gradattr.attribute(model, x, method="deeplift", target=0, layer="1", return_gap=True)
    assert attributions.shape == (16, 32) and float(gap.abs().max()) < 1e-5


def test_return_gap_is_refused_where_no_completeness_is_meant() -> None:
    model, x = small_mlp()
    with pytest.raises(ValueError, match=r"return_gap=True is for .*integrated_gradients, deeplift, shapley_sampling"):
        gradattr.attribute(model, x, method="saliency", target=0, return_gap=True)
    assert isinstance(gradattr.attribute(model, x, method="deeplift", target=0), Tensor)  # default: unchanged


def test_ig_warns_once_on_a_transformer_block_at_100_steps_with_the_steps_needed() -> None:
    model, x = block_and_tokens()
    (attributions, gap), caught = completeness_warnings(
        lambda: gradattr.attribute(model, x, method="integrated_gradients", steps=100, return_gap=True)
    )
    target = model(x).argmax(1)
    rel = relative(model, x, attributions, target)
    assert float(rel.max()) > 0.5  # Σ R misses S_c(x) - S_c(0) by more than half for some sample
    assert len(caught) == 1
    message = str(caught[0].message)
    assert re.search(r"completeness gap \d+\.\d% .* at 100 steps", message)
    assert "at 50 steps" in message  # the second step count of the estimate
    needed = int(re.search(r"pass steps=(\d+)", message).group(1))
    assert needed > 1000
    torch.testing.assert_close(gap, completeness_gap(model, x, attributions, target), rtol=0, atol=1e-6)


def test_ig_does_not_warn_on_a_small_mlp() -> None:
    model, x = small_mlp()
    attributions, caught = completeness_warnings(
        lambda: gradattr.attribute(model, x, method="integrated_gradients", target=0)
    )
    assert caught == []
    assert float(relative(model, x, attributions, torch.zeros(16, dtype=torch.long)).max()) <= GAP_TOLERANCE


def test_smoothgrad_over_ig_warns_once_per_call() -> None:
    model, x = block_and_tokens()
    _, caught = completeness_warnings(
        lambda: gradattr.attribute(
            model, x, method="smoothgrad", base="integrated_gradients", steps=8, samples=6, batch_size=8
        )
    )
    assert len(caught) == 1


def test_the_warning_can_be_turned_off() -> None:
    model, x = block_and_tokens()
    _, caught = completeness_warnings(
        lambda: gradattr.attribute(model, x, method="integrated_gradients", steps=100, gap_tolerance=None)
    )
    assert caught == []


def test_auto_steps_bring_the_gap_within_the_tolerance() -> None:
    """A transformer block whose LayerNorms turn on more gently (eps = 1e-3, gap 26 % at 100 steps): 100
    steps miss completeness, ``steps="auto"`` doubles until the gap is within 5 %, without a warning."""
    torch.manual_seed(0)
    model = AttentionBlock().eval()
    for norm in (model.norm1, model.norm2):
        norm.eps = 1e-3
    x = torch.randn(4, 6, 16)
    target = model(x).argmax(1)
    (_, gap_100), caught = completeness_warnings(
        lambda: gradattr.attribute(model, x, method="integrated_gradients", target=target, return_gap=True)
    )
    assert len(caught) == 1
    (attributions, gap), caught = completeness_warnings(
        lambda: gradattr.attribute(
            model, x, method="integrated_gradients", target=target, steps="auto", return_gap=True
        )
    )
    assert caught == []
    assert float(relative(model, x, attributions, target).max()) <= GAP_TOLERANCE
    assert float(gap.abs().max()) < float(gap_100.abs().max())


def test_auto_steps_that_hit_max_steps_say_so() -> None:
    model, x = block_and_tokens()
    _, caught = completeness_warnings(
        lambda: gradattr.attribute(model, x, method="integrated_gradients", steps="auto", max_steps=128)
    )
    assert len(caught) == 1
    assert 'steps="auto" stopped at max_steps=128' in str(caught[0].message)
    assert "at 64 steps" in str(caught[0].message)


def test_auto_reuses_the_gradients_of_the_coarser_grids() -> None:
    """32 + 32 + 64 = 128 points for steps='auto' up to 128: the same attributions as steps=128."""
    model, x = block_and_tokens()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CompletenessWarning)
        auto = gradattr.attribute(model, x, method="integrated_gradients", steps="auto", max_steps=128)
        fixed = gradattr.attribute(model, x, method="integrated_gradients", steps=128)
    torch.testing.assert_close(auto, fixed, rtol=1e-5, atol=1e-6)


def test_option_errors() -> None:
    model, x = small_mlp()
    with pytest.raises(ValueError, match="gap_tolerance"):
        gradattr.attribute(model, x, method="integrated_gradients", target=0, steps="auto", gap_tolerance=None)
    with pytest.raises(ValueError, match="gap_tolerance must be a positive number"):
        gradattr.attribute(model, x, method="integrated_gradients", target=0, gap_tolerance=-1.0)
    with pytest.raises((TypeError, ValueError), match="steps"):
        gradattr.attribute(model, x, method="integrated_gradients", target=0, steps="many")
