"""The model as written: functional, reused and in-place activations, residual blocks, multi-input models,
layer attribution, and ops the engine must refuse rather than get silently wrong."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import gradattr
from gradattr.engine import ReferenceMismatchError, UnsupportedOperationError

from zoo import (
    ACTIVATIONS,
    BagOfEmbeddings,
    FunctionalMLP,
    InplaceReLUMLP,
    ResidualCNN,
    ReusedReLUMLP,
    TanhSoftplusMix,
    TwoInputNet,
    completeness_gap,
)

MODIFIED = ["epsilon_lrp", "deeplift"]


def relu_family() -> tuple[nn.Sequential, list[nn.Module]]:
    """A Sequential ReLU MLP and three models written differently with the same weights."""
    torch.manual_seed(1)
    mlp = FunctionalMLP([7, 9, 9, 9, 3], F.relu).double()
    return mlp.as_sequential(), [mlp, ReusedReLUMLP(mlp), InplaceReLUMLP(mlp)]


@pytest.mark.parametrize("method", ["saliency", "gradient_x_input", "integrated_gradients", *MODIFIED])
def test_functional_reused_and_inplace_relu_match_the_sequential_twin(method: str) -> None:
    sequential, variants = relu_family()
    x = torch.randn(6, 7, dtype=torch.float64)
    baseline = torch.randn(1, 7, dtype=torch.float64) if method in ("deeplift", "integrated_gradients") else None
    expected = gradattr.attribute(sequential, x, method=method, target=2, baseline=baseline)
    for model in variants:
        result = gradattr.attribute(model, x, method=method, target=2, baseline=baseline)
        torch.testing.assert_close(result, expected, rtol=1e-12, atol=1e-12, msg=type(model).__name__)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_every_intercepted_nonlinearity_gets_the_rescale_rule(name: str) -> None:
    """DeepLIFT completeness holds exactly only if the rule replaced the op's gradient; with the plain
    gradient (what an op the engine misses would get) it fails on these weights."""
    torch.manual_seed(3)
    model = FunctionalMLP([5, 8, 8, 2], ACTIVATIONS[name]).double()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2.0)
    x = torch.randn(8, 5, dtype=torch.float64) * 2
    baseline = torch.randn(1, 5, dtype=torch.float64)
    r = gradattr.attribute(model, x, method="deeplift", target=1, baseline=baseline)
    assert completeness_gap(model, x, baseline, r, 1).max() < 1e-6
    plain = (x - baseline) * gradattr.attribute(model, x, method="saliency", target=1, abs=False)
    assert completeness_gap(model, x, baseline, plain, 1).max() > 1e-3


@pytest.mark.parametrize("activation", [F.relu, torch.tanh, F.softplus])
def test_residual_batchnorm_cnn(activation) -> None:
    torch.manual_seed(2)
    model = ResidualCNN(activation=activation).double().eval()
    x = torch.randn(5, 3, 8, 8, dtype=torch.float64)
    baseline = torch.randn(5, 3, 8, 8, dtype=torch.float64) * 0.1
    r = gradattr.attribute(model, x, method="deeplift", target=3, baseline=baseline)
    assert completeness_gap(model, x, baseline, r, 3).max() < 1e-6
    if activation is F.relu:  # Prop. 1 holds through conv, batch-norm (eval), residual add and average pooling
        lrp = gradattr.attribute(model, x, method="epsilon_lrp", target=3, epsilon=1e-12)
        gxi = gradattr.attribute(model, x, method="gradient_x_input", target=3)
        torch.testing.assert_close(lrp, gxi, rtol=1e-6, atol=1e-9)


def test_tanh_softplus_mix_completeness_and_rules_applied() -> None:
    torch.manual_seed(4)
    model = TanhSoftplusMix().double()
    x = torch.randn(10, 5, dtype=torch.float64) * 3
    r = gradattr.attribute(model, x, method="deeplift", target=torch.arange(10) % 3)
    for c in range(3):
        rows = torch.arange(10) % 3 == c
        assert completeness_gap(model, x[rows], torch.zeros(1, 5, dtype=torch.float64), r[rows], c).max() < 1e-6
    gxi = gradattr.attribute(model, x, method="gradient_x_input", target=torch.arange(10) % 3)
    assert (r - gxi).abs().max() > 1e-2


def test_multi_input_model_returns_a_tuple_and_is_complete() -> None:
    torch.manual_seed(5)
    model = TwoInputNet().double()
    image, vector = torch.randn(4, 1, 6, 6, dtype=torch.float64), torch.randn(4, 4, dtype=torch.float64)
    baseline = (0.0, torch.full((4,), 0.5, dtype=torch.float64))
    r_image, r_vector = gradattr.attribute(model, (image, vector), method="deeplift", target=1, baseline=baseline)
    assert r_image.shape == image.shape and r_vector.shape == vector.shape
    with torch.no_grad():
        delta = model(image, vector)[:, 1] - model(torch.zeros_like(image), torch.full_like(vector, 0.5))[:, 1]
    torch.testing.assert_close(r_image.sum((1, 2, 3)) + r_vector.sum(1), delta, rtol=1e-9, atol=1e-12)
    for method in ("gradient_x_input", "occlusion", "integrated_gradients"):
        result = gradattr.attribute(model, (image, vector), method=method, target=1)
        assert isinstance(result, tuple) and len(result) == 2
    _, occ_vector = gradattr.attribute(model, (image, vector), method="occlusion", target=1)
    with torch.no_grad():
        occluded = vector.clone()
        occluded[:, 2] = 0
        drop = model(image, vector)[:, 1] - model(image, occluded)[:, 1]
    torch.testing.assert_close(occ_vector[:, 2], drop, rtol=1e-12, atol=1e-12)


def test_layer_attribution_on_token_embeddings() -> None:
    """``layer='embedding'`` attributes the embedding output; baseline 0 is the zero embedding."""
    torch.manual_seed(6)
    model = BagOfEmbeddings().double()
    tokens = torch.randint(0, 20, (3, 9))
    r = gradattr.attribute(model, tokens, method="deeplift", target=0, layer="embedding")
    assert r.shape == (3, 9, 6)
    with torch.no_grad():
        embedded = model.embedding(tokens)
        head = lambda e: model.out(torch.tanh(model.proj(e)).mean(1))[:, 0]  # noqa: E731
        delta = head(embedded) - head(torch.zeros_like(embedded))
    torch.testing.assert_close(r.sum((1, 2)), delta, rtol=1e-9, atol=1e-12)
    gxi = gradattr.attribute(model, tokens, method="gradient_x_input", target=0, layer=model.embedding)
    embedded = embedded.requires_grad_()
    (grad,) = torch.autograd.grad(head(embedded).sum(), embedded)
    torch.testing.assert_close(gxi, embedded.detach() * grad, rtol=1e-12, atol=1e-12)


class LSTMClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(3, 4, batch_first=True)
        self.head = nn.Linear(4, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.rnn(x)[0][:, -1])


class CumprodLSTM(LSTMClassifier):
    """The LSTM's outputs multiplied cumulatively over time: ``cumprod`` has no rule."""

    def forward(self, x: Tensor) -> Tensor:
        out = self.rnn(x)[0]
        return self.head(torch.cumprod(out, dim=1).sum(1))


