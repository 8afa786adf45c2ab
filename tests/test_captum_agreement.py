"""gradattr against Captum 0.9 and against the layer-by-layer reference in ``tests/reference.py``.

All models are float64 ``nn.Sequential`` MLPs/CNNs, so every comparison is about formulas, not float32
noise. Tolerances, and why they are what they are:

``EXACT`` (rtol 1e-10, atol 1e-12)
    Same formula evaluated two ways in float64; only summation order and the order of the batch differ
    (observed differences ~1e-16).
``CAPTUM_IG`` (rtol 1e-6, atol 1e-9)
    Captum's ``riemann_right`` uses the right Riemann sum of SPEC (alphas ``k/m``, ``k = 1..m``, weights
    ``1/m``: ``captum/attr/_utils/approximation_methods.py``), but builds the alphas with a float32
    ``torch.linspace(1/m, 1, m)`` and the weights with ``torch.tensor(step_sizes).float()``, i.e. with
    relative errors ~6e-8 even for float64 models. Against the float64 reference IG we use ``EXACT``.
``CAPTUM_F32_RESULT`` (rtol 2.5e-7, atol 1e-12)
    Captum's Occlusion returns ``total.float() / count`` (``captum/attr/_core/feature_ablation.py``,
    ``format_result``): a float32 result even for float64 models, i.e. two float32 roundings (<= 1.2e-7
    relative). Against the float64 brute-force reference we use ``EXACT``.

Where Captum and SPEC differ by construction, and how that is handled here:

* DeepLift: Captum falls back to the plain gradient ``f'(z)`` where ``|z - z̄| < 1e-10``; SPEC uses
  ``f'((z + z̄) / 2)`` where ``|z - z̄| <= 1e-5``. The Captum comparisons assert (``min_rescale_gap``) that
  no unit is within 1e-5 of its reference, so both rules are the secant there and must agree to ``EXACT``.
* LRP: Captum's ``EpsilonRule`` divides the relevance at the *output of every rule-carrying layer*
  (Linear, Conv2d, AvgPool2d, ...) by ``z + ε·sign(z)``, sign(0) = +1, and multiplies by the layer input;
  activations pass relevance unchanged. Ancona's modified gradient puts ``f(z) / (z + ε·sign(z))`` on
  each nonlinearity ``f``. When a layer feeds a nonlinearity, its output *is* that ``z``, so the two
  coincide; on every other layer (pooling, Flatten, the final logit layer) Ancona has no ε at all. We
  therefore give Captum ``EpsilonRule(ε)`` on layers that feed a nonlinearity and ``EpsilonRule(1e-30)``
  elsewhere (a division by ``z`` that never sees ``0/0``: relevance is exactly 0 where ``z`` is). With
  Captum's defaults instead (ε = 1e-9 everywhere), the result differs by the factor
  ``S_c / (S_c + 1e-9·sign S_c)`` at the top and by 1e-9 terms in between.
* Occlusion: Captum divides each feature's summed drop by the number of windows covering it, SPEC by the
  number of features in the window. Converting: ``gradattr = captum · count / |window|``; on interior
  features with stride 1, ``count = |window|`` and the two agree without conversion.

Captum's own failures (functional ``F.relu``, a reused ``nn.ReLU``) are documented next to the tests
that check gradattr on those models; the tests assert gradattr's correctness only.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from captum.attr import LRP, DeepLift, InputXGradient, IntegratedGradients, Occlusion, Saliency
from captum.attr._utils.lrp_rules import EpsilonRule
from torch import Tensor, nn

import gradattr

import reference as ref

EXACT: dict[str, float] = {"rtol": 1e-10, "atol": 1e-12}
CAPTUM_IG: dict[str, float] = {"rtol": 1e-6, "atol": 1e-9}
CAPTUM_F32_RESULT: dict[str, float] = {"rtol": 2.5e-7, "atol": 1e-12}
DTYPE = torch.float64
NUM_CLASSES = 5

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "softplus": nn.Softplus,
}


@dataclass(frozen=True)
class Case:
    """A seeded float64 model with a batch of inputs, per-sample targets and a non-zero baseline."""

    model: nn.Sequential
    x: Tensor
    target: Tensor
    baseline: Tensor

    def logit_gap(self, baseline: Tensor | None = None) -> Tensor:
        """``S_c(x) - S_c(x̄)`` per sample (``x̄`` = zeros when ``baseline`` is None)."""
        x_ref = torch.zeros_like(self.x) if baseline is None else baseline
        with torch.no_grad():
            return ref.target_logits(self.model, self.x, self.target) - ref.target_logits(
                self.model, x_ref, self.target
            )


def mlp(act: type[nn.Module]) -> nn.Sequential:
    """20-16-12-5 MLP."""
    return nn.Sequential(nn.Linear(20, 16), act(), nn.Linear(16, 12), act(), nn.Linear(12, NUM_CLASSES))


def cnn(act: type[nn.Module]) -> nn.Sequential:
    """2x10x10 input: conv3 -> conv3 -> avgpool2 -> flatten -> linear -> linear."""
    return nn.Sequential(
        nn.Conv2d(2, 4, 3),
        act(),
        nn.Conv2d(4, 6, 3),
        act(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(6 * 3 * 3, 12),
        act(),
        nn.Linear(12, NUM_CLASSES),
    )


ARCHITECTURES: dict[str, tuple[Callable[[type[nn.Module]], nn.Sequential], tuple[int, ...]]] = {
    "mlp": (mlp, (6, 20)),
    "cnn": (cnn, (4, 2, 10, 10)),
}


def make_case(name: str, seed: int = 0) -> Case:
    """``name`` = ``"<architecture>-<activation>"``, e.g. ``"cnn-tanh"``."""
    arch, act = name.split("-")
    build, shape = ARCHITECTURES[arch]
    torch.manual_seed(seed)
    model = build(ACTIVATIONS[act]).to(DTYPE).eval()
    x = torch.randn(shape, dtype=DTYPE)
    baseline = 0.5 * torch.randn(shape, dtype=DTYPE)
    target = torch.arange(shape[0]) % NUM_CLASSES
    return Case(model, x, target, baseline)


def captum(explainer: Any, model: nn.Module, x: Tensor, /, **kwargs: Any) -> Tensor:
    """Run a Captum attribution with Captum's own hook warnings silenced (gradattr's are not)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return explainer(model).attribute(x, **kwargs).detach()


