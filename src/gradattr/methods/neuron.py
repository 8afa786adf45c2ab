"""Neuron and channel targets: explain a unit of a hidden layer instead of an output class (what Captum's
``Neuron*`` methods do, here for every method through ``target=``).

``target=(layer, unit)`` names a layer (a module or its dotted name) and a unit of its output A (B, ...):

    S(x) = Σ A[b, unit, ...]      (the sum over every dimension the unit leaves open)

an int picks an index of the first dimension after the batch — a channel of a (B, C, H, W) map, summed over
space; a unit of a (B, D) layer — and a tuple indexes the leading dimensions in order (``(12, 3, 4)`` is one
activation of a (B, C, H, W) map, ``(t, d)`` one feature of one token of a (B, T, D) output). The forward
pass stops at the layer's first call (the rest of the model is not evaluated), so every gradient, rule and
perturbation method explains S exactly as it would explain the output of the model truncated after that
layer. The hook that reads the layer goes on the call's own view of the model, never on the user's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from gradattr.engine.hygiene import view_of

NeuronTarget = tuple[str | nn.Module, int | tuple[int, ...]]
"""``(layer, unit)``: a layer (module or dotted name) and an index of its output's non-batch dimensions."""


class _Reached(BaseException):
    """Stops the forward pass at the target layer (a BaseException: a model's own ``except Exception``
    around a submodule call must not swallow it)."""


@dataclass(frozen=True)
class Neuron:
    """A unit ``unit`` (indices of the leading non-batch dimensions) of ``layer``'s output."""

    layer: str | nn.Module
    unit: tuple[int, ...]

    @classmethod
    def parse(cls, target: Any) -> Neuron | None:
        """The neuron named by ``target`` (``(layer, unit)``), or ``None`` when ``target`` names classes."""
        if not (isinstance(target, tuple) and target and isinstance(target[0], (str, nn.Module))):
            return None
        if len(target) != 2:
            raise ValueError(f"a neuron target is (layer, unit), e.g. ('features.3', 12); got {target!r}")
        layer, unit = target
        units = unit if isinstance(unit, tuple) else (unit,)
        if not units or any(isinstance(u, bool) or not isinstance(u, int) for u in units):
            raise TypeError(f"the unit of a neuron target is an int or a tuple of ints, got {unit!r}")
        return cls(layer, units)

    @property
    def name(self) -> str:
        return self.layer if isinstance(self.layer, str) else type(self.layer).__name__

    def module(self, model: nn.Module) -> nn.Module:
        """The target layer in ``model`` (the call's view of the user's model)."""
        if isinstance(self.layer, nn.Module):
            return view_of(model, self.layer)
        modules = dict(model.named_modules())
        if self.layer not in modules:
            names = ", ".join(n for n in modules if n) or "(none)"
            raise ValueError(f"the neuron target's layer '{self.layer}' is not a submodule; its submodules: {names}")
        return modules[self.layer]

    def value(self, output: Any) -> Tensor:
        """S per row: the unit of the layer's output, summed over the dimensions it leaves open, shape (K,).
        A layer returning a tuple, list or HuggingFace ``ModelOutput`` is read at its first element (the hidden
        states, by HuggingFace's convention)."""
        if hasattr(output, "to_tuple"):
            output = output.to_tuple()
        if isinstance(output, (tuple, list)) and output:
            output = output[0]
        if not isinstance(output, Tensor):
            raise TypeError(f"the neuron target's layer '{self.name}' returned {type(output).__name__}, not a tensor")
        shape = tuple(output.shape[1:])
        if len(self.unit) > len(shape) or any(not -s <= u < s for u, s in zip(self.unit, shape, strict=False)):
            raise IndexError(
                f"neuron target unit {self.unit} is out of range for the output of layer '{self.name}', which has "
                f"shape {tuple(output.shape)} (batch first)"
            )
        return output[(slice(None), *self.unit)].reshape(output.shape[0], -1).sum(1)

    def read(self, model: nn.Module, run: Callable[[], Any]) -> Tensor:
        """S for the rows of one forward pass ``run()`` of ``model``, which stops at the layer's first call."""
        seen = first_output(self.module(model), run)
        if not seen:
            raise ValueError(f"the neuron target's layer '{self.name}' was not called in the forward pass")
        return self.value(seen[0])


def first_output(module: nn.Module, run: Callable[[], Any]) -> list[Any]:
    """``[output]`` of ``module``'s first call in the forward pass ``run()``, which stops right there (the rest
    of the model is not evaluated); ``[]`` when the pass never calls it."""
    seen: list[Any] = []

    def hook(module: nn.Module, args: Any, output: Any) -> None:
        seen.append(output)
        raise _Reached

    handle = module.register_forward_hook(hook)
    try:
        run()
    except _Reached:
        pass
    finally:
        handle.remove()
    return seen
