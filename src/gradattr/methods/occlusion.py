"""Occlusion (Zeiler & Fergus 2014; Ancona et al., ICLR 2018, Sec. 2.2): perturbation, no gradients.

A window slides over the features of each input; for every position the drop of the target logit when the
window is set to ``value``, Δ = S_c(x) - S_c(x with window := value), is spread evenly over the window's
features: R_i = Σ_{windows W ∋ i} Δ_W / |W|. With ``window=1`` this is Occlusion-1,
R_i = S_c(x) - S_c(x with x_i := value). All perturbed copies are evaluated in large batches.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from gradattr.methods._batching import copies_per_pass
from gradattr.methods._problem import AttributionProblem

Window = int | Sequence[int]


def _per_dim(option: str, value: Window, shape: torch.Size) -> tuple[int, ...]:
    """An int (every dimension) or a tuple for the trailing dimensions (leading ones get 1), validated."""
    values = (value,) * len(shape) if isinstance(value, int) else tuple(value)
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
        raise ValueError(f"{option} must be a positive int or a tuple of positive ints, got {value!r}")
    if len(values) > len(shape):
        raise ValueError(f"{option} {value!r} has more dimensions than the features {tuple(shape)}")
    return (1,) * (len(shape) - len(values)) + values


def _window_starts(shape: torch.Size, window: tuple[int, ...], stride: tuple[int, ...]) -> Tensor:
    """LongTensor(W, d): the first index of every window position, in row-major order."""
    if any(w > s for w, s in zip(window, shape, strict=True)):
        raise ValueError(f"occlusion window {window} is larger than the features {tuple(shape)}")
    grids = [torch.arange(0, s - w + 1, st) for s, w, st in zip(shape, window, stride, strict=True)]
    return torch.cartesian_prod(*grids).reshape(-1, len(shape))


def _window_masks(starts: Tensor, shape: torch.Size, window: tuple[int, ...], device: torch.device) -> Tensor:
    """BoolTensor(len(starts), *shape): True inside each window."""
    mask = torch.ones((starts.shape[0], *shape), dtype=torch.bool, device=device)
    for dim, (size, width) in enumerate(zip(shape, window, strict=True)):
        position = torch.arange(size, device=device)
        first = starts[:, dim : dim + 1].to(device)
        inside = (position >= first) & (position < first + width)  # (W, size)
        view = [starts.shape[0]] + [1] * len(shape)
        view[dim + 1] = size
        mask &= inside.view(view)
    return mask


def _occluded(x: Tensor, masks: Tensor, value: float) -> Tensor:
    """(W, B, ...): a copy of the batch per window, the window's features set to ``value``. For 0 (the
    default) a product with the complement, 3-5x faster than ``torch.where`` over the broadcast shapes; the
    inputs are finite (checked), so ``x · 0 = 0`` (``-0.0`` where ``x < 0``, equal to 0)."""
    if value == 0:
        return x.unsqueeze(0) * (~masks).unsqueeze(1)
    return torch.where(masks.unsqueeze(1), value, x.unsqueeze(0))


def occlusion(
    problem: AttributionProblem,
    *,
    window: Window | Sequence[Window] = 1,
    stride: Window | Sequence[Window] = 1,
    value: float = 0.0,
    batch_size: int | None = None,
) -> tuple[Tensor, ...]:
    """Occlusion attributions, each window's output drop spread evenly over its features.

    Args:
        problem: validated inputs x (B, ...), target c.
        window: window size per feature dimension: an int for every dimension, or a tuple for the trailing
            dimensions (e.g. ``(4, 4)`` on a (C, H, W) image: 1 channel x 4 x 4); with several inputs, a
            list with one such entry per input.
        stride: step between window positions, same form as ``window``.
        value: what an occluded feature is set to.
        batch_size: most rows (perturbed copies) per forward pass; default from a memory budget.

    Returns:
        One tensor per input, shape of the input. Features no window covers (stride > window) get 0.

    Example:
        >>> import torch, gradattr
        >>> model = torch.nn.Linear(4, 1, bias=False)
        >>> r = gradattr.attribute(model, torch.ones(1, 4), method="occlusion")
        >>> torch.allclose(r, model.weight.detach())
        True
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"value must be a finite number, got {value!r}")
    count = len(problem.inputs)
    windows = list(window) if count > 1 and isinstance(window, list) else [window] * count
    strides = list(stride) if count > 1 and isinstance(stride, list) else [stride] * count
    if len(windows) != count or len(strides) != count:
        raise ValueError(f"window and stride lists need one entry per input ({count})")
    batch = problem.batch_size
    rows = problem.all_rows
    with torch.no_grad():
        reference = problem.scores(problem.inputs, rows)
        per_chunk = copies_per_pass(problem, batch_size)
        results = []
        for i, x in enumerate(problem.inputs):
            shape = x.shape[1:]
            size = _per_dim("window", windows[i], shape)
            starts = _window_starts(shape, size, _per_dim("stride", strides[i], shape))
            attribution = torch.zeros_like(x).reshape(batch, -1)
            for first in range(0, starts.shape[0], per_chunk):
                masks = _window_masks(starts[first : first + per_chunk], shape, size, x.device)
                copies = masks.shape[0]
                occluded = _occluded(x, masks, value)
                points = tuple(
                    occluded.reshape(-1, *shape)
                    if j == i
                    else other.repeat(copies, *(1,) * (other.dim() - 1))  # a copy: the model may write to it
                    for j, other in enumerate(problem.inputs)
                )
                index = rows.repeat(copies)
                drops = reference.unsqueeze(0) - problem.scores(points, index, scratch=True).view(copies, batch)
                attribution += drops.T.to(x.dtype) @ masks.reshape(copies, -1).to(x.dtype)
            results.append(attribution.view_as(x) / math.prod(size))
    return tuple(results)
