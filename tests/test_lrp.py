"""LRP composites (method="lrp") against the layer-by-layer numpy reference (tests/lrp_reference.py), written
from Montavon et al. (2019): every rule, the named composites, batch-norm folding, functional and reused
layers, conservation, and the first-layer rules through an input normalisation. Zennit's numbers are in
benchmarks/peers/LRP_ZENNIT.md (Zennit needs torchvision, which the test environment does not have)."""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import gradattr
import lrp_reference as ref
from gradattr.composites import COMPOSITES, Composite
from gradattr.rules.layers import AlphaBeta, EpsilonLayer, Flat, Gamma, WSquare, ZBox, ZPlus


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 6), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4))


def cnn() -> nn.Sequential:
    """conv -> conv (negative inputs to the second) -> ReLU -> average pooling -> linear, all with biases."""
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(16, 5)
    )


def net(kind: str) -> tuple[nn.Sequential, Tensor]:
    generator = torch.Generator().manual_seed(2)
    if kind == "mlp":
        return mlp().double(), torch.randn(3, 12, generator=generator, dtype=torch.float64)
    return cnn().double(), torch.randn(3, 2, 6, 6, generator=generator, dtype=torch.float64)


TARGETS = torch.tensor([0, 3, 1])
EPS = 1e-6


def reference(model: nn.Sequential, x: Tensor, rules: Callable[[int, nn.Module], ref.Rule]) -> np.ndarray:
    return np.stack([ref.lrp(model, x[i], int(TARGETS[i]), rules) for i in range(len(x))])


def close(got: Tensor, expected: np.ndarray) -> None:
    scale = float(np.abs(expected).max())
    np.testing.assert_allclose(got.detach().numpy(), expected, rtol=1e-8, atol=1e-10 * scale)


LAYER_RULES = {
    "epsilon": (EpsilonLayer(0.1), ref.epsilon(0.1)),
    "z_plus": (ZPlus(), ref.z_plus()),
    "alpha2_beta1": (AlphaBeta(2.0, 1.0), ref.alpha_beta(2.0, 1.0)),
    "alpha1_beta0": (AlphaBeta(1.0, 0.0), ref.alpha_beta(1.0, 0.0)),
    "gamma": (Gamma(0.25), ref.gamma(0.25)),
    "gamma_large": (Gamma(2.0), ref.gamma(2.0)),
}


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
@pytest.mark.parametrize("name", list(LAYER_RULES))
def test_each_layer_rule_equals_the_layer_by_layer_reference(kind: str, name: str) -> None:
    rule, expected_rule = LAYER_RULES[name]
    model, x = net(kind)
    composite = Composite({"linear": rule, "conv": rule, "pooling": EpsilonLayer(EPS)})
    got = gradattr.attribute(model, x, method="lrp", composite=composite, target=TARGETS)

    def rules(i: int, op: nn.Module) -> ref.Rule:
        return ref.epsilon(EPS) if isinstance(op, nn.AvgPool2d) else expected_rule

    close(got, reference(model, x, rules))


FIRST_RULES = {
    "flat": (Flat(), ref.flat()),
    "w_square": (WSquare(), ref.w_square()),
    "z_box": (ZBox(-2.5, 3.0), ref.z_box(-2.5, 3.0)),
}


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
@pytest.mark.parametrize("name", list(FIRST_RULES))
def test_first_layer_rules_give_relevance_to_inputs_of_value_zero(kind: str, name: str) -> None:
    rule, expected_rule = FIRST_RULES[name]
    model, x = net(kind)
    x = x.clone()
    x.view(3, -1)[:, :5] = 0.0  # inputs of value 0: gradient×input would give them nothing
    composite = Composite({"first": rule, "linear": ZPlus(), "conv": ZPlus(), "pooling": EpsilonLayer(EPS)})
    got = gradattr.attribute(model, x, method="lrp", composite=composite, target=TARGETS)

    def rules(i: int, op: nn.Module) -> ref.Rule:
        if i == 0:
            return expected_rule
        return ref.epsilon(EPS) if isinstance(op, nn.AvgPool2d) else ref.z_plus()

    expected = reference(model, x, rules)
    close(got, expected)
    assert np.abs(expected.reshape(3, -1)[:, :5]).max() > 1e-3 * np.abs(expected).max()


