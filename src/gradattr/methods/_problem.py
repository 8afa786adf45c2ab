"""Validated attribution problems: inputs, baselines and targets, and the model as a function of them.

Everything a user can get wrong is checked here, before the model runs, with an error that says what was
expected: non-floating or non-finite inputs, batch sizes that differ, baselines that do not broadcast,
targets out of range or of the wrong length, a model on another dtype/device than its inputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from gradattr.engine.backward import rows_per_pass
from gradattr.engine.hygiene import view_of
from gradattr.memory import in_row_chunks
from gradattr.methods._model_call import ForwardKwargs, ModelCall, OutputSelector, Position, _rows
from gradattr.methods.neuron import Neuron, NeuronTarget, first_output

Inputs = Tensor | tuple[Tensor, ...]
LOW_PRECISION = (torch.float16, torch.bfloat16)
"""Floating dtypes refused for attributed tensors."""
Target = int | Sequence[int] | Tensor | NeuronTarget | None
Baseline = float | Tensor | tuple[float | Tensor | None, ...] | None


class NonFiniteOutputError(FloatingPointError):
    """The model's output for the explained class is NaN or infinite."""


def all_finite(tensor: Tensor) -> bool:
    """Whether ``tensor`` holds no NaN or inf, in one reduction pass (min and max propagate NaN)."""
    if tensor.numel() == 0:
        return True
    low, high = torch.aminmax(tensor.detach())
    return bool(torch.isfinite(low)) and bool(torch.isfinite(high))


def _check_finite(name: str, tensor: Tensor) -> None:
    if not all_finite(tensor):
        bad = int((~torch.isfinite(tensor)).sum())
        raise ValueError(f"{name} contains {bad} NaN or infinite value(s); attributions would be meaningless")