def attribute(case: Case, method: str, **options: Any) -> Tensor:
    """gradattr on a case, checking the result's dtype and shape before returning it."""
    attr = gradattr.attribute(case.model, case.x, method=method, target=case.target, **options)
    assert attr.dtype == case.x.dtype and attr.shape == case.x.shape
    return attr


CAPTUM_MODELS = [f"{a}-{f}" for a in ARCHITECTURES for f in ("relu", "tanh", "sigmoid")]
ALL_MODELS = [f"{a}-{f}" for a in ARCHITECTURES for f in ACTIVATIONS]


# --------------------------------------------------------------------------------------------------
# Captum agreement
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CAPTUM_MODELS)
@pytest.mark.parametrize(
    ("method", "captum_method", "captum_kwargs"),
    [("saliency", Saliency, {"abs": True}), ("gradient_x_input", InputXGradient, {})],
)
def test_gradient_methods_match_captum(
    name: str, method: str, captum_method: Any, captum_kwargs: dict[str, Any]
) -> None:
    """Saliency = Captum Saliency(abs=True); Gradient*Input = Captum InputXGradient."""
    case = make_case(name)
    expected = captum(captum_method, case.model, case.x, target=case.target, **captum_kwargs)
    torch.testing.assert_close(attribute(case, method), expected, **EXACT)


