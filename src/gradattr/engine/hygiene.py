"""The user's model comes out exactly as it went in.

While an attribution runs, the model is put in eval mode (dropout off, batch-norm on running statistics:
otherwise attributions are random and batch-dependent) and its parameters stop requiring gradients (so
``requires_grad`` marks exactly the tensors that depend on the attributed input, and no parameter ``.grad``
is touched). Both are restored on exit, also when the call raises.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

_MODE_DEPENDENT = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._BatchNorm)
"""Layers whose forward differs between training and eval mode."""


@contextmanager
def preserved_model(model: nn.Module, *, warn: bool = True) -> Iterator[nn.Module]:
    """Evaluate ``model`` in eval mode with frozen parameters; restore modes and flags afterwards.

    A model with dropout or batch-norm layers in training mode gets a warning (unless ``warn=False``, for
    callers that evaluate a model in the middle of training it, like adversarial training's attack):
    gradattr attributes the deterministic eval-mode function and hands the model back in training mode.
    """
    modes = [(module, module.training) for module in model.modules()]
    flags = [(parameter, parameter.requires_grad) for parameter in model.parameters()]
    if warn and any(training and isinstance(module, _MODE_DEPENDENT) for module, training in modes):
        warnings.warn(
            f"{type(model).__name__} is in training mode; gradattr computes attributions in eval mode "
            "(dropout off, batch-norm running statistics) and restores training mode afterwards.",
            stacklevel=4,
        )
    try:
        if any(training for _, training in modes):
            model.eval()
        for parameter, requires_grad in flags:
            if requires_grad:
                parameter.requires_grad_(False)
        yield model
    finally:  # touch only what changed: nn.Module.__setattr__ is slow, and this runs on every call
        for module, training in modes:
            if module.training != training:
                module.training = training
        for parameter, requires_grad in flags:
            if parameter.requires_grad != requires_grad:
                parameter.requires_grad_(requires_grad)
