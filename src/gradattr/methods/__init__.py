"""The attribution methods and :func:`attribute`, the one entry point that runs them.

Each method lives in its own module, states its formula and cites the paper; this module only validates
arguments, looks the method up and keeps the user's model as it was (see :mod:`gradattr.engine.hygiene`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch
from torch import Tensor, nn

from gradattr.engine import preserved_model
from gradattr.methods._problem import Baseline, Inputs, Target, build_problem
from gradattr.methods.deeplift import deeplift
from gradattr.methods.epsilon_lrp import epsilon_lrp
from gradattr.methods.gradient_x_input import gradient_x_input
from gradattr.methods.integrated_gradients import integrated_gradients
from gradattr.methods.occlusion import occlusion
from gradattr.methods.saliency import saliency


@dataclass(frozen=True)
class Method:
    """A registered method: its function, whether it uses a baseline, and what to suggest when its
    attributions come out non-finite."""

    function: Callable[..., tuple[Tensor, ...]]
    uses_baseline: bool
    non_finite_hint: str = "check the model's output for overflow"

    @cached_property
    def options(self) -> dict[str, Any]:
        """The method's options and their defaults, from its keyword-only parameters."""
        parameters = inspect.signature(self.function).parameters.values()
        return {p.name: p.default for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}


_REGISTRY: dict[str, Method] = {
    "saliency": Method(saliency, uses_baseline=False),
    "gradient_x_input": Method(gradient_x_input, uses_baseline=False),
    "integrated_gradients": Method(integrated_gradients, uses_baseline=True),
    "epsilon_lrp": Method(
        epsilon_lrp,
        uses_baseline=False,
        non_finite_hint=(
            "the multiplier f(z)/(z + eps*sign z) of a nonlinearity with f(0) != 0 (a sigmoid gate) grows like "
            "1/eps near z = 0 and compounds over recurrent steps; use gates='signal' (Arras et al. 2017) for "
            "LSTMs/GRUs, or a larger epsilon"
        ),
    ),
    "deeplift": Method(deeplift, uses_baseline=True),
    "occlusion": Method(occlusion, uses_baseline=False),
}

METHODS: tuple[str, ...] = tuple(_REGISTRY)
"""Names of the methods this version supports."""


def _elsewhere(options: list[str]) -> str:
    """Which other methods take these options (e.g. ``gates`` is eps-LRP's), as a hint for the error."""
    owners = {o: [name for name, m in _REGISTRY.items() if o in m.options] for o in options}
    return "".join(f"; {o} is an option of {', '.join(names)}" for o, names in owners.items() if names)


def attribute(
    model: nn.Module,
    inputs: Inputs,
    method: str = "deeplift",
    target: Target = None,
    baseline: Baseline = None,
    *,
    layer: str | nn.Module | None = None,
    **options: Any,
) -> Inputs:
    """Attribute the target output of ``model`` to its inputs (or to a layer's output) with ``method``.

    Args:
        model: any ``torch.nn.Module``, used as written: functional or module activations, reused modules,
            residual blocks, batch-norm. It runs in eval mode during the call and comes back unchanged.
        inputs: Tensor (B, ...) or a tuple of tensors for a multi-input model (float32 or float64).
        method: one of :data:`METHODS`.
        target: class index per sample: an int, a sequence or LongTensor of length B, or ``None`` for the
            argmax of the output (or the output itself when the model has one output per sample). The
            target output is taken before any softmax.
        baseline: reference input x̄ for ``deeplift`` and ``integrated_gradients``: ``None`` (zeros), a
            number, a tensor broadcastable to the inputs, or a tuple of those for multi-input models.
        layer: a submodule (or its dotted name) whose output is attributed instead of the inputs, e.g.
            ``"embedding"`` for text models; ``baseline`` is then in that layer's output space.
        **options: the method's options (``steps``, ``epsilon``, ``window``, ``strict``, ``gates`` for
            eps-LRP's gate products in LSTM/GRU cells, ...); an unknown option is an error that names the
            methods taking it.

    Returns:
        Attributions with the shape, dtype and device of ``inputs`` (a tuple for tuple inputs).

    Raises:
        ValueError / TypeError / IndexError: invalid arguments, with what was expected.
        UnsupportedOperationError: a modified-gradient method met an op it has no correct rule for.
        FloatingPointError: the attributions came out NaN/inf (with a hint on why).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if method not in _REGISTRY:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    spec = _REGISTRY[method]
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        known = ", ".join(spec.options) or "none"
        raise TypeError(
            f"{method} got unknown option(s) {', '.join(unknown)}; its options are: {known}{_elsewhere(unknown)}"
        )
    if baseline is not None and not spec.uses_baseline:
        raise ValueError(f"{method} does not use a baseline; pass baseline=None")
    with preserved_model(model):
        problem = build_problem(model, inputs, target, baseline, layer)
        attributions = spec.function(problem, **options)
    _check_finite_result(method, spec, attributions)
    return problem.unpack(attributions)


def _check_finite_result(method: str, spec: Method, attributions: tuple[Tensor, ...]) -> None:
    """Finite inputs must give finite attributions: NaN/inf is an error, never a silent result."""
    bad = sum(int((~torch.isfinite(a)).sum()) for a in attributions)
    if bad:
        raise FloatingPointError(
            f"{method} produced {bad} NaN or infinite attribution value(s): {spec.non_finite_hint}"
        )
