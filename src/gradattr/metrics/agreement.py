"""Agreement between attribution maps, per sample: Pearson and Spearman correlation, top-k intersection.

Pearson is the method-correlation measure of Ancona et al. (ICLR 2018, Sec. 5, Fig. 2-4 tables): for two
methods' maps R^a, R^b of the same sample, corr(R^a, R^b) over its features; then the mean over samples.
Spearman's rank correlation and the top-k intersection are the map-similarity measures of the explanation
fragility and sanity-check literature (Ghorbani et al. 2019; Adebayo et al. 2018; surveyed by Nielsen et al.
2022): they ask whether two maps order the features alike, and whether they agree on the k most important.
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


def average_ranks(values: Tensor) -> Tensor:
    """Ranks 1..N of each row of ``values`` (B, N), tied values sharing the mean of their ranks (float64).

    A value v gets rank (lo + hi + 1) / 2, where lo counts the row's values below v and hi those up to v.
    """
    rows = values.reshape(values.shape[0], -1).double()
    ordered = rows.sort(dim=1).values
    below = torch.searchsorted(ordered, rows, right=False)
    up_to = torch.searchsorted(ordered, rows, right=True)
    return (below + up_to + 1).double() / 2


def spearman_per_sample(a: Tensor, b: Tensor) -> Tensor:
    """Spearman rank correlation of ``a[i]`` and ``b[i]`` over all features, for each sample i.

    The Pearson correlation of the features' average ranks (ties get the mean of their ranks).

    Args:
        a, b: attributions of the same shape (B, ...).

    Returns:
        Tensor(B) in [-1, 1]; NaN for a sample where either map is constant.
    """
    if a.shape != b.shape:
        raise ValueError(f"maps have different shapes {tuple(a.shape)} and {tuple(b.shape)}")
    return pearson_per_sample(average_ranks(a), average_ranks(b))


def topk_intersection(a: Tensor, b: Tensor, k: int) -> Tensor:
    """Fraction of the k features of largest |R| that two maps share, for each sample.

    |top_k(|a[i]|) ∩ top_k(|b[i]|)| / k. Ties at the k-th largest magnitude are broken by
    :func:`torch.topk`'s order, so maps with many equal magnitudes (e.g. zeros) can share fewer than they
    could.

    Args:
        a, b: attributions of the same shape (B, ...).
        k: how many features to compare, 1 <= k <= number of features per sample.

    Returns:
        Tensor(B) of values in {0, 1/k, ..., 1}, float64.
    """
    if a.shape != b.shape:
        raise ValueError(f"maps have different shapes {tuple(a.shape)} and {tuple(b.shape)}")
    a = a.reshape(a.shape[0], -1)
    b = b.reshape(b.shape[0], -1)
    features = a.shape[1]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= features:
        raise ValueError(f"k must be an int in 1..{features} (the features per sample), got {k!r}")
    chosen_a = torch.zeros(a.shape, dtype=torch.bool, device=a.device)
    chosen_a.scatter_(1, a.abs().topk(k, dim=1).indices, True)
    chosen_b = torch.zeros(b.shape, dtype=torch.bool, device=b.device)
    chosen_b.scatter_(1, b.abs().topk(k, dim=1).indices, True)
    return (chosen_a & chosen_b).sum(1).double() / k


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
