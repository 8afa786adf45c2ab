"""Property-based fuzzing of ``gradattr.attribute`` over random tiny models and random valid arguments.

Models come from :mod:`fuzz_models`: Linear/Conv1d/Conv2d stems and blocks, activations called every way
(module, reused module, function, tensor method, in place), residual adds, batch-norm in eval mode with
non-trivial running statistics, average/max pooling, flatten/reshape/view/cat, an embedding front end
(attributed with ``layer="embedding"``), a second input, LSTM/GRU layers; float32/float64, batch 1..5, every
target and baseline form, and method options drawn from their valid ranges.

Properties (numbered as in issue 10):

1. valid arguments never raise (nor warn); arbitrary, possibly invalid arguments raise only the documented
   exceptions;
2. the result has the attributed tensors' shapes and dtypes (tuple in, tuple out) and is finite;
3. completeness: DeepLIFT Σ R = S_c(x) - S_c(x̄) without gate products or max pooling, Shapley sampling
   for any model and any number of samples, Integrated Gradients within the Riemann bound TV(g)/m;
4. the model (parameters, buffers, modes, flags, ``.grad``, hooks, torch-function modes, global RNG) comes
   back bit-identical, after a valid call and after a call that raises;
5. the inputs (any strides, requiring grad or not), baselines and targets come back bit-identical, with no
   ``.grad`` set on them, also with in-place activations in the model;
6. the same call twice gives bit-identical results;
7. attributing a batch equals attributing each sample alone (every method except SmoothGrad);
8. integer and float16/bfloat16 inputs are refused with a TypeError;
9. numpy arrays are accepted and give exactly the tensor result.

Example counts are per property and scale with the loaded Hypothesis profile: the default runs the file in
about half a minute on one core; ``HYPOTHESIS_PROFILE=thorough`` (registered in ``conftest.py``) runs
:data:`THOROUGH_FACTOR` times as many. Bugs the fuzzing found are pinned by the regression tests at the end.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

import gradattr
from gradattr.engine import UnsupportedOperationError
from gradattr.metrics import CompletenessWarning

from fuzz_models import (
    ACTIVATIONS,
    REFERENCE_METHODS,
    BlockSpec,
    Case,
    FuzzNet,
    NetSpec,
    cases,
    net_specs,
    uses_baseline,
)

DOCUMENTED = (ValueError, TypeError, IndexError, UnsupportedOperationError, FloatingPointError)
"""What ``attribute`` may raise (its docstring's Raises section)."""

METHODS: tuple[str, ...] = gradattr.METHODS
THOROUGH_FACTOR = 20
"""How many more examples each property runs under a profile with ``max_examples`` >= 1000."""


def examples(n: int) -> int:
    """``n`` examples under the default profile; :data:`THOROUGH_FACTOR` × ``n`` under a thorough one."""
    return n * THOROUGH_FACTOR if settings.default.max_examples >= 1000 else n


def fuzz_settings(n: int) -> settings:
    return settings(
        max_examples=examples(n),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


def as_tuple(value: Any) -> tuple[Any, ...]:
    return value if isinstance(value, tuple) else (value,)


def clone_tree(value: Any) -> Any:
    """A deep copy of tensors inside tuples/lists/dicts, for bit-identical comparisons later."""
    if isinstance(value, Tensor):
        return value.clone()
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, (tuple, list)):
        return type(value)(clone_tree(v) for v in value)
    if isinstance(value, dict):
        return {k: clone_tree(v) for k, v in value.items()}
    return value


def assert_identical_tree(before: Any, after: Any) -> None:
    """Bit-identical tensors (NaN-aware), same types and structure."""
    assert type(before) is type(after)
    if isinstance(before, Tensor):
        assert before.dtype == after.dtype and before.shape == after.shape
        assert before.requires_grad == after.requires_grad
        assert not (after.is_leaf and after.requires_grad and after.grad is not None), "the input's .grad was set"
        assert torch.equal(before, after) or (
            before.is_floating_point()
            and torch.equal(before.isnan(), after.isnan())
            and torch.equal(before.nan_to_num(), after.nan_to_num())
        )
    elif isinstance(before, np.ndarray):
        np.testing.assert_array_equal(before, after)
    elif isinstance(before, (tuple, list)):
        assert len(before) == len(after)
        for b, a in zip(before, after, strict=True):
            assert_identical_tree(b, a)
    elif isinstance(before, dict):
        assert before.keys() == after.keys()
        for key in before:
            assert_identical_tree(before[key], after[key])
    else:
        assert before == after or (isinstance(before, float) and math.isnan(before) and math.isnan(after))


# -- model state ----------------------------------------------------------------------------------------------

HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_pre_hooks_with_kwargs",
    "_state_dict_hooks",
    "_load_state_dict_pre_hooks",
)
GLOBAL_HOOKS = (
    "_global_forward_hooks",
    "_global_forward_pre_hooks",
    "_global_backward_hooks",
    "_global_backward_pre_hooks",
    "_global_module_registration_hooks",
    "_global_parameter_registration_hooks",
    "_global_buffer_registration_hooks",
)