@pytest.mark.parametrize("target_kind", ["int", "list", "tensor"])
def test_saliency_target_forms_match_captum(target_kind: str) -> None:
    """``target`` as int, list and LongTensor selects the same logits Captum selects."""
    case = make_case("mlp-tanh")
    target: Any = {"int": 3, "list": case.target.tolist(), "tensor": case.target}[target_kind]
    expected = captum(Saliency, case.model, case.x, target=target, abs=True)
    got = gradattr.attribute(case.model, case.x, method="saliency", target=target)
    torch.testing.assert_close(got, expected, **EXACT)


@pytest.mark.parametrize("name", CAPTUM_MODELS)
@pytest.mark.parametrize("steps", [8, 50])
def test_integrated_gradients_match_captum_riemann_right(name: str, steps: int) -> None:
    """IG(m) = Captum IntegratedGradients(method="riemann_right", n_steps=m), non-zero baseline."""
    case = make_case(name)
    expected = captum(
        IntegratedGradients,
        case.model,
        case.x,
        baselines=case.baseline,
        target=case.target,
        n_steps=steps,
        method="riemann_right",
    )
    got = attribute(case, "integrated_gradients", baseline=case.baseline, steps=steps)
    torch.testing.assert_close(got, expected, **CAPTUM_IG)


@pytest.mark.parametrize("name", CAPTUM_MODELS)
@pytest.mark.parametrize("baseline_kind", ["zero", "random"])
def test_deeplift_matches_captum(name: str, baseline_kind: str) -> None:
    """DeepLIFT Rescale = Captum DeepLift(multiply_by_inputs=True) where no fallback is active."""
    case = make_case(name)
    baseline = torch.zeros_like(case.x) if baseline_kind == "zero" else case.baseline
    assert ref.min_rescale_gap(case.model, case.x, baseline) > ref.RESCALE_THRESHOLD
    expected = captum(
        lambda m: DeepLift(m, multiply_by_inputs=True),
        case.model,
        case.x,
        baselines=baseline,
        target=case.target,
    )
    torch.testing.assert_close(attribute(case, "deeplift", baseline=baseline), expected, **EXACT)


def attach_ancona_epsilon_rules(model: nn.Sequential, epsilon: float) -> None:
    """Captum rules equivalent to Ancona's eps-LRP (see the module docstring)."""
    layers = list(model)
    for layer, following in zip(layers, [*layers[1:], None], strict=True):
        if isinstance(layer, (nn.ReLU, nn.Tanh)):
            continue
        feeds_nonlinearity = isinstance(following, (nn.ReLU, nn.Tanh))
        layer.rule = EpsilonRule(epsilon if feeds_nonlinearity else 1e-30)


@pytest.mark.parametrize("name", [f"{a}-{f}" for a in ARCHITECTURES for f in ("relu", "tanh")])
@pytest.mark.parametrize("epsilon", [1e-4, 1e-2])
def test_epsilon_lrp_matches_captum_lrp(name: str, epsilon: float) -> None:
    """eps-LRP = Captum LRP with EpsilonRule(ε) on layers feeding a nonlinearity (Captum: ReLU/Tanh)."""
    case = make_case(name)
    attach_ancona_epsilon_rules(case.model, epsilon)
    expected = captum(LRP, case.model, case.x, target=case.target)
    got = attribute(case, "epsilon_lrp", epsilon=epsilon)
    torch.testing.assert_close(got, expected, **EXACT)


OCCLUSION_CASES = {
    # name: (model, window, stride); every (size - window) is divisible by the stride, so Captum's
    # edge-cropped windows never occur and both libraries use the same window positions.
    "mlp-w3-s1": ("mlp-relu", (3,), (1,)),
    "mlp-w4-s2": ("mlp-tanh", (4,), (2,)),
    "cnn-w133-s1": ("cnn-relu", (1, 3, 3), (1, 1, 1)),
    "cnn-w144-s2": ("cnn-relu", (1, 4, 4), (1, 2, 2)),
    "cnn-w223-s121": ("cnn-sigmoid", (2, 2, 3), (1, 2, 1)),
}


