"""Attribution maps and ground-truth masks as the quality metrics take them: tensors or numpy arrays, batch
first, flattened per sample to float64 (B, N), channels summed where a mask has none.

Every metric of :mod:`gradattr.metrics` that reads maps (complexity, localisation, perturbation curves) goes
through :func:`flat_map` / :func:`flat_map_and_mask`, so they agree on what a feature is.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor


def as_tensor(name: str, value: Any) -> Tensor:
    """``value`` (a tensor or a numpy array) as a detached tensor; TypeError naming ``name`` otherwise."""
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, Tensor):
        return value.detach()
    raise TypeError(f"{name} must be a torch.Tensor or a numpy array, got {type(value).__name__}")


def flat_map(attributions: Any, name: str = "attributions") -> Tensor:
    """R as float64 (B, N): batch first, every other dimension flattened; finite (ValueError naming ``name``
    otherwise)."""
    r = as_tensor(name, attributions)
    if r.dim() < 2:
        raise ValueError(f"{name} must be batch-first (B, ...) with at least one feature, got shape {tuple(r.shape)}")
    if not (r.is_floating_point() or r.dtype in (torch.int32, torch.int64)):
        raise TypeError(f"{name} must hold numbers, got {r.dtype}")
    if r.is_floating_point() and not bool(torch.isfinite(r).all()):
        raise ValueError(f"{name} contain NaN or infinite values")
    return r.to(torch.float64).reshape(r.shape[0], -1)


def flat_map_and_mask(attributions: Any, mask: Any) -> tuple[Tensor, Tensor]:
    """R as float64 (B, N) and the ground-truth mask as bool (B, N) over the same features.

    The mask may have the map's shape (B, ...); or lack its channel dimension, e.g. (B, H, W) against a map
    (B, C, H, W), which is then summed over its channels; either without the batch dimension, one mask
    serving every sample.
    """
    r = as_tensor("attributions", attributions)
    m = as_tensor("mask", mask)
    batch = r.shape[:1]
    if m.shape == r.shape:
        pass
    elif r.dim() >= 3 and m.shape == batch + r.shape[2:]:
        r = r.sum(1)
    elif m.shape == r.shape[1:]:
        m = m.expand(r.shape)
    elif r.dim() >= 3 and m.shape == r.shape[2:]:
        r = r.sum(1)
        m = m.expand(r.shape)
    else:
        raise ValueError(
            f"a mask of shape {tuple(m.shape)} does not cover attributions of shape {tuple(r.shape)}: give the "
            "map's shape, or its shape without the channel dimension, with or without the batch dimension"
        )
    if m.dtype != torch.bool:
        if not bool(((m == 0) | (m == 1)).all()):
            raise ValueError("mask must be boolean or hold only 0 and 1")
        m = m.bool()
    flat = flat_map(r)
    return flat, m.reshape(m.shape[0], -1).to(flat.device)
