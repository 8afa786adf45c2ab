"""Rules read what their backward needs when the op runs (issue 19): in-place ops run as the call itself, a rule
set that changes only rectifiers leaves every other op as it is, and gradient methods size their passes from the
measured memory of a row. Checked against the layer-by-layer references of ``tests/reference.py`` and Captum."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import gradattr
from gradattr.methods import _batching

import reference

DTYPE = torch.float64
EXACT = {"rtol": 1e-12, "atol": 1e-14}


class InplaceTanh(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.tanh_()


def twins() -> tuple[nn.Module, nn.Sequential]:
    """The same net with in-place activations (``nn.ReLU(inplace=True)``, ``Tensor.tanh_``) and as the
    reference's ``nn.Sequential``. Hidden units 0 and 1 read only feature 0, which the baseline shares with the
    input, so their inputs equal the baseline's exactly: Rescale's limit f'((z + z̄)/2) there."""
    torch.manual_seed(0)
    first, second, head = nn.Linear(4, 6), nn.Linear(6, 5), nn.Linear(5, 3)
    with torch.no_grad():
        first.weight[:2, 1:] = 0.0
    inplace = nn.Sequential(first, nn.ReLU(inplace=True), second, InplaceTanh(), head).to(DTYPE)
    plain = nn.Sequential(first, nn.ReLU(), second, nn.Tanh(), head).to(DTYPE)
    return inplace, plain


X = torch.randn(5, 4, generator=torch.Generator().manual_seed(1), dtype=DTYPE)
BASELINE = torch.cat([X[:, :1], torch.zeros(5, 3, dtype=DTYPE)], dim=1)


def test_the_baseline_meets_the_input_exactly_at_two_units() -> None:
    _, plain = twins()
    z, z_ref = plain[0](X), plain[0](BASELINE)
    assert bool(((z[:, :2] - z_ref[:, :2]).abs() <= 1e-12).all())
    assert bool(((z[:, 2:] - z_ref[:, 2:]).abs() > 1e-5).any())


def test_deeplift_through_in_place_activations_equals_the_reference() -> None:
    """Rescale's multiplier is read before the in-place op overwrites z, also its limit where z = z̄."""
    inplace, plain = twins()
    expected = reference.deeplift_rescale(plain, X.clone(), 1, BASELINE)
    got = gradattr.attribute(inplace, X, method="deeplift", target=1, baseline=BASELINE)
    torch.testing.assert_close(got, expected, **EXACT)
    delta = plain(X)[:, 1] - plain(BASELINE)[:, 1]
    torch.testing.assert_close(got.sum(1), delta, rtol=1e-12, atol=1e-14)


def test_epsilon_lrp_through_in_place_activations_equals_the_reference() -> None:
    inplace, plain = twins()
    expected = reference.epsilon_lrp(plain, X.clone(), 2)
    torch.testing.assert_close(gradattr.attribute(inplace, X, method="epsilon_lrp", target=2), expected, **EXACT)


def test_epsilon_lrp_takes_sign_0_as_plus_1_also_at_minus_0() -> None:
    """eps-LRP at a sigmoid (f(0) = 1/2 ≠ 0) whose input is exactly +0.0 and -0.0: m = f(0) / (+ε) at both."""

    class Probe(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            z = torch.stack([x[:, 0] - 1.0, -(x[:, 1] - 1.0)], dim=1)  # +0.0 and -0.0 at x = 1
            return torch.sigmoid(z).sum(1, keepdim=True)

    x = torch.ones(1, 2, dtype=DTYPE)
    got = gradattr.attribute(Probe(), x, method="epsilon_lrp", target=0, epsilon=1e-3)
    torch.testing.assert_close(got, torch.tensor([[0.5 / 1e-3, -0.5 / 1e-3]], dtype=DTYPE), **EXACT)


class Block(nn.Module):
    """Attention, layer norm, GELU and module ReLUs: guided backprop changes the ReLUs only."""

    def __init__(self) -> None:
        super().__init__()
        self.norm, self.qkv, self.up, self.down = nn.LayerNorm(8), nn.Linear(8, 24), nn.Linear(8, 16), nn.Linear(16, 8)
        self.relu, self.gelu, self.head = nn.ReLU(), nn.GELU(), nn.Linear(8, 3)
        self.relu2 = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.qkv(self.norm(x)).unflatten(-1, (3, 2, 4)).permute(2, 0, 3, 1, 4)
        x = x + torch.nn.functional.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)
        x = x + self.down(self.relu(self.gelu(self.up(self.norm(x)))))
        return self.head(self.relu2(x).softmax(-1).mean(1) * x.mean(1))