@dataclass
class Snapshot:
    """Everything ``attribute`` must leave as it found: the model's state, modes, flags, gradients and hooks,
    and the process-wide state it could leak (torch-function/dispatch modes, grad mode, global RNG)."""

    state: dict[str, Tensor]
    training: dict[str, bool]
    requires_grad: dict[str, bool]
    grads: dict[str, Tensor | None]
    tensor_hooks: dict[str, bool]
    hooks: dict[str, tuple[tuple[int, ...], ...]]
    attributes: dict[str, list[str]]
    global_hooks: tuple[int, ...]
    grad_enabled: bool
    function_modes: int
    dispatch_modes: int
    rng: Tensor

    @staticmethod
    def of(model: nn.Module) -> Snapshot:
        module_hooks = nn.modules.module
        return Snapshot(
            state={k: v.clone() for k, v in model.state_dict(keep_vars=True).items()},
            training={name: m.training for name, m in model.named_modules()},
            requires_grad={name: p.requires_grad for name, p in model.named_parameters()},
            grads={name: None if p.grad is None else p.grad.clone() for name, p in model.named_parameters()},
            tensor_hooks={name: bool(p._backward_hooks) for name, p in model.named_parameters()},
            hooks={
                name: tuple(tuple(getattr(m, d, {}).keys()) for d in HOOK_DICTS) for name, m in model.named_modules()
            },
            attributes={name: sorted(vars(m)) for name, m in model.named_modules()},
            global_hooks=tuple(len(getattr(module_hooks, h, {})) for h in GLOBAL_HOOKS),
            grad_enabled=torch.is_grad_enabled(),
            function_modes=torch._C._len_torch_function_stack(),
            dispatch_modes=torch._C._len_torch_dispatch_stack(),
            rng=torch.random.get_rng_state(),
        )

    def assert_unchanged(self, model: nn.Module) -> None:
        after = Snapshot.of(model)
        assert after.training == self.training
        assert after.requires_grad == self.requires_grad
        assert after.hooks == self.hooks
        assert after.attributes == self.attributes, "attributes were added to or removed from a module"
        assert after.tensor_hooks == self.tensor_hooks
        assert after.global_hooks == self.global_hooks
        assert after.grad_enabled == self.grad_enabled
        assert after.function_modes == self.function_modes == 0
        assert after.dispatch_modes == self.dispatch_modes
        assert torch.equal(after.rng, self.rng), "the global RNG was consumed"
        assert after.state.keys() == self.state.keys()
        for key, value in self.state.items():
            assert torch.equal(value, after.state[key]), key  # bit-identical, running statistics included
        for key, grad in self.grads.items():
            other = after.grads[key]
            assert (grad is None and other is None) or (
                grad is not None and other is not None and torch.equal(grad, other)
            ), key


def mode_dependent_training(model: nn.Module) -> bool:
    return any(
        m.training and isinstance(m, (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._BatchNorm))
        for m in model.modules()
    )


