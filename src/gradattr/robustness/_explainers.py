"""The methods a robustness check runs, as functions ``(model, inputs, target) -> maps``.

A check takes method names (run through :func:`gradattr.attribute` with their ``method_options``) or, under a
label of the caller's choosing, any callable with that signature: a reference that ignores the model (an edge
detector), a method with its own settings, or an instrumented method in a test. Targets are fixed once, on the
model as it came in, so that every map of a check explains the same output.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from gradattr.engine import preserved_model
from gradattr.methods import METHODS, attribute
from gradattr.methods._problem import Target
from gradattr.methods.labelled import labelled_entries as _entries

Explainer = Callable[[nn.Module, Tensor, Tensor | None], Tensor]
"""``explainer(model, inputs (B, ...), target LongTensor(B) or None) -> maps (B, ...)``."""

Methods = str | Sequence[str] | Mapping[str, str | Explainer]
"""A method name, a sequence of names, or label -> method name or :data:`Explainer`."""


def resolve_explainers(
    methods: Methods, method_options: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, Explainer]:
    """Label -> explainer for ``methods``, with ``method_options[label]`` bound to the named methods.

    Raises:
        ValueError: no methods, an unknown method name, a label listed twice, options for a label that is
            not a named method.
        TypeError: an entry that is neither a method name nor a callable.
    """
    entries = _entries(methods)
    if not entries:
        raise ValueError(f"no methods given; choose from {', '.join(METHODS)} or pass label -> callable")
    options = {label: dict(values) for label, values in (method_options or {}).items()}
    named = {label for label, entry in entries.items() if isinstance(entry, str)}
    stray = sorted(set(options) - named)
    if stray:
        raise ValueError(
            f"method_options for {', '.join(stray)}, which are not among the named methods {sorted(named)}"
        )
    return {label: _explainer(label, entry, options.get(label, {})) for label, entry in entries.items()}


def _explainer(label: str, entry: str | Explainer, options: dict[str, Any]) -> Explainer:
    """One entry as an explainer: a method name bound to its options, or the callable itself."""
    if isinstance(entry, str):
        if entry not in METHODS:
            raise ValueError(f"unknown method {entry!r} (label {label!r}); choose one of {', '.join(METHODS)}")

        def run(model: nn.Module, inputs: Tensor, target: Tensor | None) -> Tensor:
            return attribute(model, inputs, method=entry, target=target, **options)

        return run
    if callable(entry):
        return entry
    raise TypeError(f"method {label!r} must be a method name or a callable (model, inputs, target), got {entry!r}")


def check_inputs(inputs: Tensor) -> None:
    """Robustness checks take one batch-first tensor (images, or token ids with ``layer`` in the options)."""
    if not isinstance(inputs, Tensor):
        raise TypeError(f"inputs must be a torch.Tensor (B, ...), got {type(inputs).__name__}")
    if inputs.dim() == 0 or inputs.shape[0] == 0:
        raise ValueError(f"inputs must be batch-first with at least one sample, got shape {tuple(inputs.shape)}")


@torch.no_grad()
def model_output(model: nn.Module, inputs: Tensor) -> Tensor:
    """The model's output for ``inputs`` in eval mode (modes and flags restored, see ``preserved_model``)."""
    with preserved_model(model) as model:
        return model(inputs)


def fixed_target(model: nn.Module, inputs: Tensor, target: Target) -> Tensor | None:
    """LongTensor(B) of the classes to explain: ``target`` as given (an int for all samples, a sequence or a
    tensor of B classes), or for ``None`` the model's predicted class (argmax of a (B, C) output, C > 1).

    A model with one output per sample and ``target=None`` gives ``None`` (the output itself is explained).
    Range and length are checked by :func:`gradattr.attribute` on first use.
    """
    if target is None:
        output = model_output(model, inputs)
        return output.argmax(dim=1) if output.dim() == 2 and output.shape[1] > 1 else None
    if isinstance(target, bool) or not isinstance(target, (int, Sequence, Tensor)):
        raise TypeError(f"target must be an int, a sequence of ints, a LongTensor(B) or None, got {target!r}")
    if isinstance(target, Tensor) and (target.is_floating_point() or target.dtype == torch.bool):
        raise TypeError(f"target tensor must hold integer class indices, got dtype {target.dtype}")
    if isinstance(target, int):
        return torch.full((inputs.shape[0],), target, dtype=torch.long, device=inputs.device)
    return torch.as_tensor(target, dtype=torch.long, device=inputs.device).reshape(-1)
