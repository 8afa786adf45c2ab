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
from gradattr.engine.diagnostics import first_non_finite
from gradattr.memory import MemoryLimit, memory_budget
from gradattr.methods._mismatch import InputShapeError, input_mismatch
from gradattr.methods._model_call import ForwardKwargs, OutputSelector, Position
from gradattr.methods._options import check_option
from gradattr.methods._problem import (
    AttributionProblem,
    Baseline,
    Inputs,
    NonFiniteOutputError,
    Target,
    all_finite,
    build_problem,
)
from gradattr.methods.cams import eigencam, gradcam_plus_plus, hirescam, layercam, xgradcam
from gradattr.methods.deeplift import deeplift
from gradattr.methods.deeplift_shap import deeplift_shap
from gradattr.methods.epsilon_lrp import epsilon_lrp
from gradattr.methods.gradcam import gradcam, guided_gradcam
from gradattr.methods.gradient_shap import gradient_shap
from gradattr.methods.gradient_x_input import gradient_x_input
from gradattr.methods.guided_backprop import deconvnet, guided_backprop
from gradattr.methods.integrated_gradients import integrated_gradients, one_completeness_warning
from gradattr.methods.lrp import lrp
from gradattr.methods.occlusion import occlusion
from gradattr.methods.perturbation_cams import ablationcam, scorecam
from gradattr.methods.saliency import saliency
from gradattr.methods.shapley_sampling import shapley_sampling
from gradattr.methods.smoothgrad import smoothgrad


@dataclass(frozen=True)
class Method:
    """A registered method: its function, whether it uses a baseline, and what to suggest when its
    attributions come out non-finite.

    ``reads_layer``: the method reads the activations of the layer given as ``layer=`` (Grad-CAM) and
    returns a map of the input's shape; ``wraps``: the method runs another one, named by its ``base``
    option, and passes the options it does not know on to it (SmoothGrad); ``references``: its ``baseline``
    is a distribution of K references (K, ...) shared by all samples (GradientSHAP, DeepLiftSHAP);
    ``conserves``: its relevance redistributes S_c(x) itself (LRP), so ``return_gap`` gives Σ R − S_c(x).
    """

    function: Callable[..., tuple[Tensor, ...]]
    uses_baseline: bool
    non_finite_hint: str = "check the model's output for overflow"
    reads_layer: bool = False
    wraps: bool = False
    references: bool = False
    conserves: bool = False

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
    "shapley_sampling": Method(shapley_sampling, uses_baseline=True),
    "gradient_shap": Method(gradient_shap, uses_baseline=True, references=True),
    "expected_gradients": Method(gradient_shap, uses_baseline=True, references=True),
    "deeplift_shap": Method(deeplift_shap, uses_baseline=True, references=True),
    "smoothgrad": Method(smoothgrad, uses_baseline=False, wraps=True),
    "guided_backprop": Method(guided_backprop, uses_baseline=False),
    "deconvnet": Method(deconvnet, uses_baseline=False),
    "lrp": Method(lrp, uses_baseline=False, non_finite_hint="raise the composite's stabilizer", conserves=True),
    "gradcam": Method(gradcam, uses_baseline=False, reads_layer=True),
    "guided_gradcam": Method(guided_gradcam, uses_baseline=False, reads_layer=True),
    "gradcam_plus_plus": Method(gradcam_plus_plus, uses_baseline=False, reads_layer=True),
    "hirescam": Method(hirescam, uses_baseline=False, reads_layer=True),
    "xgradcam": Method(xgradcam, uses_baseline=False, reads_layer=True),
    "layercam": Method(layercam, uses_baseline=False, reads_layer=True),
    "eigencam": Method(eigencam, uses_baseline=False, reads_layer=True),
    "scorecam": Method(scorecam, uses_baseline=False, reads_layer=True),
    "ablationcam": Method(
        ablationcam,
        uses_baseline=False,
        reads_layer=True,
        non_finite_hint="Ablation-CAM divides by the target score y_c, which is 0 for a sample: choose another target",
    ),
}