def run_quietly(call: Callable[[], Any]) -> tuple[Any, BaseException | None, list[warnings.WarningMessage]]:
    """``call()``'s result or exception, and the warnings it issued."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return call(), None, list(caught)
        except Exception as error:  # the properties judge the exception
            return None, error, list(caught)


def expected_shapes(case: Case) -> tuple[tuple[torch.Size, torch.dtype], ...]:
    """(shape, dtype) of each attributed tensor: the inputs, or the layer's output with ``layer=`` (Grad-CAM:
    the inputs)."""
    return tuple((x.shape, x.dtype) for x in case.attributed())


# -- 1, 2: valid calls ------------------------------------------------------------------------------------------------


@fuzz_settings(90)
@given(case=cases())
def test_valid_calls_return_finite_attributions_shaped_like_the_inputs(case: Case) -> None:
    """Properties 1 and 2: any valid combination of model, inputs, method, options, target and baseline runs
    without an exception or a warning (the models are in eval mode; Integrated Gradients' completeness warning
    at a few random steps is a true statement, not a fault) and returns, per attributed tensor, a finite tensor
    of its shape and dtype; a tuple exactly when the inputs are a tuple and no layer is attributed."""
    result, error, caught = run_quietly(case.call)
    assert error is None, f"{type(error).__name__}: {error}"
    caught = [w for w in caught if not issubclass(w.category, CompletenessWarning)]
    assert not [str(w.message) for w in caught if "gradattr" in (w.filename or "") or "gradattr" in str(w.message)]
    attributed = expected_shapes(case)
    tuple_out = isinstance(case.inputs, tuple) and (case.layer is None or case.method in gradattr.LAYER_METHODS)
    assert isinstance(result, tuple) == tuple_out
    for r, (shape, dtype) in zip(as_tuple(result), attributed, strict=True):
        assert isinstance(r, Tensor)
        assert r.shape == shape and r.dtype == dtype and r.device == torch.device("cpu")
        assert bool(torch.isfinite(r).all())
        assert not r.requires_grad


# -- 1: arbitrary arguments ----------------------------------------------------------------------------------------

_option_values = st.one_of(
    st.integers(-2, 6),
    st.sampled_from((0.0, -1.0, 1e-3, 0.5, 2.5, math.nan, math.inf)),
    st.booleans(),
    st.none(),
    st.sampled_from(("", "linear", "nearest", "cubic", "product", "signal", "vargrad", "saliency", "deeplift")),
    st.lists(st.integers(-1, 3), max_size=3).map(tuple),
    st.lists(st.integers(-1, 3), max_size=3),
    st.sampled_from((torch.tensor([0, 2]), torch.zeros(3), torch.zeros(2, 2, dtype=torch.long), torch.ones(1))),
)
_option_names = st.sampled_from(
    sorted({n for m in METHODS for n in gradattr.methods._REGISTRY[m].options} | {"layer_", "bogus", "step", "base"})
)


@st.composite
def chaos_arguments(draw: st.DrawFn) -> tuple[Case, dict[str, Any]]:
    """A valid case whose arguments are then partly replaced by arbitrary values of many types."""
    case = draw(cases(layers=False))
    arguments = case.arguments()
    for name in draw(st.lists(_option_names, max_size=3, unique=True)):
        arguments[name] = draw(_option_values)
    batch = case.batch
    if draw(st.booleans()):
        arguments["target"] = draw(
            st.one_of(
                st.integers(-3, 6),
                st.sampled_from((1.5, "0", True, [0.5] * batch, [[0]] * batch, (), [0] * (batch + 1))),
                st.just(torch.zeros(batch)),
                st.just(torch.zeros(batch, 2, dtype=torch.long)),
                st.just(np.zeros(batch, dtype=np.int64)),
            )
        )
    if draw(st.booleans()):
        x = case.attributed()[0]
        arguments["baseline"] = draw(
            st.one_of(
                st.sampled_from((math.nan, math.inf, "zero", 0, 1.5, (0.0, 0.0, 0.0), [0.0])),
                st.just(torch.zeros(7, *x.shape[1:], dtype=x.dtype)),
                st.just(torch.full(x.shape[1:], math.nan, dtype=x.dtype)),
                st.just(torch.zeros(x.shape[1:], dtype=torch.long)),
            )
        )
    if draw(st.booleans()):
        arguments["method"] = draw(st.sampled_from((*METHODS, "nope", "Saliency")))
    if draw(st.booleans()):
        arguments["layer"] = draw(st.sampled_from(("nope", "head", "stem", "blocks.0", "", 3)))
    return case, arguments


@fuzz_settings(90)
@given(drawn=chaos_arguments())
def test_arbitrary_arguments_raise_only_documented_errors(drawn: tuple[Case, dict[str, Any]]) -> None:
    """Properties 1, 4 and 5: whatever the arguments, ``attribute`` returns or raises one of the documented exceptions
    (ValueError/TypeError/IndexError, UnsupportedOperationError, FloatingPointError) — never a bare
    RuntimeError, AttributeError, KeyError, ... from inside torch or gradattr — and the model, inputs and
    arguments come back unchanged either way."""
    case, arguments = drawn
    before = Snapshot.of(case.model)
    inputs_before, arguments_before = clone_tree(case.inputs), clone_tree(arguments)
    result, error, _ = run_quietly(lambda: gradattr.attribute(case.model, case.inputs, **arguments))
    if error is not None:
        assert isinstance(error, DOCUMENTED) and type(error) is not RuntimeError, (
            f"undocumented {type(error).__name__}: {error}"
        )
        assert str(error), "an error must say what was expected"
    else:
        assert all(isinstance(r, Tensor) and bool(torch.isfinite(r).all()) for r in as_tuple(result))
    before.assert_unchanged(case.model)
    assert_identical_tree(inputs_before, case.inputs)
    assert_identical_tree(arguments_before, arguments)


# -- 4, 5: restoration ------------------------------------------------------------------------------------------------

BAD_CALLS = (
    "target_too_large",
    "target_negative",
    "target_length",
    "target_float",
    "unknown_option",
    "option_value",
    "baseline",
    "nan_input",
    "unknown_layer",
    "unsupported_inside",
    "nan_forward",
    "dtype_mismatch",
)


def bad_call(case: Case, kind: str) -> tuple[Callable[[], Any], type[Exception] | tuple[type[Exception], ...]]:
    """A call of ``attribute`` on ``case`` made invalid in one way, and the exception it must raise."""
    width = case.spec.output_width
    float_input = case.spec.front != "embedding"
    if kind == "target_too_large":
        return lambda: case.call(target=width + 2), IndexError
    if kind == "target_negative":
        return lambda: case.call(target=-1), IndexError
    if kind == "target_length":
        return lambda: case.call(target=[0] * (case.batch + 1)), ValueError
    if kind == "target_float":
        return lambda: case.call(target=torch.zeros(case.batch)), TypeError
    if kind == "unknown_option":
        return lambda: case.call(bogus=1), TypeError
    if kind == "option_value":
        invalid = {
            "integrated_gradients": {"steps": 0},
            "epsilon_lrp": {"epsilon": -1.0},
            "occlusion": {"window": 99, "stride": 1},
            "shapley_sampling": {"samples": 0},
            "smoothgrad": {"sigma": -1.0},
            "gradcam": {"interpolation": "cubic"},
            "guided_gradcam": {"interpolation": "cubic"},
        }.get(case.method, {"method": "nope"})
        return lambda: case.call(**invalid), ValueError
    if kind == "baseline":
        if uses_baseline(case.method, case.options) or case.method in REFERENCE_METHODS:
            x = case.attributed()[0]
            bad = torch.zeros(x.shape[0] + 2, *x.shape[1:], x.shape[-1] + 1, dtype=x.dtype)
            return lambda: case.call(baseline=bad), ValueError
        return lambda: case.call(baseline=0.5), ValueError
    if kind == "nan_input" and float_input:
        poisoned = tuple(x.detach().clone(memory_format=torch.contiguous_format) for x in case.input_tuple)
        poisoned[0].view(-1)[0] = math.nan
        return lambda: case.call(poisoned if isinstance(case.inputs, tuple) else poisoned[0]), ValueError
    if kind == "unsupported_inside":
        base = case.options.get("base") if case.method == "smoothgrad" else case.method
        if base in ("deeplift", "epsilon_lrp"):

            def exploding() -> Any:
                case.model.explode = "cumprod"
                try:
                    return case.call()
                finally:
                    case.model.explode = None

            return exploding, UnsupportedOperationError
    if kind == "nan_forward":

        def poisoned_forward() -> Any:
            case.model.explode = "nan"
            try:
                return case.call()
            finally:
                case.model.explode = None

        if case.layer is not None and case.method not in gradattr.LAYER_METHODS:
            return poisoned_forward, (FloatingPointError, ValueError)  # the layer's output may be NaN already
        return poisoned_forward, FloatingPointError
    if kind == "dtype_mismatch" and float_input:
        other = torch.float32 if case.dtype == torch.float64 else torch.float64
        converted = tuple(x.to(other) for x in case.input_tuple)
        return lambda: case.call(converted if isinstance(case.inputs, tuple) else converted[0]), ValueError
    return lambda: case.call(layer="nope"), ValueError  # unknown_layer, and kinds that do not apply


@st.composite
def dirty_cases(draw: st.DrawFn) -> Case:
    """A valid case on a model with state to preserve: training mode (sometimes), frozen parameters,
    pre-existing ``.grad``, a user's forward hook and forward pre-hook."""
    case = draw(cases())
    model = case.model
    if draw(st.booleans()):
        model.train()
    parameters = list(model.parameters())
    flags = draw(st.lists(st.integers(0, 3), min_size=len(parameters), max_size=len(parameters)))
    generator = torch.Generator().manual_seed(len(parameters))
    for p, flag in zip(parameters, flags, strict=True):
        if flag == 1:
            p.requires_grad_(False)
        elif flag == 2:
            p.grad = torch.randn(p.shape, generator=generator, dtype=p.dtype)
    modules = [m for name, m in model.named_modules() if name]
    hooked = modules[draw(st.integers(0, len(modules) - 1))]
    hooked.register_forward_hook(lambda m, a, out: None)
    hooked.register_forward_pre_hook(lambda m, a: None)
    return case