def check_positive_int(name: str, value: object) -> int:
    """``value`` as an int >= 1 (a count of steps, samples, copies), or a ValueError naming the option."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return value


def as_tuple(inputs: Inputs, name: str = "inputs") -> tuple[Tensor, ...]:
    """Normalise a tensor or a tuple/list of tensors to a tuple; numpy arrays become tensors (sharing memory,
    never written to), anything else is refused."""
    items = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    if not items:
        raise ValueError(f"{name} is empty")
    converted = []
    for i, item in enumerate(items):
        if isinstance(item, np.ndarray):
            if item.dtype == object:
                raise TypeError(f"{name}[{i}] is a numpy array of Python objects; pass numbers")
            item = torch.from_numpy(item)
        if not isinstance(item, Tensor):
            raise TypeError(f"{name}[{i}] must be a torch.Tensor or a numpy array, got {type(item).__name__}")
        converted.append(item)
    return tuple(converted)


def _check_precision(inputs: tuple[Tensor, ...]) -> None:
    """float16/bfloat16 inputs are refused before the model runs."""
    for i, x in enumerate(inputs):
        if x.dtype in LOW_PRECISION:
            label = f"inputs[{i}]" if len(inputs) > 1 else "inputs"
            raise TypeError(
                f"{label} has dtype {x.dtype}; gradattr computes attributions in float32 or float64 (rules divide "
                "by differences of activations, which half precision rounds away): convert the model and the "
                "inputs with .float()"
            )


def _check_attributed(inputs: tuple[Tensor, ...], floating: bool = True) -> int:
    """Attributed tensors: floating (unless ``floating=False``), finite, batch-first with one common batch
    size, which is returned."""
    batch = None
    for i, x in enumerate(inputs):
        label = f"inputs[{i}]" if len(inputs) > 1 else "inputs"
        if floating and not x.is_floating_point():
            raise TypeError(
                f"{label} has dtype {x.dtype}; attributions need floating inputs (for token ids, attribute the "
                "embedding output with layer='embedding')"
            )
        if x.dim() == 0:
            raise ValueError(f"{label} is a scalar; inputs are batch-first, shape (B, ...)")
        _check_finite(label, x)
        if batch is None:
            batch = x.shape[0]
        elif x.shape[0] != batch:
            raise ValueError(f"{label} has batch size {x.shape[0]}, inputs[0] has {batch}")
    assert batch is not None
    if batch == 0:
        raise ValueError("inputs have batch size 0")
    return batch


def _per_input(baseline: Baseline, inputs: tuple[Tensor, ...]) -> list[tuple[str, Any, Tensor]]:
    """``(label, baseline, input)`` for each input: one baseline (a numpy array as a tensor) per input, the same
    one for all inputs unless a tuple/list gives one each."""
    items = baseline if isinstance(baseline, (tuple, list)) else (baseline,) * len(inputs)
    if len(items) != len(inputs):
        raise ValueError(f"{len(items)} baselines given for {len(inputs)} inputs")
    return [
        (
            f"baseline[{i}]" if len(inputs) > 1 else "baseline",
            torch.from_numpy(b) if isinstance(b, np.ndarray) else b,
            x,
        )
        for i, (b, x) in enumerate(zip(items, inputs, strict=True))
    ]


def _baselines(baseline: Baseline, inputs: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """One baseline per input, broadcast to (1 or B, *input.shape[1:]), input dtype and device."""
    result = []
    for label, b, x in _per_input(baseline, inputs):
        if b is None:
            b = 0.0
        if isinstance(b, (int, float)):
            if not math.isfinite(b):
                raise ValueError(f"{label} is {b}; it must be finite")
            result.append(torch.full((1, *x.shape[1:]), float(b), dtype=x.dtype, device=x.device))
            continue
        if not isinstance(b, Tensor):
            raise TypeError(f"{label} must be None, a number, a tensor or a numpy array, got {type(b).__name__}")
        b = b.detach().to(dtype=x.dtype, device=x.device)
        _check_finite(label, b)
        per_sample = b.dim() == x.dim() and b.shape[0] == x.shape[0] and x.shape[0] > 1
        try:
            shape = x.shape if per_sample else (1, *x.shape[1:])
            result.append(torch.broadcast_to(b, shape).clone())
        except RuntimeError as error:
            raise ValueError(
                f"{label} of shape {tuple(b.shape)} does not broadcast to the inputs' shape {tuple(x.shape)}"
            ) from error
    return tuple(result)


def _references(baseline: Baseline, inputs: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """A distribution of K references per input, each (K, *input.shape[1:]) with one K for all inputs
    (GradientSHAP, DeepLiftSHAP): a tensor of K rows, one row without the batch dimension, a number, ``None``
    (one zero reference) or a tuple of those for a multi-input model."""
    result = []
    for label, b, x in _per_input(baseline, inputs):
        if isinstance(b, Tensor):
            b = b.detach().to(dtype=x.dtype, device=x.device)
            if b.dim() == x.dim() - 1:
                b = b.unsqueeze(0)
            if b.dim() != x.dim() or b.shape[1:] != x.shape[1:] or b.shape[0] == 0:
                expected = ", ".join(map(str, x.shape[1:]))
                raise ValueError(
                    f"{label} of shape {tuple(b.shape)} is not a set of references (K, {expected}) for inputs of "
                    f"shape {tuple(x.shape)}"
                )
            _check_finite(label, b)
            result.append(b.clone())
        else:
            result.extend(_baselines(b, (x,)))  # None or a number: one reference
    if len({r.shape[0] for r in result}) > 1:
        raise ValueError(f"the baselines have different numbers of references: {[r.shape[0] for r in result]}")
    return tuple(result)


def _targets(target: Target, batch: int, device: torch.device) -> Tensor | None:
    """LongTensor(B) of class indices, or None (argmax / single output)."""
    if target is None:
        return None
    if isinstance(target, bool):
        raise TypeError("target must be an int, a sequence of ints, a LongTensor(B) or None, not a bool")
    if isinstance(target, (int, np.integer)):
        return torch.full((batch,), int(target), dtype=torch.long, device=device)
    if isinstance(target, np.ndarray):
        target = torch.from_numpy(target)
    if isinstance(target, Tensor):
        if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
            raise TypeError(f"target tensor must hold integer class indices, got dtype {target.dtype}")
        values = target.reshape(-1) if target.dim() <= 1 else target
        if target.dim() == 0:
            values = values.expand(batch)
    else:
        try:
            items = list(target)
        except TypeError:
            raise TypeError(
                f"target must be an int, a sequence of ints, a LongTensor(B) or None, got {type(target).__name__}"
            ) from None
        bad = next((v for v in items if isinstance(v, bool) or not isinstance(v, (int, np.integer))), None)
        if bad is not None:
            raise TypeError(f"target must hold integer class indices, got {type(bad).__name__} {bad!r}")
        values = torch.as_tensor([int(v) for v in items], dtype=torch.long)
    if values.dim() != 1 or values.shape[0] != batch:
        raise ValueError(f"target has shape {tuple(values.shape)}; expected one class index per sample ({batch},)")
    return values.to(device=device, dtype=torch.long)


def _check_model_matches(model: nn.Module, reference: Tensor, same_dtype: bool = True) -> None:
    """A model whose parameters live on another device/dtype than the inputs gets a clear error."""
    parameter = next((p for p in model.parameters() if p.is_floating_point()), None)
    if parameter is None:
        return
    if parameter.device != reference.device:
        raise ValueError(
            f"model parameters are on {parameter.device}, inputs on {reference.device}; move one to the other"
        )
    if same_dtype and parameter.dtype != reference.dtype:
        raise ValueError(
            f"model parameters are {parameter.dtype}, inputs are {reference.dtype}; convert the inputs or the "
            f"model (e.g. model.to({reference.dtype}))"
        )


@dataclass
class AttributionProblem:
    """What is attributed, to what, against which baseline: the validated arguments of ``attribute``.

    ``inputs`` are the attributed tensors (the model inputs, or the output of ``layer``); ``baselines`` one
    per input with 1 row (shared) or B rows; ``target`` LongTensor(B) or ``None`` (resolved on first use);
    ``call`` the model's extra keyword arguments and the reading of its output (:mod:`._model_call`);
    ``references``: for the methods that average over a distribution of baselines (GradientSHAP,
    DeepLiftSHAP), K references per input, (K, ...), shared by all samples (``baselines`` are then unused).
    """

    model: nn.Module
    inputs: tuple[Tensor, ...]
    baselines: tuple[Tensor, ...]
    target: Tensor | None
    model_inputs: tuple[Any, ...]
    layer: nn.Module | None = None
    returns_tuple: bool = False
    _output_width: int | None = field(default=None, repr=False)
    call: ModelCall = field(default_factory=ModelCall)
    references: tuple[Tensor, ...] | None = None

    @property
    def batch_size(self) -> int:
        return self.inputs[0].shape[0]

    @property
    def all_rows(self) -> Tensor:
        """LongTensor(B): each sample once, in order."""
        return torch.arange(self.batch_size, device=self.inputs[0].device)

    @property
    def reference_points(self) -> tuple[Tensor, ...]:
        """Baseline points for a rule's reference pass: one shared row when the baselines are shared and the
        inputs are the model's own; with ``layer`` one row per sample, because the model after the layer may
        use per-sample context from the other inputs (masks, lengths) that one row cannot stand for."""
        if self.layer is None:
            return self.baselines
        return tuple(b.expand(self.batch_size, *b.shape[1:]) for b in self.baselines)

    # -- the model as a function of the attributed tensors (engine.Forward) ------------------------------
    def output(self, points: tuple[Tensor, ...], index: Tensor, scratch: bool = False) -> Tensor:
        """Raw model output, shape (K, C) or (K,), for rows ``points`` belonging to samples ``index``.

        Per-sample keyword arguments and the model's other inputs follow ``index``; the explained tensor is
        read from the output as ``call`` says (``output=``, a (K, T, V) output at ``position``). ``scratch``:
        the points are the caller's temporaries, not read again, so the model gets them without a copy.
        """
        if self.layer is None:  # copies, so a model that writes to its input in place writes to them
            return self.call(self.model, points if scratch else tuple(p.clone() for p in points), index)
        model_inputs = tuple(_rows(v, index) for v in self.model_inputs)
        with _replaced_output(self.layer, points[0]):
            return self.call(self.model, model_inputs, index)

    def score(self, output: Tensor, index: Tensor) -> Tensor:
        """S_c: the target's output (pre-softmax) for each row, shape (K,).

        Raises:
            NonFiniteOutputError: a target output is NaN or infinite (its gradient may still be finite, so
                the attributions would look plausible and mean nothing).
        """
        width = 1 if output.dim() == 1 else output.shape[1]
        self._check_width(width)
        if self.target is None and width > 1:
            if index.numel() == self.batch_size:  # the first evaluation is at the inputs themselves
                self.target = output.detach().argmax(dim=1)
            else:  # a part of the batch (a pass split by the memory budget): all of it first
                self.resolve_target()
        if self.target is None:
            scores = output.reshape(-1)
        else:
            scores = output.gather(1, self.target[index].unsqueeze(1)).squeeze(1) if output.dim() == 2 else output
        if not all_finite(scores):
            bad = int((~torch.isfinite(scores.detach())).sum())
            raise NonFiniteOutputError(f"the model's target output is NaN or infinite for {bad} of {len(scores)} rows")
        return scores

    def scores(self, points: tuple[Tensor, ...], index: Tensor, scratch: bool = False) -> Tensor:
        """S_c of many rows without gradients, shape (K,): forward passes that fit the memory budget, split
        and retried on out-of-memory (:mod:`gradattr.memory`). An argmax target is fixed by the first call.
        ``scratch``: the points are the caller's temporaries (perturbed copies), given to the model uncopied."""
        if self.target is None:
            self.resolve_target()
        return self._chunked(points, index, lambda output, rows: self.score(output, rows), scratch)

    def _chunked(
        self,
        points: tuple[Tensor, ...],
        index: Tensor,
        then: Callable[[Tensor, Tensor], Tensor],
        scratch: bool = False,
    ) -> Tensor:
        def part(rows: slice) -> Tensor:
            return then(self.output(tuple(p[rows] for p in points), index[rows], scratch), index[rows])

        with torch.no_grad():
            parts = in_row_chunks(index.numel(), rows_per_pass(self, points, index), part)
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def resolve_target(self) -> None:
        """Fix an argmax target from forward passes at the inputs (the model's output itself when it has one
        output per sample)."""
        if self.target is not None:
            return
        output = self._chunked(self.inputs, self.all_rows, lambda output, rows: output)
        if output.dim() == 2 and output.shape[1] > 1:
            self.target = output.argmax(dim=1)
        self.score(output, self.all_rows)  # checks the width and that the outputs are finite

    def _check_width(self, width: int) -> None:
        if self._output_width is None:
            self._output_width = width
            if self.target is not None:
                low, high = int(self.target.min()), int(self.target.max())
                if low < 0 or high >= width:
                    bad = low if low < 0 else high
                    raise IndexError(f"target {bad} is out of range: the model has {width} output(s) per sample")

    def at_points(self, points: tuple[Tensor, ...], index: Tensor) -> AttributionProblem:
        """The same problem for other rows: ``points`` (K rows, shaped like the inputs) of samples ``index``.

        Targets, per-sample baselines and the model's other inputs follow ``index``; methods run on the
        result as on any problem (SmoothGrad attributes noisy copies this way).
        """
        self.resolve_target()  # None after this only for a model with one output per sample
        return AttributionProblem(
            model=self.model,
            inputs=points,
            baselines=tuple(b if b.shape[0] == 1 else b[index] for b in self.baselines),
            target=None if self.target is None else self.target[index],
            model_inputs=tuple(_rows(v, index) for v in self.model_inputs),
            layer=self.layer,
            returns_tuple=self.returns_tuple,
            _output_width=self._output_width,
            call=self.call.rows(index),
            references=self.references,
        )

    def unpack(self, attributions: tuple[Tensor, ...]) -> Inputs:
        """Attributions in the inputs' dtype (floating inputs), as a tuple when the inputs were a tuple."""
        cast = tuple(
            a.to(x.dtype) if x.is_floating_point() else a for a, x in zip(attributions, self.inputs, strict=True)
        )
        return cast if self.returns_tuple else cast[0]