@pytest.mark.parametrize("occ", list(OCCLUSION_CASES))
def test_occlusion_matches_captum_up_to_normalisation(occ: str) -> None:
    """gradattr = Captum Occlusion · count / |window|; identical where count = |window|."""
    name, window, stride = OCCLUSION_CASES[occ]
    case = make_case(name)
    expected = captum(
        Occlusion,
        case.model,
        case.x,
        target=case.target,
        sliding_window_shapes=window,
        strides=stride,
        baselines=0.0,
        perturbations_per_eval=32,
    )
    got = attribute(case, "occlusion", window=window, stride=stride, value=0.0)
    counts = ref.window_counts(case.x.shape[1:], window, stride)
    assert counts.min() > 0
    expected = expected.to(DTYPE)
    size = math.prod(window)
    torch.testing.assert_close(got, expected * counts / size, **CAPTUM_F32_RESULT)
    same = (counts == size).expand_as(got)
    if stride == (1,) * len(stride):
        assert same.any()
    torch.testing.assert_close(got[same], expected[same], **CAPTUM_F32_RESULT)


# --------------------------------------------------------------------------------------------------
# Reference agreement (SPEC formulas, computed layer by layer / by brute force)
# --------------------------------------------------------------------------------------------------


def golden_model() -> nn.Sequential:
    """SPEC's f(x) = ReLU(ReLU(x1 - 1) - ReLU(x2)) as a Sequential."""
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1), nn.ReLU()).to(DTYPE)
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(2))
        model[0].bias.copy_(torch.tensor([-1.0, 0.0]))
        model[2].weight.copy_(torch.tensor([[1.0, -1.0]]))
        model[2].bias.zero_()
    return model


def test_reference_reproduces_spec_golden_values() -> None:
    """The reference itself is checked against SPEC's golden values before it judges anything."""
    model, x = golden_model(), torch.tensor([[3.0, 1.0]], dtype=DTYPE)
    expect = {
        "gradient": ref.gradient(model, x, 0),
        "eps": ref.epsilon_lrp(model, x, 0),
        "deeplift": ref.deeplift_rescale(model, x, 0),
        "ig": ref.integrated_gradients(model, x, 0, steps=100),
        "occ1": ref.occlusion(model, x, 0, (1,), (1,)),
        "occ2": ref.occlusion(model, x, 0, (2,), (1,)),
    }
    golden = {
        "gradient": [1.0, -1.0],
        "eps": [3.0, -1.0],
        "deeplift": [2.0, -1.0],
        "ig": [1.5, -0.5],
        "occ1": [1.0, -1.0],
        "occ2": [0.5, 0.5],
    }
    for key, values in golden.items():
        atol = 1e-3 if key == "eps" else 1e-12  # eps-LRP: "≈ (3, -1)", off by O(ε)
        torch.testing.assert_close(expect[key], torch.tensor([values], dtype=DTYPE), rtol=0, atol=atol)
    x, baseline = torch.tensor([[3.0, 2.5]], dtype=DTYPE), torch.tensor([[2.0, 0.0]], dtype=DTYPE)
    torch.testing.assert_close(
        ref.integrated_gradients(model, x, 0, baseline, steps=100),
        torch.tensor([[0.66, -1.65]], dtype=DTYPE),
    )
    torch.testing.assert_close(
        ref.deeplift_rescale(model, x, 0, baseline), torch.tensor([[2 / 3, -5 / 3]], dtype=DTYPE)
    )


def baseline_for(case: Case, kind: str) -> Tensor:
    """zero; random; ``near`` = x + 1e-7 noise (every unit takes the midpoint fallback); ``patch`` = x
    with the first 3 features along the last axis zeroed (many units have z = z̄ exactly)."""
    if kind == "zero":
        return torch.zeros_like(case.x)
    if kind == "random":
        return case.baseline
    if kind == "near":
        return case.x + 1e-7 * torch.randn(case.x.shape, dtype=DTYPE, generator=torch.Generator().manual_seed(1))
    patched = case.x.clone()
    patched[..., :3] = 0.0
    return patched