@fuzz_settings(75)
@given(case=dirty_cases(), kind=st.sampled_from(BAD_CALLS))
def test_model_inputs_and_arguments_restored_after_valid_and_failing_calls(case: Case, kind: str) -> None:
    """Properties 4 and 5: after a valid call and after a call that raises (bad target, bad option, bad baseline, NaN
    input, unknown layer, an op without a rule met mid-forward, NaN attributions, a dtype mismatch) the model's
    parameters and buffers are bit-identical, its modes, ``requires_grad`` flags, ``.grad`` and hooks are as
    before, no torch-function mode is left and the global RNG is untouched; the inputs, baseline and target
    are bit-identical (also with in-place activations in the model). A model in training mode gets the
    documented warning."""
    before = Snapshot.of(case.model)
    inputs, baseline, target = clone_tree(case.inputs), clone_tree(case.baseline), clone_tree(case.target)
    _, error, caught = run_quietly(case.call)
    assert error is None, f"{type(error).__name__}: {error}"
    warned = any("training mode" in str(w.message) for w in caught)
    assert warned == mode_dependent_training(case.model)
    before.assert_unchanged(case.model)

    call, expected = bad_call(case, kind)
    _, error, _ = run_quietly(call)
    assert isinstance(error, expected), f"{kind}: expected {expected}, got {error!r}"
    before.assert_unchanged(case.model)
    assert_identical_tree(inputs, case.inputs)
    assert_identical_tree(baseline, case.baseline)
    assert_identical_tree(target, case.target)