@pytest.mark.parametrize("method", MODIFIED)
def test_fused_lstm_is_unrolled_not_silently_given_gradient_x_input(method: str) -> None:
    """The fused kernel used to be refused; it is now evaluated unrolled with the rule at every gate, so the
    result differs from the plain-gradient answer (Gradient*Input), while a genuinely unsupported op after
    the LSTM is still named in an error."""
    torch.manual_seed(10)
    model = LSTMClassifier()
    x = torch.randn(2, 5, 3) * 3
    result = gradattr.attribute(model, x, method=method, target=0)
    plain = gradattr.attribute(model, x, method="gradient_x_input", target=0)
    assert (result - plain).abs().max() > 1e-3 * plain.abs().max()
    with pytest.raises(UnsupportedOperationError, match=r"cumprod' in module '<root CumprodLSTM>'"):
        gradattr.attribute(CumprodLSTM(), x, method=method, target=0)


def test_gradient_methods_are_exact_on_lstm() -> None:
    model = LSTMClassifier()
    x = torch.randn(2, 5, 3)
    r = gradattr.attribute(model, x, method="saliency", target=1, abs=False)
    leaf = x.clone().requires_grad_()
    (expected,) = torch.autograd.grad(model(leaf)[:, 1].sum(), leaf)
    torch.testing.assert_close(r, expected)