_REUSED_LAYER = (
    "the attributed layer is called more than once per forward pass, so its output is not one tensor; "
    "attribute a layer that runs once (or the inputs)"
)


@contextmanager
def _intercepted_output(layer: nn.Module, replace: Callable[[Tensor], Tensor | None]) -> Iterator[list[Tensor]]:
    """While active, ``layer``'s output goes through ``replace`` (``None``: kept); yields the list that
    receives what the layer finally returned. The layer must return one tensor and run once per pass."""
    seen: list[Tensor] = []

    def hook(module: nn.Module, args: Any, output: Any) -> Tensor | None:
        if seen:
            raise ValueError(_REUSED_LAYER)
        if not isinstance(output, Tensor):
            raise ValueError(f"the layer returned {type(output).__name__}; it must return a single tensor")
        replacement = replace(output)
        # copies: the model may overwrite the layer's output in place (conv -> ReLU(inplace=True)); the
        # recorded value must be the layer's, and the leaf/attributed tensor must not be written to
        seen.append(output.detach().clone() if replacement is None else replacement)
        return None if replacement is None else replacement.clone()

    handle = layer.register_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


def _replaced_output(layer: nn.Module, replacement: Tensor) -> AbstractContextManager[list[Tensor]]:
    """While active, ``layer`` returns ``replacement`` (the attributed tensor) instead of its own output."""

    def replace(output: Tensor) -> Tensor:
        if output.shape != replacement.shape:
            raise ValueError(
                f"layer output {tuple(output.shape)} does not match the attributed tensor {tuple(replacement.shape)}"
            )
        return replacement

    return _intercepted_output(layer, replace)