# -- 3: completeness -----------------------------------------------------------------------------------------------


def score_difference(case: Case) -> tuple[Tensor, Tensor]:
    """S_c(x) - S_c(x̄) per sample, computed with the model itself, and |S_c(x)| + |S_c(x̄)| (the scale)."""
    with torch.no_grad():
        at_inputs = case.scores(case.attributed())
        at_baseline = case.scores(case.baseline_points())
    return at_inputs - at_baseline, at_inputs.abs() + at_baseline.abs()


def total(attributions: Any, batch: int) -> Tensor:
    return sum(a.reshape(batch, -1).sum(1) for a in as_tuple(attributions))


float64 = (torch.float64,)


@fuzz_settings(60)
@given(case=cases(methods=("deeplift",), dtypes=float64, nets=net_specs(rnn=False, routing=False)))
def test_deeplift_completeness(case: Case) -> None:
    """Property 3a: on networks of linear ops and elementwise nonlinearities (no gate products, no max
    pooling), DeepLIFT's attributions sum to S_c(x) - S_c(x̄) computed with the model, to 1e-6 relative to
    the scores (float64), for every baseline form, target form, layer and activation call style — up to the
    rounding of the attributions themselves (64 ulps of Σ|R|): through softmax with logits far apart at the
    baseline, DeepLIFT's exact decomposition (exp, sum, reciprocal, product) gives terms of size e^{|Δx|}
    that cancel (the fuzzer found Σ|R| = 4.8e15 for Σ R = -73), a conditioning limit of the rule, not a gap."""
    delta, scale = score_difference(case)
    result = case.call()
    gap = (total(result, case.batch) - delta).abs()
    magnitude = sum(a.abs().reshape(case.batch, -1).sum(1) for a in as_tuple(result))
    rounding = 64 * torch.finfo(torch.float64).eps * magnitude
    assert bool((gap <= 1e-6 * scale + rounding + 1e-12).all()), f"gap {gap.tolist()}, delta {delta.tolist()}"


@fuzz_settings(45)
@given(case=cases(methods=("shapley_sampling",), dtypes=float64))
def test_shapley_sampling_completeness(case: Case) -> None:
    """Property 3b: Shapley sampling's attributions sum to S_c(x) - S_c(x̄) for any model (recurrent and max
    pooling included), any feature groups and any number of samples (float64, 1e-9 relative)."""
    delta, scale = score_difference(case)
    gap = (total(case.call(), case.batch) - delta).abs()
    assert bool((gap <= 1e-9 * scale + 1e-12).all()), f"gap {gap.tolist()}, delta {delta.tolist()}"