def hooked_relus(model: Block, method: str, x: Tensor, target: int) -> Tensor:
    """The method's definition written with autograd hooks on the ReLU modules: guided backprop
    ``1[z > 0] · max(g_out, 0)`` (the ReLU's own gradient, rectified), deconvnet ``max(g_out, 0)``."""

    def hook(module: nn.Module, grad_in: tuple[Tensor, ...], grad_out: tuple[Tensor, ...]) -> tuple[Tensor]:
        return (torch.relu(grad_in[0] if method == "guided_backprop" else grad_out[0]),)

    handles = [m.register_full_backward_hook(hook) for m in (model.relu, model.relu2)]
    try:
        leaf = x.clone().requires_grad_()
        model(leaf)[:, target].sum().backward()
    finally:
        for handle in handles:
            handle.remove()
    assert leaf.grad is not None
    return leaf.grad


@pytest.mark.parametrize("method", ["guided_backprop", "deconvnet"])
def test_guided_rules_change_the_relus_of_a_transformer_block_only(method: str) -> None:
    """Every other op (attention, layer norm, GELU, softmax) keeps its own gradient; the ReLU after the GELU
    gets the rule as a ReLU call of its own."""
    torch.manual_seed(2)
    model = Block().to(DTYPE).eval()
    x = torch.randn(3, 5, 8, dtype=DTYPE)
    expected = hooked_relus(model, method, x, 1)
    torch.testing.assert_close(gradattr.attribute(model, x, method=method, target=1), expected, **EXACT)
    plain = gradattr.attribute(model, x, method="saliency", target=1, abs=False)
    assert (expected - plain).abs().max() > 1e-6  # the ReLUs' rule changed the map


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.head = nn.Conv2d(3, 4, 3, padding=1), nn.Linear(4, 3)
        self.rows: list[int] = []

    def forward(self, x: Tensor) -> Tensor:
        self.rows.append(x.shape[0])
        return self.head(torch.relu(self.conv(x)).mean((2, 3)))


def test_gradient_methods_size_their_passes_from_the_measured_row_memory() -> None:
    """A 3x96x96 input has 27648 elements: the element budget gives 4 rows (2 copies of a batch of 2); the row's
    measured memory (about a MB) lets all 8 copies of each half of IG's steps into one pass."""
    torch.manual_seed(0)
    model = SmallCNN().to(DTYPE)
    x = torch.randn(2, 3, 96, 96, dtype=DTYPE)
    assert _batching.copies_per_chunk((x,), None, _batching.GRADIENT_ROWS_PER_PASS) == 2
    got = gradattr.attribute(model, x, method="integrated_gradients", target=0, steps=16)
    assert max(model.rows) == 16  # 8 even steps, then 8 odd ones, of 2 rows each
    model.rows.clear()
    one_copy = gradattr.attribute(model, x, method="integrated_gradients", target=0, steps=16, batch_size=2)
    assert max(model.rows) == 2
    torch.testing.assert_close(got, one_copy, rtol=1e-12, atol=1e-15)


def test_forward_only_methods_size_their_passes_from_the_measured_row_memory() -> None:
    """Occlusion's 9 windows of a 3x96x96 image: the element budget alone gives 2 copies of the batch of 2 per
    pass; the row's measured memory lets all 9 copies into one pass, with the same attributions."""
    torch.manual_seed(0)
    model = SmallCNN().to(DTYPE)
    x = torch.randn(2, 3, 96, 96, dtype=DTYPE)
    options = {"window": (3, 32, 32), "stride": (3, 32, 32)}
    got = gradattr.attribute(model, x, method="occlusion", target=0, **options)
    assert max(model.rows) == 18
    model.rows.clear()
    one_copy = gradattr.attribute(model, x, method="occlusion", target=0, batch_size=2, **options)
    assert max(model.rows) == 2
    torch.testing.assert_close(got, one_copy, rtol=1e-12, atol=1e-15)


def test_forward_only_passes_over_small_inputs_fill_the_cached_pass_size() -> None:
    """Occlusion-1 of a 784-feature MLP on 64 rows: the element budget gives 128-row passes; the measured row
    (a few KB) lets ``CACHED_PASS_BYTES`` take several hundred, with the same attributions."""
    torch.manual_seed(0)
    layers = nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10)).to(DTYPE)
    seen: list[int] = []
    model = nn.Sequential(layers)
    model.register_forward_pre_hook(lambda _, args: seen.append(args[0].shape[0]))
    x = torch.randn(64, 784, dtype=DTYPE)
    assert _batching.copies_per_chunk((x,), None) * 64 == 128
    got = gradattr.attribute(model, x, method="occlusion", target=3)
    assert max(seen) > 4 * 128
    seen.clear()
    small = gradattr.attribute(model, x, method="occlusion", target=3, batch_size=128)
    assert max(seen) == 128
    torch.testing.assert_close(got, small, rtol=1e-12, atol=1e-15)
