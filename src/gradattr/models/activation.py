"""The element-wise nonlinearities the paper's networks are built with (ReLU or Tanh)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

Activation = Literal["relu", "tanh"]

_FUNCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"relu": torch.relu, "tanh": torch.tanh}
_MODULES: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh}


def activation_function(name: Activation) -> Callable[[torch.Tensor], torch.Tensor]:
    """``torch.relu`` or ``torch.tanh`` for use inside ``forward``."""
    _check(name)
    return _FUNCTIONS[name]


def activation_module(name: Activation) -> nn.Module:
    """A fresh ``nn.ReLU`` or ``nn.Tanh`` module."""
    _check(name)
    return _MODULES[name]()


def _check(name: str) -> None:
    if name not in _FUNCTIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(_FUNCTIONS)}")