@pytest.mark.parametrize("name", ALL_MODELS)
@pytest.mark.parametrize("baseline_kind", ["zero", "random", "near", "patch"])
def test_deeplift_matches_reference(name: str, baseline_kind: str) -> None:
    """DeepLIFT Rescale, incl. the ``|z - z̄| <= 1e-5`` midpoint fallback, and completeness."""
    case = make_case(name)
    baseline = baseline_for(case, baseline_kind)
    got = attribute(case, "deeplift", baseline=baseline)
    torch.testing.assert_close(got, ref.deeplift_rescale(case.model, case.x, case.target, baseline), **EXACT)
    if baseline_kind != "near":  # there S_c(x) - S_c(x̄) ~ 1e-7 is itself mostly rounding error
        torch.testing.assert_close(got.flatten(1).sum(1), case.logit_gap(baseline), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ALL_MODELS)
@pytest.mark.parametrize("epsilon", [1e-4, 1e-2])
def test_epsilon_lrp_matches_reference(name: str, epsilon: float) -> None:
    """eps-LRP: ``x ⊙ g`` with ``f(z) / (z + ε·sign z)`` on every nonlinearity."""
    case = make_case(name)
    got = attribute(case, "epsilon_lrp", epsilon=epsilon)
    torch.testing.assert_close(got, ref.epsilon_lrp(case.model, case.x, case.target, epsilon), **EXACT)


@pytest.mark.parametrize("name", ALL_MODELS)
@pytest.mark.parametrize("steps", [1, 7, 50])
def test_integrated_gradients_matches_reference(name: str, steps: int) -> None:
    """IG(m): right Riemann sum with alphas k/m exactly, non-zero baseline."""
    case = make_case(name)
    got = attribute(case, "integrated_gradients", baseline=case.baseline, steps=steps)
    expected = ref.integrated_gradients(case.model, case.x, case.target, case.baseline, steps)
    torch.testing.assert_close(got, expected, **EXACT)