class CumulativeProduct(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return torch.cumprod(x, dim=1)


class WithCumprod(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(4, 5), CumulativeProduct())
        self.head = nn.Linear(5, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.encoder(x))


class WithFloorDivision(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 5)
        self.head = nn.Linear(5, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(torch.div(self.fc(x), 0.5, rounding_mode="floor"))


@pytest.mark.parametrize(
    ("model", "pattern"),
    [
        (WithCumprod(), r"cumprod' in module 'encoder\.1'"),
        (WithFloorDivision(), r"div' in module '<root WithFloorDivision>': rounding division is piecewise"),
    ],
)
@pytest.mark.parametrize("method", MODIFIED)
def test_unsupported_ops_are_named_with_their_module(model: nn.Module, pattern: str, method: str) -> None:
    x = torch.randn(3, 4)
    with pytest.raises(UnsupportedOperationError, match=pattern):
        gradattr.attribute(model, x, method=method, target=0)
    with pytest.warns(UserWarning, match=pattern):
        result = gradattr.attribute(model, x, method=method, target=0, strict=False)
    assert torch.isfinite(result).all()


def test_max_pooling_and_max_over_time_keep_their_gradient() -> None:
    """Max pooling routes the gradient to the argmax, as in the paper's code: on a ReLU CNN with max pooling
    eps-LRP still equals Gradient*Input (Prop. 1)."""
    torch.manual_seed(7)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 3 * 3, 3)
    ).double()
    x = torch.randn(4, 1, 8, 8, dtype=torch.float64)
    lrp = gradattr.attribute(model, x, method="epsilon_lrp", target=2, epsilon=1e-12)
    gxi = gradattr.attribute(model, x, method="gradient_x_input", target=2)
    torch.testing.assert_close(lrp, gxi, rtol=1e-6, atol=1e-9)


class Squeezer(nn.Module):
    """Uses ``squeeze()``, which drops the batch dimension for a batch of one."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.tanh(self.fc(x.unsqueeze(1))).squeeze()
        return self.head(h.reshape(x.shape[0], 4))


def test_batch_dependent_model_falls_back_to_a_full_batch_reference() -> None:
    torch.manual_seed(8)
    model = Squeezer().double()
    x = torch.randn(5, 3, dtype=torch.float64)
    r = gradattr.attribute(model, x, method="deeplift", target=0)
    assert completeness_gap(model, x, torch.zeros(1, 3, dtype=torch.float64), r, 0).max() < 1e-6


class Branching(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x: Tensor) -> Tensor:
        h = self.fc(x)
        if bool((x.sum(1) > 0).all()):
            h = torch.tanh(h)
        return F.relu(h)


def test_different_paths_for_input_and_baseline_are_an_error() -> None:
    with pytest.raises(ReferenceMismatchError, match=r"different path|baseline"):
        gradattr.attribute(Branching(), torch.ones(2, 3), method="deeplift", target=0)


def test_float32_and_float64_inputs_keep_their_dtype() -> None:
    for dtype in (torch.float32, torch.float64):
        torch.manual_seed(9)
        model = TanhSoftplusMix().to(dtype)
        x = torch.randn(3, 5, dtype=dtype)
        for method in set(gradattr.METHODS) - set(gradattr.LAYER_METHODS):
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                assert gradattr.attribute(model, x, method=method, target=0).dtype == dtype


class NearlyConstantUnit(nn.Module):
    """One tanh unit whose input moves by only 2e-7 between the baseline and the input."""

    def forward(self, x: Tensor) -> Tensor:
        return 3 * torch.tanh(x[:, :1] + 1e-7 * x[:, 1:])


def test_rescale_uses_the_midpoint_derivative_where_the_input_barely_moves() -> None:
    """|z - z̄| <= 1e-5: the multiplier is f'((z + z̄)/2) instead of a quotient of rounding errors."""
    x = torch.tensor([[0.5, 2.0]], dtype=torch.float64)
    baseline = torch.tensor([[0.5, 0.0]], dtype=torch.float64)
    r = gradattr.attribute(NearlyConstantUnit(), x, method="deeplift", baseline=baseline)
    slope = 1 - torch.tanh(torch.tensor(0.5 + 1e-7, dtype=torch.float64)) ** 2
    expected = torch.tensor([[0.0, 3 * 2e-7 * float(slope)]], dtype=torch.float64)
    torch.testing.assert_close(r, expected, rtol=1e-9, atol=0)


