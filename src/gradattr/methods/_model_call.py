"""How gradattr calls a user's model and which tensor of its output it explains.

A model is called as ``model(*inputs, **forward_kwargs)``. Per-sample keyword arguments (an
``attention_mask``, ``token_type_ids``, position ids: tensors whose first dimension is the batch size B)
follow the rows of every batched pass, exactly as the model's other inputs do: a pass over rows ``index``
(IG steps, occlusion windows, Shapley orderings, SmoothGrad copies, Sensitivity-n subsets, memory-budget
splits) gets ``value[index]``. Other values (flags, shared tensors) are passed unchanged.

From the model's output the explained tensor is picked by ``output`` (HuggingFace ``ModelOutput``, dict,
tuple or list: default ``.logits``/``["logits"]``, else the first element). An output whose dimensions after
the batch are all 1, (B, 1, 1, 1), is read as (B,). A 3-D output (B, T, V), a causal language model's
next-token logits, is read at one sequence position per sample (``position``, default -1: the last), giving
(B, V); the target is then a token id. With a neuron target (:mod:`gradattr.methods.neuron`) the explained
tensor is a unit of a hidden layer instead, and the pass stops at that layer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from gradattr.methods.neuron import Neuron

OutputSelector = str | int | Callable[[Any], Tensor] | None
"""Which tensor of a model's output is explained: a key or attribute name (``"logits"``,
``"pooler_output"``), a tuple index, a callable ``output -> Tensor``, or ``None`` (the default)."""

Position = int | Sequence[int] | Tensor | None
"""Sequence position of a (B, T, V) output: an int for every sample, one per sample, or ``None`` (-1)."""

ForwardKwargs = Mapping[str, Any] | None
"""Extra keyword arguments of ``model.forward``; tensors with B rows are per-sample."""

PER_SAMPLE_NAMES = frozenset(
    {
        "attention_mask",
        "token_type_ids",
        "position_ids",
        "decoder_input_ids",
        "decoder_attention_mask",
        "global_attention_mask",
        "pixel_mask",
        "bool_masked_pos",
    }
)
"""Keywords that are per-sample by nature (HuggingFace's names): a tensor under one of them must have B rows
(or 1 row, then shared by every sample); any other batch size is an error that names the keyword."""


def _rows(value: Any, index: Tensor) -> Any:
    """``value``'s rows ``index`` (a tensor with a batch dimension), or ``value`` itself."""
    return value[index] if isinstance(value, Tensor) and value.dim() > 0 else value


@dataclass(frozen=True)
class ModelCall:
    """The keyword arguments a model is called with and the reading of its output.

    ``kwargs``: name -> value; the names in ``per_sample`` hold tensors with one row per sample.
    ``output``: the :data:`OutputSelector`; ``position``: ``None``, an int, or LongTensor(B); ``samples``:
    the user's batch size B (0: unknown), for messages about passes of other sizes; ``neuron``: the hidden
    unit explained instead of the output (``target=(layer, unit)``).
    """

    kwargs: Mapping[str, Any] = field(default_factory=dict)
    per_sample: frozenset[str] = frozenset()
    output: OutputSelector = None
    position: int | Tensor | None = None
    samples: int = 0
    neuron: Neuron | None = None

    @classmethod
    def build(cls, forward_kwargs: ForwardKwargs, output: OutputSelector, position: Position, batch: int) -> ModelCall:
        """Validated ``forward_kwargs``, ``output`` and ``position`` of a batch of ``batch`` samples."""
        kwargs, per_sample = _forward_kwargs(forward_kwargs, batch)
        return cls(kwargs, per_sample, _selector(output), _position(position, batch), batch)

    def rows(self, index: Tensor) -> ModelCall:
        """The call for the samples ``index`` (rows of a new batch): per-sample values and positions follow."""
        position = _rows(self.position, index)
        return ModelCall(self.forward_kwargs(index), self.per_sample, self.output, position, self.samples, self.neuron)

    def as_options(self) -> dict[str, Any]:
        """``forward_kwargs``, ``output`` and ``position`` as keyword arguments of :func:`gradattr.attribute`."""
        return {"forward_kwargs": dict(self.kwargs) or None, "output": self.output, "position": self.position}

    def forward_kwargs(self, index: Tensor) -> dict[str, Any]:
        """The keyword arguments for rows belonging to samples ``index``."""
        return {name: _rows(v, index) if name in self.per_sample else v for name, v in self.kwargs.items()}

    def __call__(self, model: nn.Module, args: Sequence[Any], index: Tensor) -> Tensor:
        """``model(*args, **kwargs)`` for rows of samples ``index``, read as (K, C) or (K,) (a neuron target's
        unit: (K,), the pass stopped at its layer)."""
        if self.neuron is not None:
            return self.neuron.read(model, lambda: model(*args, **self.forward_kwargs(index)))
        return self.read(model, model(*args, **self.forward_kwargs(index)), index)

    def read(self, model: nn.Module, out: Any, index: Tensor) -> Tensor:
        """The explained tensor of the output ``out`` for rows of samples ``index``: (K, C) or (K,)."""
        value = self._pick(model, out)
        rows = index.numel()
        if value.dim() > 1 and value.shape[0] == rows and all(size == 1 for size in value.shape[1:]):
            value = value.reshape(rows)  # (B, 1, 1, 1) is one output per sample
        if value.dim() == 3 and value.shape[0] == rows:
            value = self._at_position(value, index)
        elif self.position is not None:
            raise ValueError(
                f"position= picks a sequence position of a (B, T, V) output; the model's output has shape "
                f"{tuple(value.shape)}"
            )
        if value.dim() == 0 or value.shape[0] != rows or value.dim() > 2:
            given = f"{rows} inputs" if rows == self.samples or not self.samples else (
                f"a pass of {rows} rows made from your {self.samples} inputs")  # fmt: skip
            raise ValueError(
                f"model output has shape {tuple(value.shape)} for {given}; expected ({rows}, C), ({rows},) or "
                f"({rows}, T, V) (a position per sample is then explained): batch first"
            )
        return value

    def _pick(self, model: nn.Module, out: Any) -> Tensor:
        name = type(model).__name__
        selector = self.output
        if callable(selector):
            value = selector(out)
            what = "the tensor returned by output="
        elif isinstance(out, Tensor):
            if selector is not None:
                raise TypeError(
                    f"output={selector!r} picks from a ModelOutput, dict, tuple or list, but {name} returned a "
                    "tensor; leave output=None"
                )
            return out
        else:
            value, what = _element(name, out, selector)
        if not isinstance(value, Tensor):
            raise TypeError(
                f"{what} is {type(value).__name__}, not a tensor; pass output= (a key or attribute name such as "
                "'logits', a tuple index, or a callable returning the tensor to explain)"
            )
        return value

    def _at_position(self, value: Tensor, index: Tensor) -> Tensor:
        """(K, T, V) -> (K, V) at each row's position (negative positions count from the end)."""
        length = value.shape[1]
        rows = torch.arange(value.shape[0], device=value.device)
        if self.position is None or isinstance(self.position, int):
            positions = torch.full_like(rows, -1 if self.position is None else self.position)
        else:
            positions = self.position.to(value.device)[index.to(self.position.device)]
        low, high = int(positions.min()), int(positions.max())
        if low < -length or high >= length:
            bad = low if low < -length else high
            raise IndexError(
                f"position {bad} is out of range: the model's output {tuple(value.shape)} has {length} sequence "
                f"position(s) (valid: {-length}..{length - 1})"
            )
        return value[rows, positions % length]


def _element(name: str, out: Any, selector: str | int | None) -> tuple[Any, str]:
    """The element of a structured output (``ModelOutput``, dict, tuple, list, object) that ``selector``
    names, and how to name it in an error."""
    if isinstance(out, Mapping):
        keys = list(out.keys())
        if selector is None:
            if not keys:
                raise TypeError(f"{name} returned an empty {type(out).__name__}; nothing to explain")
            selector = "logits" if "logits" in out else keys[0]
        if isinstance(selector, int):
            if not -len(keys) <= selector < len(keys):
                raise IndexError(f"output={selector} is out of range: {name}'s output has {len(keys)} element(s)")
            selector = keys[selector]
        if selector not in out:
            raise KeyError(f"output={selector!r}: {name}'s output has no {selector!r}; it has {', '.join(keys)}")
        return out[selector], f"{name}'s output[{selector!r}]"
    if isinstance(out, (tuple, list)):
        if selector is None:
            selector = 0
        if isinstance(selector, str):
            if not hasattr(out, selector):
                raise TypeError(f"output={selector!r} names an element, but {name} returned a {type(out).__name__}")
            return getattr(out, selector), f"{name}'s output.{selector}"
        if not -len(out) <= selector < len(out):
            raise IndexError(f"output={selector} is out of range: {name}'s output has {len(out)} element(s)")
        return out[selector], f"{name}'s output[{selector}]"
    if selector is None and hasattr(out, "logits"):
        selector = "logits"
    if isinstance(selector, str) and hasattr(out, selector):
        return getattr(out, selector), f"{name}'s output.{selector}"
    raise TypeError(
        f"{name} returned {type(out).__name__}; gradattr needs a tensor (B, C), (B,) or (B, T, V), or output= to pick "
        "one from a ModelOutput, dict, tuple or list"
    )


def _selector(output: OutputSelector) -> OutputSelector:
    if output is None or callable(output) or isinstance(output, str):
        return output
    if isinstance(output, (int, np.integer)) and not isinstance(output, bool):
        return int(output)
    raise TypeError(
        f"output must be a key or attribute name (str), a tuple index (int), a callable or None, got "
        f"{type(output).__name__}"
    )


def _position(position: Position, batch: int) -> int | Tensor | None:
    """``None``, an int, or LongTensor(B) of positions."""
    if position is None:
        return None
    if isinstance(position, bool):
        raise TypeError("position must be an int, one int per sample or None, not a bool")
    if isinstance(position, (int, np.integer)):
        return int(position)
    if isinstance(position, np.ndarray):
        position = torch.from_numpy(position)
    if isinstance(position, Tensor):
        if position.is_floating_point() or position.is_complex() or position.dtype == torch.bool:
            raise TypeError(f"position must hold integer positions, got dtype {position.dtype}")
        values = position.reshape(-1).expand(batch) if position.dim() == 0 else position
    else:
        try:
            items = list(position)
        except TypeError:
            raise TypeError(
                f"position must be an int, a sequence or LongTensor of length B, or None, got {type(position).__name__}"
            ) from None
        if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in items):
            raise TypeError(f"position must hold ints, got {items!r}")
        values = torch.as_tensor([int(v) for v in items], dtype=torch.long)
    if values.dim() != 1 or values.shape[0] != batch:
        raise ValueError(f"position has shape {tuple(values.shape)}; expected one position per sample ({batch},)")
    return values.long()