SMOOTH_ENOUGH = tuple(a for a in ACTIVATIONS if a != "F.softplus(beta)")  # threshold=4: a jump of 0.009


@fuzz_settings(40)
@given(
    case=cases(
        methods=("integrated_gradients",),
        dtypes=float64,
        nets=net_specs(activations=SMOOTH_ENOUGH),
        ig_steps=(16, 96),
        max_batch=3,
    )
)
def test_integrated_gradients_completeness_within_the_riemann_bound(case: Case) -> None:
    """Property 3c: IG is the right Riemann sum (m = ``steps``) of ∫ g(t) dt with g(t) = ∇S_c(x̄ + tΔ)·Δ,
    so |Σ R - (S_c(x) - S_c(x̄))| <= TV(g)/m. TV(g) is measured on a fine grid with the model's own
    gradients (the bound is taken twice, for kinks the grid misses; 1e-7 relative slack for PyTorch's
    float64 derivatives that are only float32-accurate)."""
    delta, scale = score_difference(case)
    steps = case.options["steps"]
    x, b = case.attributed(), case.baseline_points()
    grid = torch.linspace(0, 1, 1025, dtype=torch.float64)
    points = tuple(
        (bi + grid.view(-1, *[1] * xi.dim()) * (xi - bi)).reshape(-1, *xi.shape[1:]).requires_grad_()
        for xi, bi in zip(x, b, strict=True)
    )
    scores = case.scores(points, copies=grid.numel())
    grads = torch.autograd.grad(scores.sum(), points, allow_unused=True)
    g = sum(
        (torch.zeros_like(p) if gr is None else gr)
        .reshape(grid.numel(), case.batch, -1)
        .mul((xi - bi).reshape(1, case.batch, -1))
        .sum(-1)
        for p, gr, xi, bi in zip(points, grads, x, b, strict=True)
    )
    variation = g.diff(dim=0).abs().sum(0)
    result = case.call()
    gap = (total(result, case.batch) - delta).abs()
    # slack: PyTorch's own float64 derivatives of some ops use float32 constants (hardsigmoid's is 1/6 to 3e-8)
    magnitude = sum(r.abs().reshape(case.batch, -1).sum(1) for r in as_tuple(result))
    bound = 2 * variation / steps + 1e-7 * (scale + magnitude) + 1e-12
    assert bool((gap <= bound).all()), f"gap {gap.tolist()} > bound {bound.tolist()} (steps={steps})"


# -- 6: determinism ------------------------------------------------------------------------------------------------


@fuzz_settings(60)
@given(case=cases())
def test_same_call_twice_is_bit_identical(case: Case) -> None:
    """Property 6: the same call twice gives bit-identical attributions (SmoothGrad and Shapley sampling
    draw from their own seeded generators)."""
    first = case.call()
    second = case.call()
    assert_identical_tree(first, second)


# -- 7: batch independence -----------------------------------------------------------------------------------------


def _row(value: Any, i: int, batch: int, x_dim: int | None = None) -> Any:
    """Sample ``i``'s part of a target or baseline argument (shared forms unchanged)."""
    if isinstance(value, (list, tuple)) and x_dim is None:
        return type(value)([value[i]])
    if isinstance(value, Tensor):
        if x_dim is None:  # target
            return value if value.dim() == 0 else value[i : i + 1]
        per_sample = value.dim() == x_dim and value.shape[0] == batch and batch > 1
        return value[i : i + 1] if per_sample else value
    return value


def sample_case(case: Case, i: int) -> Case:
    """``case`` restricted to sample ``i``."""
    dims = [x.dim() for x in case.attributed()]
    inputs = tuple(x[i : i + 1] for x in case.input_tuple)
    if isinstance(case.baseline, tuple):
        baseline = tuple(_row(b, i, case.batch, d) for b, d in zip(case.baseline, dims, strict=True))
    else:
        baseline = _row(case.baseline, i, case.batch, dims[0])
    return replace(
        case,
        inputs=inputs if isinstance(case.inputs, tuple) else inputs[0],
        target=_row(case.target, i, case.batch),
        baseline=baseline,
    )