def zennit_rules(
    name: str, low: float | np.ndarray = -2.5, high: float | np.ndarray = 3.0
) -> Callable[[int, nn.Module], ref.Rule]:
    """Zennit's composites as the reference sees them (ε = stabiliser = 1e-6, γ = 0.25)."""
    conv = {"epsilon_plus": ref.z_plus(), "epsilon_gamma_box": ref.gamma(0.25)}.get(
        name.removesuffix("_flat"), ref.alpha_beta(2.0, 1.0)
    )
    first = ref.flat() if name.endswith("_flat") else ref.z_box(low, high) if name.endswith("box") else None

    def rules(i: int, op: nn.Module) -> ref.Rule:
        if i == 0 and first is not None:
            return first
        if isinstance(op, nn.Conv2d):
            return conv
        return ref.epsilon(EPS)

    return rules


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
@pytest.mark.parametrize("name", COMPOSITES)
def test_named_composites_are_zennits(kind: str, name: str) -> None:
    model, x = net(kind)
    options = {"low": -2.5, "high": 3.0} if name == "epsilon_gamma_box" else {}
    got = gradattr.attribute(model, x, method="lrp", composite=name, target=TARGETS, **options)
    close(got, reference(model, x, zennit_rules(name)))


def test_box_bounds_per_channel() -> None:
    """zB with per-channel bounds (1, C, 1, 1), as for normalised images."""
    model, x = net("cnn")
    low, high = torch.tensor([-2.0, -3.0]).view(1, 2, 1, 1), torch.tensor([2.5, 1.5]).view(1, 2, 1, 1)
    got = gradattr.attribute(model, x, method="lrp", composite="epsilon_gamma_box", low=low, high=high, target=TARGETS)
    per_feature = [t.expand(1, 2, 6, 6).reshape(-1).numpy() for t in (low, high)]
    close(got, reference(model, x, zennit_rules("epsilon_gamma_box", *per_feature)))


class FunctionalCNN(nn.Module):
    """:func:`cnn` written with F.conv2d / F.avg_pool2d / F.linear on the same parameters, a reused
    ``nn.ReLU`` and a functional ReLU: a module-hook LRP sees none of these layers."""

    def __init__(self, twin: nn.Sequential) -> None:
        super().__init__()
        self.twin = twin
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        conv1, conv2, _, _, _, head = self.twin
        h = F.conv2d(x, conv1.weight, conv1.bias, padding=1)
        h = self.relu(F.relu(F.conv2d(h, conv2.weight, conv2.bias)))  # relu twice = relu; the reused module too
        return F.linear(F.avg_pool2d(h, 2).flatten(1), head.weight, head.bias)


@pytest.mark.parametrize("name", COMPOSITES)
def test_functional_and_reused_layers_get_the_same_rules(name: str) -> None:
    model, x = net("cnn")
    options = {"low": -2.5, "high": 3.0} if name == "epsilon_gamma_box" else {}
    module_written = gradattr.attribute(model, x, method="lrp", composite=name, target=TARGETS, **options)
    functional = gradattr.attribute(FunctionalCNN(model), x, method="lrp", composite=name, target=TARGETS, **options)
    torch.testing.assert_close(functional, module_written, rtol=1e-12, atol=1e-14)


def _randomise(bn: nn.BatchNorm2d | nn.BatchNorm1d, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor, low, high in ((bn.running_mean, -0.2, 0.2), (bn.running_var, 0.5, 2.0), (bn.weight, 0.5, 1.5),
                                  (bn.bias, -0.1, 0.1)):  # fmt: skip
            tensor.copy_(torch.rand(tensor.shape, generator=generator, dtype=tensor.dtype) * (high - low) + low)


def _folded(conv: nn.Conv2d | nn.Linear, bn: nn.BatchNorm2d | nn.BatchNorm1d) -> nn.Module:
    """``bn(conv(x))`` as one layer, by hand: W·γ/σ and (b − μ)·γ/σ + β."""
    folded = copy.deepcopy(conv)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    with torch.no_grad():
        folded.weight.mul_(scale.view(-1, *([1] * (conv.weight.dim() - 1))))
        folded.bias.copy_((conv.bias - bn.running_mean) * scale + bn.bias)
    return folded


class FunctionalBatchNorm(nn.Module):
    """conv -> F.batch_norm -> ReLU -> ... with a functional conv and a functional batch norm."""

    def __init__(self, twin: nn.Sequential) -> None:
        super().__init__()
        self.twin = twin

    def forward(self, x: Tensor) -> Tensor:
        conv, bn, relu, *rest = self.twin
        h = F.conv2d(x, conv.weight, conv.bias, padding=1)
        h = F.batch_norm(h, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
        for layer in (relu, *rest):
            h = layer(h)
        return h


@pytest.mark.parametrize("name", ["epsilon_plus", "epsilon_alpha2_beta1", "epsilon_gamma_box"])
def test_batch_norm_folds_into_the_layer_before_it(name: str) -> None:
    torch.manual_seed(3)
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(3 * 36, 6),
        nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 5),
    ).double().eval()  # fmt: skip
    _randomise(model[1], 0)
    _randomise(model[5], 1)
    folded = nn.Sequential(_folded(model[0], model[1]), model[2], model[3], _folded(model[4], model[5]), *model[6:])
    _, x = net("cnn")
    options = {"low": -2.5, "high": 3.0} if name == "epsilon_gamma_box" else {}
    got = gradattr.attribute(model, x, method="lrp", composite=name, target=TARGETS, **options)
    close(got, reference(folded, x, zennit_rules(name)))
    functional = gradattr.attribute(FunctionalBatchNorm(model), x, method="lrp", composite=name, target=TARGETS,
                                    **options)  # fmt: skip
    torch.testing.assert_close(functional, got, rtol=1e-10, atol=1e-12)