class MaskedBag(nn.Module):
    """After the embedding, the token ids (per-sample context) mask and scale the input of the tanh."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(12, 4, padding_idx=0)
        self.proj = nn.Linear(4, 4)
        self.out = nn.Linear(4, 2)

    def forward(self, tokens: Tensor) -> Tensor:
        mask = (tokens != 0).unsqueeze(-1).to(self.proj.weight.dtype)
        scale = mask / mask.sum(1, keepdim=True)
        return self.out(torch.tanh(self.proj(self.embedding(tokens)) * scale).sum(1))


def test_layer_deeplift_uses_each_samples_own_context() -> None:
    """The baseline pass after the layer must see each sample's own mask, not the first sample's."""
    torch.manual_seed(11)
    model = MaskedBag().double()
    tokens = torch.tensor([[3, 4, 5, 6], [0, 0, 7, 8], [0, 9, 10, 11]])
    r = gradattr.attribute(model, tokens, method="deeplift", target=1, layer="embedding")
    with torch.no_grad():
        embedded = model.embedding(tokens)
        mask = (tokens != 0).unsqueeze(-1).double()
        scale = mask / mask.sum(1, keepdim=True)

        def head(e: Tensor) -> Tensor:
            return model.out(torch.tanh(model.proj(e) * scale).sum(1))[:, 1]

        delta = head(embedded) - head(torch.zeros_like(embedded))
    torch.testing.assert_close(r.sum((1, 2)), delta, rtol=1e-9, atol=1e-12)
    assert torch.equal(r[1, :2], torch.zeros(2, 4, dtype=torch.float64))  # padding tokens get nothing


class GatedInplace(nn.Module):
    """A sigmoid gate whose product is then overwritten by an in-place ReLU (found by the fuzzer with the
    attributed layer on the gate): the rule's saved output changed under it."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.linear, self.gate = nn.Linear(1, 2), nn.Linear(2, 2), nn.Linear(2, 2)
        self.act, self.head = nn.ReLU(inplace=True), nn.Linear(2, 2)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.stem(x))
        return self.head(self.act(self.linear(h) * torch.sigmoid(self.gate(h))))


@pytest.mark.parametrize("method", MODIFIED)
def test_inplace_activation_after_a_rule_output(method: str) -> None:
    torch.manual_seed(3)
    model = GatedInplace().double()
    x = torch.randn(4, 1, dtype=torch.float64)
    for layer in (None, "gate"):
        r = gradattr.attribute(model, x, method=method, target=0, layer=layer)
        assert torch.isfinite(r).all()
    r = gradattr.attribute(model, x, method="deeplift", target=0, layer="gate")  # complete despite the ReLU_
    with torch.no_grad():
        gate = model.gate(torch.relu(model.stem(x)))
    outputs = [model(x)[:, 0]]
    with torch.no_grad():
        handle = model.gate.register_forward_hook(lambda *_: torch.zeros_like(gate))
        outputs.append(model(x)[:, 0])
        handle.remove()
    torch.testing.assert_close(r.sum(1), outputs[0] - outputs[1], rtol=1e-10, atol=1e-12)