def activation_leaf(layer: nn.Module) -> AbstractContextManager[list[Tensor]]:
    """While active, ``layer``'s output is detached into a leaf that requires grad, so one forward pass
    gives both the activations and (by autograd) the gradient of anything computed from them."""
    return _intercepted_output(layer, lambda output: output.detach().requires_grad_())


def find_layer(model: nn.Module, layer: str | nn.Module) -> nn.Module:
    """The submodule ``layer`` (a module, or its dotted name in ``model``)."""
    if isinstance(layer, nn.Module):
        return view_of(model, layer)
    modules = dict(model.named_modules())
    if layer not in modules:
        names = ", ".join(n for n in modules if n) or "(none)"
        raise ValueError(f"model has no submodule '{layer}'; its submodules are: {names}")
    return modules[layer]


def _layer_output(model: nn.Module, layer: nn.Module, model_inputs: tuple[Any, ...], call: ModelCall) -> Tensor:
    """The layer's output for the inputs, from a pass without gradients that stops at the layer (a token
    embedding: nothing after it runs)."""
    every = torch.arange(model_inputs[0].shape[0], device=model_inputs[0].device)
    with torch.no_grad():
        seen = first_output(layer, lambda: model(*(x.clone() for x in model_inputs), **call.forward_kwargs(every)))
    if not seen:
        raise ValueError("the attributed layer was not called; it must return a single tensor")
    if not isinstance(seen[0], Tensor):
        raise ValueError(f"the layer returned {type(seen[0]).__name__}; it must return a single tensor")
    return seen[0].detach().clone()