def test_batch_norm_that_folds_into_nothing_passes_relevance() -> None:
    """Batch norm on the input (no layer before it) gets Zennit's pass rule: the relevance of its output goes
    unchanged to its input."""
    torch.manual_seed(4)
    model = nn.Sequential(nn.BatchNorm1d(12), nn.Linear(12, 6), nn.ReLU(), nn.Linear(6, 4)).double().eval()
    _randomise(model[0], 2)
    _, x = net("mlp")
    got = gradattr.attribute(model, x, method="lrp", composite="epsilon_plus", target=TARGETS)
    after_norm = gradattr.attribute(model[1:], model[0](x), method="lrp", composite="epsilon_plus", target=TARGETS)
    torch.testing.assert_close(got, after_norm, rtol=1e-10, atol=1e-12)


class Normalised(nn.Module):
    """(x − μ) / σ inside the model, then the CNN: the first layer's input is the model's input up to it."""

    def __init__(self, model: nn.Module, mean: float, std: float) -> None:
        super().__init__()
        self.model, self.mean, self.std = model, mean, std

    def forward(self, x: Tensor) -> Tensor:
        return self.model((x - self.mean) / self.std)


@pytest.mark.parametrize("name", ["epsilon_plus_flat", "epsilon_gamma_box"])
def test_first_layer_rules_reach_the_input_through_an_input_normalisation(name: str) -> None:
    """The relevance the first layer gives its (normalised) input reaches the raw input as Zennit's plain
    gradient carries it through (x − μ)/σ: divided by σ."""
    model, x = net("cnn")
    mean, std = 0.3, 2.0
    options = {"low": -1.0, "high": 1.0} if name == "epsilon_gamma_box" else {}
    got = gradattr.attribute(Normalised(model, mean, std), x, method="lrp", composite=name, target=TARGETS, **options)
    inside = gradattr.attribute(model, (x - mean) / std, method="lrp", composite=name, target=TARGETS, **options)
    torch.testing.assert_close(got, inside / std, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", [c for c in COMPOSITES if c != "epsilon_gamma_box"])
def test_bias_free_relu_nets_conserve_relevance(name: str) -> None:
    torch.manual_seed(5)
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, bias=False), nn.ReLU(), nn.Conv2d(4, 4, 3, bias=False), nn.ReLU(),
        nn.AvgPool2d(2), nn.Flatten(), nn.Linear(16, 8, bias=False), nn.ReLU(), nn.Linear(8, 5, bias=False),
    ).double()  # fmt: skip
    x = torch.rand(4, 2, 6, 6, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    relevance, gap = gradattr.attribute(model, x, method="lrp", composite=name, target=1, return_gap=True,
                                        epsilon=1e-12, stabilizer=1e-12)  # fmt: skip
    scores = model(x)[:, 1].detach()
    assert scores.abs().min() > 1e-3
    torch.testing.assert_close(gap, torch.zeros_like(gap), rtol=0, atol=1e-9 * float(scores.abs().max()))
    torch.testing.assert_close(relevance.sum((1, 2, 3)) - scores, gap, rtol=0, atol=1e-12)
    from gradattr.metrics import conservation_gap

    torch.testing.assert_close(conservation_gap(model, x, relevance, target=1), gap, rtol=0, atol=1e-12)


class Residual(nn.Module):
    """Bias-free ResNet-style block: relu(conv(relu(conv(x))) + x), twice, then pooling and a linear head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(7)
        self.stem = nn.Conv2d(2, 4, 3, padding=1, bias=False)
        self.convs = nn.ModuleList(nn.Conv2d(4, 4, 3, padding=1, bias=False) for _ in range(4))
        self.head = nn.Linear(4, 3, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.stem(x))
        for first, second in (self.convs[:2], self.convs[2:]):
            h = F.relu(second(F.relu(first(h))) + h)
        return self.head(F.adaptive_avg_pool2d(h, 1).flatten(1))


def test_residual_adds_split_relevance_in_proportion_and_conserve_it() -> None:
    """z-rule at the add: each summand gets its share of the sum's relevance, so nothing is doubled or lost
    (Zennit needs a canonizer per block type for this; its issue #236). With LRP-0 at the bias-free layers
    every layer conserves, so the whole net does exactly. (z⁺ and αβ lose the relevance of a unit whose
    contributions are all of one sign, which a residual sum can make negative: not the add's doing.)"""
    model = Residual().double()
    x = torch.rand(3, 2, 6, 6, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    lrp0 = EpsilonLayer(1e-12)
    composite = Composite({"conv": lrp0, "linear": lrp0, "pooling": lrp0})
    relevance, gap = gradattr.attribute(model, x, method="lrp", composite=composite, target=2, return_gap=True)
    scores = model(x)[:, 2].detach()
    assert scores.abs().min() > 1e-3
    torch.testing.assert_close(gap, torch.zeros_like(gap), rtol=0, atol=1e-9 * float(scores.abs().max()))
    plain = gradattr.attribute(model, x, method="gradient_x_input", target=2)  # LRP-0 on a ReLU net (Prop. 1)
    torch.testing.assert_close(relevance, plain, rtol=1e-6, atol=1e-10)  # ε = 1e-12 against tiny z


def test_module_overrides_and_path_globs_choose_the_rule() -> None:
    """Keys by module class and path glob win over the op kind: ε = 0.25 at the head only."""
    model, x = net("cnn")
    composite = Composite({"conv": ZPlus(), "linear": EpsilonLayer(EPS), "pooling": EpsilonLayer(EPS),
                           "5": EpsilonLayer(0.25), nn.Conv2d: AlphaBeta(1.0, 0.0)})  # fmt: skip
    got = gradattr.attribute(model, x, method="lrp", composite=composite, target=TARGETS)

    def rules(i: int, op: nn.Module) -> ref.Rule:
        if i == 5:
            return ref.epsilon(0.25)
        return ref.alpha_beta(1.0, 0.0) if isinstance(op, nn.Conv2d) else ref.epsilon(EPS)

    close(got, reference(model, x, rules))


def test_transformers_get_attnlrp_rules_beside_the_layer_rules() -> None:
    """On a transformer (no convolution) epsilon_plus is ε at every linear layer and product with AttnLRP's
    rules elsewhere: the same as epsilon_lrp's rules="epsilon" at ε = 1e-6."""
    from hf_zoo import hf_model, last_token

    case = hf_model("gpt2")
    model = case.model.double()
    common = {"target": None, "layer": case.embedding, "forward_kwargs": case.forward_kwargs,
              "position": last_token(case)}  # fmt: skip
    got = gradattr.attribute(model, case.inputs, method="lrp", composite="epsilon_plus", **common)
    expected = gradattr.attribute(model, case.inputs, method="epsilon_lrp", rules="epsilon", epsilon=EPS, **common)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)
    assert float(got.abs().sum()) > 0


def test_bad_composites_are_errors_naming_the_choice() -> None:
    model, x = net("cnn")
    with pytest.raises(ValueError, match=r"composite must be 'epsilon_plus' or 'epsilon_plus_flat' or .* got str 'eps"):
        gradattr.attribute(model, x, method="lrp", composite="epsilon_flat", target=TARGETS)
    with pytest.raises(ValueError, match="low= and high= are the bounds of epsilon_gamma_box"):
        gradattr.attribute(model, x, method="lrp", composite="epsilon_plus", low=0.0, high=1.0, target=TARGETS)
    with pytest.raises(ValueError, match="is for the first layer only"):
        gradattr.attribute(model, x, method="lrp", composite=Composite({"linear": Flat()}), target=TARGETS)
    with pytest.raises(TypeError, match="is not a layer rule"):
        Composite({"conv": "z_plus"})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="alpha - beta = 1"):
        AlphaBeta(2.0, 2.0)


def test_the_model_is_unchanged_also_when_the_call_fails() -> None:
    model, x = net("cnn")
    before = copy.deepcopy(model.state_dict())
    gradattr.attribute(model, x, method="lrp", composite="epsilon_gamma_box", target=TARGETS)
    with pytest.raises(ValueError):
        gradattr.attribute(model, x, method="lrp", composite=Composite({"linear": Flat()}), target=TARGETS)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks for m in model.modules())