METHODS: tuple[str, ...] = tuple(_REGISTRY)
"""Names of the methods this version supports."""

LAYER_METHODS: tuple[str, ...] = tuple(name for name, m in _REGISTRY.items() if m.reads_layer)
"""Methods that read a layer's activations and need ``layer=`` (Grad-CAM)."""

PAPER_METHODS: tuple[str, ...] = METHODS[:6]
"""The methods compared by Ancona et al. (ICLR 2018): the default of the study and of :func:`evaluate`."""


def _lookup(method: str) -> Method:
    if method not in _REGISTRY:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    return _REGISTRY[method]


def _check_options(method: str, spec: Method, options: dict[str, Any]) -> None:
    """Unknown options are an error naming the methods that take them; a known option must fit the type hint
    of its parameter (:mod:`gradattr.methods._options`)."""
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        known = ", ".join(spec.options) or "none"
        raise TypeError(
            f"{method} got unknown option(s) {', '.join(unknown)}; its options are: {known}{_elsewhere(unknown)}"
        )
    for name, value in options.items():
        check_option(method, spec.function, name, value)


def _resolve_options(method: str, spec: Method, options: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Validated options for ``spec.function`` and whether a baseline is used; a wrapping method's ``base``
    name becomes the base function, and the options it does not know are checked against the base's."""
    if not spec.wraps:
        _check_options(method, spec, options)
        return options, spec.uses_baseline
    base_name = options.get("base", "saliency")
    wrappable = [name for name, m in _REGISTRY.items() if not (m.wraps or m.reads_layer or m.references)]
    if base_name not in wrappable:
        raise ValueError(f"{method}'s base must be one of {', '.join(wrappable)}, got {base_name!r}")
    base = _REGISTRY[base_name]
    own = {k: v for k, v in options.items() if k in spec.options and k != "base"}
    passed_on = {k: v for k, v in options.items() if k not in spec.options}
    unknown = sorted(set(passed_on) - set(base.options))
    if unknown:  # a typo of the method's own options or of its base's: list both
        raise TypeError(
            f"{method} got unknown option(s) {', '.join(unknown)}; its options are: {', '.join(spec.options)}; "
            f"those of its base {base_name}: {', '.join(base.options) or 'none'}{_elsewhere(unknown)}"
        )
    _check_options(method, spec, own)
    _check_options(f"{method} with base {base_name}", base, passed_on)
    return {**own, **passed_on, "base": base.function}, base.uses_baseline


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
    max_memory: MemoryLimit = None,
    forward_kwargs: ForwardKwargs = None,
    output: OutputSelector = None,
    position: Position = None,
    return_gap: bool = False,
    **options: Any,
) -> Inputs | tuple[Inputs, Tensor]:
    """Attribute the target output of ``model`` to its inputs (or to a layer's output) with ``method``.

    Args:
        model: any ``torch.nn.Module``, used as written: functional or module activations, reused modules,
            residual blocks, batch-norm. It runs in eval mode during the call and comes back unchanged.
        inputs: Tensor (B, ...) or a tuple of tensors for a multi-input model (float32 or float64).
        method: one of :data:`METHODS`.
        target: class index per sample: an int, a sequence or LongTensor of length B, or ``None`` for the
            argmax of the output (or the output itself when the model has one output per sample). The
            target output is taken before any softmax. A neuron target ``(layer, unit)`` explains a unit of a
            hidden layer instead: ``("features.3", 12)`` is channel 12 of that layer's output summed over
            space, a tuple of ints indexes its leading dimensions (``(12, 3, 4)``); the forward pass stops
            at the layer (:mod:`gradattr.methods.neuron`).
        baseline: reference input x̄ for ``deeplift`` and ``integrated_gradients``: ``None`` (zeros), a
            number, a tensor broadcastable to the inputs, or a tuple of those for multi-input models. For
            ``gradient_shap``, ``expected_gradients`` and ``deeplift_shap`` a distribution of K references
            (K, *input.shape[1:]) shared by all samples (e.g. a sample of the training data), one per input.
        layer: a submodule (or its dotted name) whose output is attributed instead of the inputs, e.g.
            ``"embedding"`` for text models; ``baseline`` is then in that layer's output space. For the
            class activation maps (:data:`LAYER_METHODS`: ``gradcam``, ``gradcam_plus_plus``, ``eigencam``, ...)
            it is the layer whose activations (B, K, *spatial) give the map, and the result has the input's
            shape (``reshape="auto"`` reads ViT/Swin tokens and channels-last maps).
        max_memory: memory budget of this call's passes through the model (bytes, or a string such as
            ``"2GB"``); default :func:`gradattr.set_max_memory`'s, else a quarter of the available RAM or half
            the free GPU memory. Rows are split into passes that fit, never changed (:mod:`gradattr.memory`).
        forward_kwargs: extra keyword arguments of ``model.forward``, e.g. ``{"attention_mask": mask,
            "token_type_ids": types}``: the model is called as ``model(*inputs, **forward_kwargs)``. A tensor
            whose first dimension is the batch size B is per-sample: every batched pass (IG steps, occlusion
            windows, Shapley orderings, SmoothGrad copies, memory-budget splits) gives each row the value of
            the sample it belongs to. Other values are passed unchanged. ``attention_mask``,
            ``token_type_ids``, ``position_ids`` (and HuggingFace's other per-sample names) must have B rows
            or 1 (shared); another batch size is an error naming the keyword.
        output: which tensor of the model's output is explained when the model returns a HuggingFace
            ``ModelOutput``, a dict, a tuple or a list: a key or attribute name (``"logits"``,
            ``"pooler_output"``), an index (``0``), or a callable ``output -> Tensor``. Default: ``.logits``
            (``["logits"]``) when the output has it, else its first element. An output with only singleton
            dimensions after the batch, e.g. (B, 1, 1, 1), is read as (B,).
        position: for a model whose output is (B, T, V), e.g. a causal language model's logits: the sequence
            position whose next-token logits are explained, an int for every sample or one per sample
            (sequence or LongTensor(B)); negative counts from the end. Default (``None``): -1, the last
            position (with right-padded batches, pass each sample's last real position). ``target`` is then
            the token id (``None``: the argmax at that position).
        return_gap: also return the completeness gap Σ_i R_i - (S_c(x) - S_c(x̄)) of each sample, Tensor(B)
            (for ``lrp``: the conservation gap Σ_i R_i - S_c(x), :func:`gradattr.metrics.conservation_gap`)
            (over all inputs of a multi-input model; in the layer's space with ``layer=``), as Captum's
            ``return_convergence_delta``: the same numbers as :func:`gradattr.metrics.completeness_gap`. For
            the methods with a baseline (``integrated_gradients``, ``deeplift``, ``shapley_sampling``); two
            extra forward passes without gradients (at x and x̄).
        **options: the method's options (``steps``, ``epsilon``, ``window``, ``strict``, ``gates`` for
            eps-LRP's gate products in LSTM/GRU cells, ...); an unknown option is an error that names the
            methods taking it.

    Returns:
        Attributions with the shape, dtype and device of ``inputs`` (a tuple for tuple inputs); with
        ``return_gap=True`` the pair ``(attributions, gap)``.

    Warns:
        CompletenessWarning: ``integrated_gradients`` misses completeness by more than its ``gap_tolerance``
            (5 % by default; once per call, with the steps that would be needed; ``steps="auto"`` avoids it).

    Raises:
        ValueError / TypeError / IndexError: invalid arguments, with what was expected.
        UnsupportedOperationError: a modified-gradient method met an op it has no correct rule for.
        FloatingPointError: the attributions came out NaN/inf (with a hint on why).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    spec = _lookup(method)
    if return_gap and not spec.conserves and (spec.wraps or not spec.uses_baseline):
        with_gap = ", ".join(name for name, m in _REGISTRY.items() if m.uses_baseline and not m.wraps)
        raise ValueError(
            f"return_gap=True is for the methods whose attributions should sum to S_c(x) - S_c(x̄): {with_gap}, "
            f"and to S_c(x): lrp; for {method}, gradattr.metrics.completeness_gap(model, x, attributions, target) "
            "measures it anyway"
        )
    options, uses_baseline = _resolve_options(method, spec, options)
    if baseline is not None and not uses_baseline:
        raise ValueError(f"{method} does not use a baseline; pass baseline=None")
    call = {"forward_kwargs": forward_kwargs, "output": output, "position": position}
    if spec.reads_layer and layer is None:
        raise ValueError(f"{method} reads a layer's activations: pass layer=<name of a convolutional layer>")
    if torch.is_inference_mode_enabled():
        raise RuntimeError(
            "gradattr.attribute was called inside torch.inference_mode(), which turns off the gradients every method "
            "needs: call it outside that block (tensors made inside it are fine as inputs)"
        )
    with preserved_model(model) as model, memory_budget(max_memory), one_completeness_warning():
        try:
            if spec.reads_layer:  # the layer is read, not attributed: the map is for the model's inputs
                problem = build_problem(model, inputs, target, baseline, floating=False, **call)
                options = {**options, "layer": layer}
            else:
                problem = build_problem(model, inputs, target, baseline, layer, references=spec.references, **call)
            attributions = spec.function(problem, **options)
        except NonFiniteOutputError as error:
            raise FloatingPointError(f"{method}: {error}; {_where_non_finite(problem)}") from None
        except (RuntimeError, IndexError) as error:  # torch's words for a wrong input size: say it in the user's
            mismatch = _mismatch(model, inputs, forward_kwargs)
            if mismatch is None:
                raise
            raise mismatch from error
        _check_finite_result(method, spec, problem, attributions)
        if return_gap:
            from gradattr.metrics.completeness import output_scores, problem_gap  # metrics imports this module

            gap = problem_gap(problem, attributions, output_scores(problem) if spec.conserves else None)
    if len(attributions) != len(problem.inputs):  # Grad-CAM at the layer's resolution: one map for all inputs
        return attributions[0]
    return (problem.unpack(attributions), gap) if return_gap else problem.unpack(attributions)


def _mismatch(model: nn.Module, inputs: Inputs, forward_kwargs: ForwardKwargs) -> InputShapeError | None:
    """The input-shape error for a model that fails on the user's (single tensor) inputs, else ``None``."""
    if not isinstance(inputs, Tensor) or (forward_kwargs is not None and not isinstance(forward_kwargs, dict)):
        return None
    kwargs = forward_kwargs or {}
    return input_mismatch(model, inputs.detach(), lambda x: model(x, **kwargs))


def _check_finite_result(
    method: str, spec: Method, problem: AttributionProblem, attributions: tuple[Tensor, ...]
) -> None:
    """Finite inputs must give finite attributions: NaN/inf is an error, never a silent result. The message
    names the op where the forward pass first turns non-finite (or says the backward pass did)."""
    if not all(all_finite(a) for a in attributions):
        bad = sum(int((~torch.isfinite(a)).sum()) for a in attributions)
        raise FloatingPointError(
            f"{method} produced {bad} NaN or infinite attribution value(s); {_where_non_finite(problem)}. "
            f"Hint: {spec.non_finite_hint}"
        )


def _where_non_finite(problem: AttributionProblem) -> str:
    return first_non_finite(problem.model, lambda: problem.output(problem.inputs, problem.all_rows))