def _forward_kwargs(forward_kwargs: ForwardKwargs, batch: int) -> tuple[dict[str, Any], frozenset[str]]:
    """The keyword arguments (per-sample tensors detached, numpy arrays as tensors) and which are per-sample."""
    if forward_kwargs is None:
        return {}, frozenset()
    if not isinstance(forward_kwargs, Mapping):
        raise TypeError(
            f"forward_kwargs must be a dict of keyword arguments of the model's forward, got "
            f"{type(forward_kwargs).__name__}"
        )
    kwargs: dict[str, Any] = {}
    per_sample = set()
    for name, value in forward_kwargs.items():
        if not isinstance(name, str):
            raise TypeError(f"forward_kwargs keys must be argument names (str), got {name!r}")
        if isinstance(value, np.ndarray) and value.dtype != object:
            value = torch.from_numpy(value)
        rows = value.shape[0] if isinstance(value, Tensor) and value.dim() > 0 else None
        if name in PER_SAMPLE_NAMES and rows not in (None, batch, 1):
            raise ValueError(
                f"forward_kwargs[{name!r}] has batch size {rows}, the inputs have {batch}; a per-sample keyword "
                f"needs {batch} rows (or 1, shared)"
            )
        if name in PER_SAMPLE_NAMES and rows == 1 and batch > 1:
            value, rows = value.expand(batch, *value.shape[1:]), batch
        if rows == batch:
            value = value.detach()
            per_sample.add(name)
        kwargs[name] = value
    return kwargs, frozenset(per_sample)