@fuzz_settings(60)
@given(case=cases(methods=tuple(m for m in METHODS if m != "smoothgrad"), dtypes=float64))
def test_batch_independence(case: Case) -> None:
    """Property 7: the attributions of a batch are those of each sample attributed alone (float64, 1e-10),
    for every method except SmoothGrad (its noise is drawn for the whole batch): targets, per-sample
    baselines, argmax targets and internal chunking follow the sample."""
    together = as_tuple(case.call())
    for i in range(case.batch):
        alone = as_tuple(sample_case(case, i).call())
        for t, a in zip(together, alone, strict=True):
            torch.testing.assert_close(t[i : i + 1], a, rtol=1e-10, atol=1e-10)


# -- 8, 9: input types ---------------------------------------------------------------------------------------------


@fuzz_settings(45)
@given(
    case=cases(layers=False),
    dtype=st.sampled_from((torch.int64, torch.int32, torch.uint8, torch.float16, torch.bfloat16)),
    convert_model=st.booleans(),
)
def test_integer_and_half_precision_inputs_are_refused(case: Case, dtype: torch.dtype, convert_model: bool) -> None:
    """Property 8: integer inputs (without ``layer=``; Grad-CAM may take token ids) and float16/bfloat16
    inputs (whatever the model's dtype) raise a TypeError that names the dtype, and leave the model as it
    was."""
    if not dtype.is_floating_point and case.method in gradattr.LAYER_METHODS:
        case = replace(case, method="saliency", options={}, layer=None)
    if case.spec.front == "embedding":  # token ids without layer=: the error points at layer='embedding'
        case = replace(case, layer=None, baseline=None, method="gradient_x_input", options={})
    converted = tuple(
        x.to(dtype) if x.dtype == torch.long else x.abs().mul(3).to(dtype) if x.is_floating_point() else x
        for x in case.input_tuple
    )
    if convert_model and dtype.is_floating_point:
        case.model.to(dtype)
    before = Snapshot.of(case.model)
    with pytest.raises(TypeError, match=str(dtype)):
        case.call(converted if isinstance(case.inputs, tuple) else converted[0])
    before.assert_unchanged(case.model)


@fuzz_settings(40)
@given(case=cases(), numpy_baseline=st.booleans(), numpy_target=st.booleans())
def test_numpy_inputs_are_accepted(case: Case, numpy_baseline: bool, numpy_target: bool) -> None:
    """Property 9: numpy arrays as inputs (and as a baseline, and a target of per-sample indices) are
    converted and give bit-identically the tensor result; the arrays are not written to."""
    arrays = tuple(x.detach().numpy().copy() for x in case.input_tuple)
    originals = clone_tree(arrays)
    overrides: dict[str, Any] = {}
    if numpy_baseline and isinstance(case.baseline, Tensor):
        overrides["baseline"] = case.baseline.numpy()
    if numpy_target and isinstance(case.target, Tensor) and case.target.dim() == 1:
        overrides["target"] = case.target.numpy()
    contiguous = tuple(x.detach().contiguous() for x in case.input_tuple)  # strides change conv's rounding
    expected = case.call(contiguous if isinstance(case.inputs, tuple) else contiguous[0])
    result = case.call(arrays if isinstance(case.inputs, tuple) else arrays[0], **overrides)
    assert_identical_tree(expected, result)
    assert_identical_tree(originals, arrays)


# -- regression tests for what the fuzzing found -------------------------------------------------------------------


def _linear_inplace_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.LeakyReLU(0.2, inplace=True), nn.Linear(4, 2)).double()


@pytest.mark.parametrize("method", ["saliency", "integrated_gradients", "epsilon_lrp", "deeplift"])
def test_layer_followed_by_an_inplace_activation(method: str) -> None:
    """``layer="0"`` (the Linear) is followed by an in-place LeakyReLU: gradient methods must work, and the
    attributed tensor must be the Linear's output, not the activation that overwrote it."""
    model = _linear_inplace_net()
    x = torch.randn(2, 3, dtype=torch.float64)
    result = gradattr.attribute(model, x, method=method, target=1, layer="0")
    assert result.shape == (2, 4)


