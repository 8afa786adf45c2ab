"""Agreement between attribution maps: Pearson correlation over features, averaged over samples.

This is the method-correlation measure of Ancona et al. (ICLR 2018, Sec. 5, Fig. 2-4 tables): for two
methods' maps R^a, R^b of the same sample, corr(R^a, R^b) over its features; then the mean over samples.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor


def pearson_per_sample(a: Tensor, b: Tensor) -> Tensor:
    """Pearson correlation of ``a[i]`` and ``b[i]`` over all features, for each sample i.

    Args:
        a, b: attributions of the same shape (B, ...).

    Returns:
        Tensor(B) in [-1, 1]; NaN for a sample where either map is constant (no defined correlation).
    """
    if a.shape != b.shape:
        raise ValueError(f"maps have different shapes {tuple(a.shape)} and {tuple(b.shape)}")
    a = a.reshape(a.shape[0], -1).double()
    b = b.reshape(b.shape[0], -1).double()
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    denominator = a.norm(dim=1) * b.norm(dim=1)
    correlation = (a * b).sum(1) / denominator
    return torch.where(denominator > 0, correlation, torch.full_like(correlation, float("nan")))


def correlation_matrix(maps: Mapping[str, Tensor]) -> tuple[list[str], Tensor]:
    """Mean per-sample Pearson correlation between every pair of methods.

    Args:
        maps: method name -> attributions (B, ...), all of the same shape.

    Returns:
        ``(names, matrix)`` with ``matrix[i, j]`` the mean over samples (NaNs skipped) of
        corr(maps[names[i]], maps[names[j]]).
    """
    names = list(maps)
    matrix = torch.ones(len(names), len(names), dtype=torch.float64)
    for i, first in enumerate(names):
        for j in range(i + 1, len(names)):
            value = pearson_per_sample(maps[first], maps[names[j]]).nanmean()
            matrix[i, j] = matrix[j, i] = value
    return names, matrix
