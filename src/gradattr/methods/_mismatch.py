"""When the model refuses the user's input: the input's shape, the shape the model expects, and the layer.

Torch reports a wrong input size from deep inside the model, in its own terms (``mat1 and mat2 shapes cannot
be multiplied (1x4096 and 1024x5)``, ``expected input[1, 1, 32, 32] to have 3 channels``). :func:`input_mismatch`
runs the model once more on the user's own batch, notes the layer that failed and what it was given, and
derives the input shape the model expects from that layer (a convolution's input channels, a linear layer's
input features, scaled back through a flatten to the input's spatial size). Each derived shape is confirmed
by a forward pass of one row of zeros before it is named; when none is confirmed the message names the layer
and what it got. It runs only after a failure, never on the way to a result.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

_CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


class InputShapeError(ValueError, RuntimeError):
    """The model does not accept an input of this shape (the message says which shape it expects). A
    RuntimeError too, as torch's own error about it was."""


def shape_text(shape: tuple[int, ...] | torch.Size) -> str:
    """``(1, 64, 64)``; a 1-tuple as ``(5,)``."""
    return str(tuple(int(s) for s in shape))


def input_mismatch(
    model: nn.Module, x: Tensor, call: Callable[[Tensor], Any], name: str = "inputs", per_sample: bool = False
) -> InputShapeError | None:
    """The error to report when ``call(x)`` (the model on the user's batch ``x``) fails for ``x``'s shape, or
    ``None`` when it runs (the failure was elsewhere).

    ``name`` says what ``x`` is (``"inputs"``, ``"input cat.png"``); with ``per_sample`` the shapes are given
    without the batch dimension (each file one sample).
    """
    failure = _failure(model, call, x)
    if failure is None:
        return None
    culprit, reason = failure
    shown = x.shape[1:] if per_sample else x.shape
    sized = any(word in reason for word in _SIZE_WORDS)
    if culprit is None:
        accepted = f"{name} has shape {shape_text(shown)}, which the model does not accept: {reason}"
        return InputShapeError(accepted) if sized else None
    layer, module, given = culprit
    where = f"layer '{layer}' ({_describe(module)})" if layer else f"the model ({_describe(module)})"
    expected = _expected(model, call, x, culprit, budget=[MAX_TRIES])
    if expected is not None:
        wanted = expected[1:] if per_sample else expected
        return InputShapeError(f"{name} has shape {shape_text(shown)} but the model expects {shape_text(wanted)} "
                               f"({where})")  # fmt: skip
    if not sized:  # the model failed for another reason: its own error says more
        return None
    got = f" was given {shape_text(given.shape)}" if given is not None else " failed"
    return InputShapeError(
        f"{name} has shape {shape_text(shown)}, which the model does not accept: {where}{got}: {reason}"
    )


_SIZE_WORDS = ("shape", "size", "channels", "dimension", "mat1", "expected input", "out of range")
"""Words of torch's errors about an input of the wrong size (or token ids past an embedding's rows)."""
MAX_TRIES = 40
"""At most this many one-row passes to confirm an expected shape."""

Culprit = tuple[str, nn.Module, "Tensor | None"]


def _failure(model: nn.Module, call: Callable[[Tensor], Any], x: Tensor) -> tuple[Culprit | None, str] | None:
    """``None`` if ``call(x)`` runs; else the innermost module whose forward raised (its name, the module, its
    first tensor argument; ``None`` outside any module) and the error's text."""
    failed: list[Culprit] = []
    try:
        with torch.no_grad(), _watching(model, failed):
            call(x)
        return None
    except Exception as error:
        return (failed[-1] if failed else None), " ".join(str(error).split())


def _expected(
    model: nn.Module, call: Callable[[Tensor], Any], x: Tensor, culprit: Culprit, budget: list[int], depth: int = 3
) -> tuple[int, ...] | None:
    """A shape (batch first) the model runs on, derived from the layer that refused ``x``: fixing that layer's
    complaint may reveal the next one (channels first, then the spatial size), up to ``depth`` layers."""
    _, module, given = culprit
    for shape in _candidates(module, given, tuple(x.shape)):
        if budget[0] <= 0:
            return None
        budget[0] -= 1
        trial = x.new_zeros((1, *shape[1:]))
        failure = _failure(model, call, trial)
        if failure is None:
            return shape
        following, _ = failure
        if depth > 1 and following is not None and following[1] is not module:
            found = _expected(model, call, trial.expand(shape), following, budget, depth - 1)
            if found is not None:
                return found
    return None


def _watching(model: nn.Module, failed: list[Culprit]) -> Any:
    """Forward hooks on the model and its submodules that leave in ``failed`` the modules whose forward was
    running when an error was raised, innermost last."""

    @contextmanager
    def context() -> Iterator[None]:
        stack: list[Culprit] = []  # modules entered and not yet left
        handles = []

        def enter(label: str) -> Callable[..., None]:
            def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
                first = next((a for a in args if isinstance(a, Tensor)), None)
                stack.append((label, module, first))

            return hook

        def leave(module: nn.Module, args: Any, output: Any) -> None:
            if stack:
                stack.pop()

        for label, module in model.named_modules():
            handles.append(module.register_forward_pre_hook(enter(label)))
            handles.append(module.register_forward_hook(leave))
        try:
            yield
        except BaseException:
            failed.extend(stack)
            raise
        finally:
            for handle in handles:
                handle.remove()

    return context()


def _describe(module: nn.Module) -> str:
    if isinstance(module, nn.Linear):
        return f"Linear with {module.in_features} input features"
    if isinstance(module, _CONVOLUTIONS):
        return f"{type(module).__name__} with {module.in_channels} input channels"
    return type(module).__name__


def _candidates(module: nn.Module, given: Tensor | None, shape: tuple[int, ...]) -> Iterator[tuple[int, ...]]:
    """Input shapes (batch first) that would give ``module`` an input it takes, best guess first."""
    bases = [shape]
    if isinstance(module, _CONVOLUTIONS):
        channels, dims = module.in_channels, len(module.kernel_size)
        if len(shape) == dims + 2 and shape[1] != channels:
            bases.insert(0, (shape[0], channels, *shape[2:]))
        elif len(shape) == dims + 1:
            bases.insert(0, (shape[0], channels, *shape[1:]))  # no channel dimension
        yield from bases[:-1]
    if isinstance(module, nn.Linear) and given is not None and given.dim() >= 1:
        features, got = module.in_features, given.shape[-1]
        if tuple(given.shape) == shape:
            yield (*shape[:-1], features)
        elif given.dim() == 2 and got and len(shape) >= 2:  # after a flatten: scale the input's size to fit
            for base in bases:
                yield from _scaled(base, math.prod(base[1:]) * features / got)


def _scaled(shape: tuple[int, ...], values: float) -> Iterator[tuple[int, ...]]:
    """``shape`` with its spatial dimensions resized (kept square when they are) to hold about ``values``
    values per sample; nearby sizes follow (valid convolutions shrink the map by a few pixels)."""
    if len(shape) == 2:
        if float(values).is_integer():
            yield (shape[0], int(values))
        return
    channels = shape[1] if len(shape) == 4 else 1
    spatial = shape[-2:] if len(shape) >= 3 else shape[1:]
    if len(shape) > 4 or spatial[0] != spatial[-1]:
        return
    side = math.sqrt(values / channels)
    first = round(side)
    for size in sorted({max(1, first + d) for d in range(-4, 5)}, key=lambda s: abs(s - side)):
        yield (*shape[:-2], size, size)