def test_occlusion_of_a_layer_followed_by_an_inplace_activation() -> None:
    """Occlusion-1 of the Linear's output z: R_i = S(z) - S(z with z_i := 0), S = head(leaky_relu(.))."""
    model = _linear_inplace_net()
    x = torch.randn(1, 3, dtype=torch.float64)
    with torch.no_grad():
        z = model[0](x)

        def score(h: Tensor) -> Tensor:
            return model[2](F.leaky_relu(h, 0.2))[:, 1]

        expected = torch.stack([score(z) - score(z.index_fill(1, torch.tensor([i]), 0.0)) for i in range(4)], 1)
    result = gradattr.attribute(model, x, method="occlusion", target=1, layer="0")
    torch.testing.assert_close(result, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", gradattr.LAYER_METHODS)
def test_gradcam_of_a_conv_followed_by_an_inplace_relu(method: str) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(3 * 6 * 6, 4))
    x = torch.randn(2, 1, 8, 8)
    assert gradattr.attribute(model, x, method=method, target=1, layer="0").shape == x.shape


@pytest.mark.parametrize("target", [[1.7, 0.2], np.array([1.5, 0.0])])
def test_float_targets_are_refused(target: Any) -> None:
    model = nn.Linear(4, 3)
    with pytest.raises(TypeError):
        gradattr.attribute(model, torch.randn(2, 4), method="saliency", target=target)


class _TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.head = nn.Linear(2, 3), nn.Linear(1, 3), nn.Linear(6, 2)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return self.head(torch.cat([F.relu(self.a(x)), torch.tanh(self.b(y))], dim=1))


@pytest.mark.parametrize("per_sample", [0, 1])
def test_deeplift_with_one_shared_and_one_per_sample_baseline(per_sample: int) -> None:
    """Found by the fuzzing: DeepLIFT on a two-input model whose baselines are one shared (None, a number, one
    row) and one per sample raised RuntimeError from torch.cat (the reference pass took the first input's
    row count for all). Fixed in engine/backward.py: completeness now holds exactly."""
    torch.manual_seed(0)
    model = _TwoInputs().double()
    x, y = torch.randn(3, 2, dtype=torch.float64), torch.randn(3, 1, dtype=torch.float64)
    rows = (torch.randn(3, 2, dtype=torch.float64), torch.randn(3, 1, dtype=torch.float64))
    baseline = (rows[0], None) if per_sample == 0 else (0.5, rows[1])
    r = gradattr.attribute(model, (x, y), method="deeplift", target=1, baseline=baseline)
    full = tuple(
        torch.zeros_like(v) if b is None else torch.as_tensor(b, dtype=v.dtype).expand_as(v)
        for b, v in zip(baseline, (x, y), strict=True)
    )
    with torch.no_grad():
        delta = model(x, y)[:, 1] - model(*full)[:, 1]
    torch.testing.assert_close(r[0].sum(1) + r[1].sum(1), delta, rtol=1e-10, atol=1e-12)


class _MaskedText(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embedding, self.head = nn.Embedding(5, 3), nn.Linear(3, 2)

    def forward(self, tokens: Tensor, mask: Tensor) -> Tensor:
        return self.head((torch.tanh(self.embedding(tokens)) * mask.unsqueeze(-1)).mean(1))


@pytest.mark.parametrize("method", ["deeplift", "epsilon_lrp"])
def test_layer_attribution_with_a_context_input_that_requires_grad(method: str) -> None:
    """The same call with the mask detached works; the mask's autograd state must not matter."""
    torch.manual_seed(0)
    model = _MaskedText()
    tokens, mask = torch.tensor([[1, 2, 3], [4, 0, 1]]), torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.5, 1.0]])
    expected = gradattr.attribute(model, (tokens, mask), method=method, target=1, layer="embedding")
    result = gradattr.attribute(model, (tokens, mask.requires_grad_()), method=method, target=1, layer="embedding")
    torch.testing.assert_close(result, expected, rtol=0, atol=0)
    assert mask.grad is None


@pytest.mark.parametrize(("method", "layer"), [("saliency", "0"), ("deeplift", "0"), ("gradcam", "0")])
def test_layer_attribution_with_inputs_of_another_dtype(method: str, layer: str) -> None:
    model = nn.Sequential(nn.Conv1d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2)).double()
    with pytest.raises(ValueError, match="float64"):
        gradattr.attribute(model, torch.randn(2, 1, 6), method=method, target=0, layer=layer)


def test_fuzz_model_builder_is_deterministic() -> None:
    """The strategies rely on FuzzNet being a function of its spec (same seed, same weights), and on the
    global RNG being left alone by the builder."""
    spec = NetSpec("conv2d", (2, 4, 4), 3, (BlockSpec("nn.ReLU(inplace)", norm=True),), pool="max", seed=5)
    state = torch.random.get_rng_state()
    a, b = FuzzNet(spec), FuzzNet(spec)
    assert torch.equal(state, torch.random.get_rng_state())
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