def build_problem(
    model: nn.Module,
    inputs: Inputs,
    target: Target,
    baseline: Baseline,
    layer: str | nn.Module | None = None,
    *,
    floating: bool = True,
    forward_kwargs: ForwardKwargs = None,
    output: OutputSelector = None,
    position: Position = None,
    references: bool = False,
) -> AttributionProblem:
    """Validate ``attribute``'s arguments; with ``layer``, the attributed tensor is that module's output.

    ``floating=False``: the inputs are only fed to the model (a method that reads a layer's activations,
    such as Grad-CAM), so they may be token ids. ``forward_kwargs``, ``output``, ``position``: the model's
    extra keyword arguments and the reading of its output (:class:`~._model_call.ModelCall`).
    ``references=True``: ``baseline`` is a distribution of references (K, ...) (:func:`_references`).
    """
    # other inputs may require grad (masks); a tensor made under torch.inference_mode() is copied to one
    # that autograd may use
    model_inputs = tuple(x.clone() if x.is_inference() else x.detach() for x in as_tuple(inputs))
    returns_tuple = isinstance(inputs, (tuple, list))
    _check_precision(model_inputs)
    floats = [x for x in model_inputs if x.is_floating_point()]
    _check_model_matches(model, floats[0] if floats else model_inputs[0], same_dtype=bool(floats))
    call = ModelCall.build(forward_kwargs, output, position, _batch_of(model_inputs[0]))
    neuron = Neuron.parse(target)
    if neuron is not None:
        if output is not None or position is not None:
            raise ValueError("a neuron target explains a hidden unit: output= and position= do not apply to it")
        call, target = replace(call, neuron=neuron), None
    if layer is None:
        attributed = model_inputs
    else:
        module = find_layer(model, layer)
        attributed = (_layer_output(model, module, model_inputs, call),)
        returns_tuple = False
    batch = _check_attributed(attributed, floating)
    return AttributionProblem(
        model=model,
        inputs=attributed,
        baselines=_baselines(None if references else baseline, attributed),
        target=_targets(target, batch, attributed[0].device),
        model_inputs=model_inputs,
        layer=None if layer is None else find_layer(model, layer),
        returns_tuple=returns_tuple,
        call=call,
        references=_references(baseline, attributed) if references else None,
    )


def _batch_of(x: Tensor) -> int:
    if x.dim() == 0:
        raise ValueError("inputs is a scalar; inputs are batch-first, shape (B, ...)")
    return x.shape[0]