@pytest.mark.parametrize("act", ["tanh", "sigmoid", "softplus"])
def test_deeplift_equals_exact_ig_with_one_hidden_layer(act: str) -> None:
    """SPEC: with one layer of nonlinearities DeepLIFT = IG(m -> ∞) exactly, since
    ``∫_0^1 f'(z̄ + α(z - z̄)) dα = (f(z) - f(z̄)) / (z - z̄)``; and IG(m) approaches it as m grows."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(20, 16), ACTIVATIONS[act](), nn.Linear(16, NUM_CLASSES)).to(DTYPE)
    x, baseline = torch.randn(6, 20, dtype=DTYPE), 0.5 * torch.randn(6, 20, dtype=DTYPE)
    target = torch.arange(6) % NUM_CLASSES
    exact = ref.integrated_gradients_exact(model, x, target, baseline, nodes=200)
    dl = gradattr.attribute(model, x, method="deeplift", target=target, baseline=baseline)
    torch.testing.assert_close(dl, exact, rtol=1e-9, atol=1e-12)
    errors = []
    for steps in (10, 100, 1000):
        ig = gradattr.attribute(model, x, method="integrated_gradients", target=target, baseline=baseline, steps=steps)
        errors.append((ig - exact).abs().max().item())
    # right Riemann error ~ C/m: a 100x finer grid must be ~100x closer (50x allows for the constant).
    assert errors[1] < errors[0] and errors[2] < errors[1] and errors[2] < errors[0] / 50


REFERENCE_OCCLUSION_CASES = {
    "mlp-w1": ("mlp-softplus", (1,), (1,), 0.0),
    "mlp-w5-s5-value": ("mlp-relu", (5,), (5,), 0.5),
    "cnn-w122-s2": ("cnn-tanh", (1, 2, 2), (1, 2, 2), 0.0),
    "cnn-w242-s132-value": ("cnn-relu", (2, 4, 2), (1, 3, 2), -1.0),
}


@pytest.mark.parametrize("occ", list(REFERENCE_OCCLUSION_CASES))
def test_occlusion_matches_brute_force(occ: str) -> None:
    """Occlusion per SPEC against a brute-force loop: 2-D windows, stride > 1, non-zero value."""
    name, window, stride, value = REFERENCE_OCCLUSION_CASES[occ]
    case = make_case(name)
    got = attribute(case, "occlusion", window=window, stride=stride, value=value)
    expected = ref.occlusion(case.model, case.x, case.target, window, stride, value)
    torch.testing.assert_close(got, expected, **EXACT)


# --------------------------------------------------------------------------------------------------
# Models Captum gets wrong: activations that are not one nn.ReLU module per call
# --------------------------------------------------------------------------------------------------


class FunctionalReLU(nn.Module):
    """The linear layers of a Sequential MLP with ``F.relu`` between them (no activation module)."""

    def __init__(self, sequential: nn.Sequential) -> None:
        super().__init__()
        self.linears = nn.ModuleList(m for m in sequential if isinstance(m, nn.Linear))

    def activation(self, z: Tensor) -> Tensor:
        """The nonlinearity applied after every hidden linear layer."""
        return F.relu(z)

    def forward(self, x: Tensor) -> Tensor:
        """``linear -> relu -> ... -> linear``."""
        for linear in self.linears[:-1]:
            x = self.activation(linear(x))
        return self.linears[-1](x)


class ReusedReLU(FunctionalReLU):
    """Same network, but one ``nn.ReLU`` module is called after every hidden layer."""

    def __init__(self, sequential: nn.Sequential) -> None:
        super().__init__(sequential)
        self.relu = nn.ReLU()

    def activation(self, z: Tensor) -> Tensor:
        """The single shared ``nn.ReLU`` module."""
        return self.relu(z)


# Captum 0.9 on these models (the "mlp-relu" case; recorded when this file was written):
# * FunctionalReLU: DeepLift hooks only nn.ReLU modules, so F.relu gets its plain gradient. Zero baseline:
#   Σ R per sample = [-0.1369, 0.0183, 0.0194, -0.0785, 0.1109, -0.1651] while S_c(x) - S_c(0) =
#   [-0.0621, 0.0373, 0.0429, -0.0293, 0.0722, -0.1390]; max |R - reference| = 0.030 (random baseline:
#   0.063).
# * ReusedReLU: DeepLift raises RuntimeError("A Module ReLU() was detected that does not contain some of
#   the input/output attributes that are required for DeepLift computations ... used more than once").
@pytest.mark.parametrize("wrapper", [FunctionalReLU, ReusedReLU])
@pytest.mark.parametrize("baseline_kind", ["zero", "random"])
def test_deeplift_complete_where_captum_is_not(wrapper: type[FunctionalReLU], baseline_kind: str) -> None:
    """DeepLIFT on functional / reused activations: equals the Sequential reference and is complete."""
    case = make_case("mlp-relu")
    baseline = baseline_for(case, baseline_kind)
    model = wrapper(case.model)
    got = gradattr.attribute(model, case.x, method="deeplift", target=case.target, baseline=baseline)
    torch.testing.assert_close(got, ref.deeplift_rescale(case.model, case.x, case.target, baseline), **EXACT)
    torch.testing.assert_close(got.sum(1), case.logit_gap(baseline), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("wrapper", [FunctionalReLU, ReusedReLU])
def test_epsilon_lrp_on_functional_and_reused_activations(wrapper: type[FunctionalReLU]) -> None:
    """eps-LRP on functional / reused activations equals the Sequential reference."""
    case = make_case("mlp-relu")
    got = gradattr.attribute(wrapper(case.model), case.x, method="epsilon_lrp", target=case.target)
    torch.testing.assert_close(got, ref.epsilon_lrp(case.model, case.x, case.target), **EXACT)
