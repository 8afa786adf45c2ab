"""Localisation of attribution maps against a ground-truth mask, per sample: pointing game, relevance mass and
relevance rank accuracy, top-k intersection, attribution localisation.

Maps and masks go through :func:`gradattr.metrics._maps.flat_map_and_mask`: the mask has the map's shape or
lacks its channel dimension (the map is then summed over channels), with or without the batch dimension; it
holds booleans or 0/1. Every metric is vectorised over the batch.

Choices the papers leave open, made here once for all of them:

- An empty mask (for any sample) is a ValueError: there is nothing to localise, and a NaN would silently drop
  the sample from a nan-mean (Quantus 0.6.0 returns NaN with a warning).
- Ties in the ranking-based metrics (pointing game, relevance rank accuracy, top-k intersection) are broken
  uniformly at random, in expectation: of the features tied at the k-th largest value, the places left in the
  top k are filled in proportion to how many of them lie in the mask. Without ties this is the plain count;
  with them the value does not depend on the features' order, and an uninformative (constant) map scores the
  mask's share, i.e. chance. Quantus counts any maximum inside the mask as a pointing-game hit (a constant map
  always hits) and breaks other ties by ``np.argsort``'s order.
- The value-based metrics take R as it is (signed): the top features are those of largest R, and the mass
  metrics sum its positive part R⁺ = max(R, 0), as the papers do. Apply ``abs`` first to rank by magnitude.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from gradattr.metrics._maps import flat_map_and_mask


def _map_and_mask(attributions: Any, mask: Any) -> tuple[Tensor, Tensor]:
    """R (B, N) float64 and the mask (B, N) bool, ValueError where a sample's mask is empty."""
    r, m = flat_map_and_mask(attributions, mask)
    empty = ~m.any(1)
    if bool(empty.any()):
        samples = empty.nonzero().flatten().tolist()
        raise ValueError(f"mask is empty for samples {samples}: there is nothing to localise")
    return r, m


def _expected_hits(r: Tensor, m: Tensor, k: Tensor) -> Tensor:
    """Expected number of mask features among the k[b] features of largest r[b], ties at the k-th largest value
    broken uniformly at random (float64 (B,))."""
    if r.device.type == "cpu":  # numpy's sort beats torch.topk ~10x at one thread; the k-th value is the same
        ascending = torch.from_numpy(np.sort(r.detach().numpy(), axis=1))
        kth = ascending.gather(1, (r.shape[1] - k).unsqueeze(1))
    else:
        kth = r.topk(int(k.max()), dim=1).values.gather(1, (k - 1).unsqueeze(1))
    above = r > kth
    tied = r == kth
    places_left = (k - above.sum(1)).to(torch.float64)
    tied_inside = (tied & m).sum(1).to(torch.float64) / tied.sum(1).to(torch.float64)
    return (above & m).sum(1).to(torch.float64) + places_left * tied_inside


def _positive_share_inside(r: Tensor, m: Tensor) -> Tensor:
    """Σ_mask R⁺ / Σ R⁺ per sample; NaN where Σ R⁺ = 0."""
    positive = r.clamp(min=0)
    return (positive * m).sum(1) / positive.sum(1)


def pointing_game(attributions: Any, mask: Any) -> Tensor:
    """Whether the map's maximum lies in the mask (Zhang et al., "Top-down neural attention by excitation
    backprop", IJCV 2018).

        hit = 1 if argmax_i R_i ∈ mask else 0

    Ties: with several features at the maximum, the value is the share of them inside the mask (the hit rate of
    a uniformly random pick among them), so a constant map scores the mask's share; 0 or 1 without ties.
    Quantus 0.6.0 counts a hit when any maximum is inside. The paper's 15-pixel tolerance around the mask is not
    applied: dilate the mask for it.

    Args:
        attributions: maps (B, ...), tensor or numpy array, finite.
        mask: ground truth, bool or 0/1, non-empty for every sample (see the module's docstring for shapes).

    Returns:
        float64 Tensor (B,) in [0, 1].
    """
    r, m = _map_and_mask(attributions, mask)
    return _expected_hits(r, m, torch.ones(r.shape[0], dtype=torch.int64, device=r.device))


def relevance_mass_accuracy(attributions: Any, mask: Any) -> Tensor:
    """Share of the positive relevance that falls inside the mask (Arras, Osman, Samek, "CLEVR-XAI: A benchmark
    dataset for the ground truth evaluation of neural network explanations", Information Fusion 2022).

        RMA = Σ_{i ∈ mask} R⁺_i / Σ_i R⁺_i,   R⁺ = max(R, 0)

    NaN for a sample without positive relevance (0/0: the map points nowhere). Quantus 0.6.0 sums R itself,
    negative values included (its default ``abs=False``), which can leave [0, 1]; e.g. R = (2, −1) with mask
    (1, 0) gives 2 there and 1 here.

    Args:
        attributions: maps (B, ...), tensor or numpy array, finite.
        mask: ground truth, bool or 0/1, non-empty for every sample.

    Returns:
        float64 Tensor (B,) in [0, 1], or NaN.
    """
    return _positive_share_inside(*_map_and_mask(attributions, mask))


def relevance_rank_accuracy(attributions: Any, mask: Any) -> Tensor:
    """Share of the |mask| features of largest relevance that lie in the mask (Arras, Osman, Samek 2022,
    "CLEVR-XAI").

        RRA = |top_K(R) ∩ mask| / K,   K = |mask|

    Features are ranked by R (signed), as in the paper; ties at the K-th value count in expectation (module
    docstring). Quantus 0.6.0 agrees without ties.

    Args:
        attributions: maps (B, ...), tensor or numpy array, finite.
        mask: ground truth, bool or 0/1, non-empty for every sample.

    Returns:
        float64 Tensor (B,) in [0, 1].
    """
    r, m = _map_and_mask(attributions, mask)
    size = m.sum(1)
    return _expected_hits(r, m, size) / size


def top_k_intersection(attributions: Any, mask: Any, k: int = 1000) -> Tensor:
    """Share of the k features of largest attribution that lie in the mask (Theiner, Müller-Budack, Ewerth,
    "Interpretable semantic photo geolocation", WACV 2022; Quantus ``TopKIntersection``, default k = 1000).

        TKI = |top_k(R) ∩ mask| / k

    Features are ranked by R (signed); ties at the k-th value count in expectation (module docstring). Quantus
    0.6.0 agrees without ties. Compares a map with a ground-truth mask; to compare two maps' top-k features,
    see :func:`gradattr.metrics.topk_intersection`.

    Args:
        attributions: maps (B, ...), tensor or numpy array, finite.
        mask: ground truth, bool or 0/1, non-empty for every sample.
        k: how many features to take, an int in 1..N (N = features per sample after any channel sum).

    Returns:
        float64 Tensor (B,) in [0, min(1, |mask| / k)].
    """
    r, m = _map_and_mask(attributions, mask)
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"k must be an int, got {type(k).__name__}")
    if not 1 <= k <= r.shape[1]:
        raise ValueError(f"k must be in 1..{r.shape[1]} (the features per sample), got {k}")
    return _expected_hits(r, m, torch.full((r.shape[0],), k, dtype=torch.int64, device=r.device)) / k


def attribution_localisation(attributions: Any, mask: Any, weighted: bool = False) -> Tensor:
    """Share of the positive relevance inside the mask, optionally weighted by the inverse of the mask's share of
    the input (Kohlbrenner et al., "Towards best practice in explaining neural network decisions with LRP",
    IJCNN 2020).

        μ = R_in / R_tot,   R_in = Σ_{i ∈ mask} R⁺_i,   R_tot = Σ_i R⁺_i
        μ_w = μ · S_tot / S_in   (weighted=True; S_in = |mask|, S_tot = N features)

    Unweighted it equals :func:`relevance_mass_accuracy`. μ_w is 1 for a map whose positive relevance is spread
    evenly over the input (chance), N / |mask| at best. NaN without positive relevance. The paper evaluates
    only objects covering at most a set share of the image; filter masks by size for that. Quantus 0.6.0
    differs: it sums |R| by default (``abs=True``; R⁺ with ``positive_attributions=True``), and weights by
    S_in / S_tot, the mask's share itself, not its inverse, and takes S_tot = ``x_batch[2:].size``, the values of
    the batch from its third sample on (one input's worth only for a batch of 3); e.g. μ = 0.5 with a mask on a
    quarter of the input gives μ_w = 2 here, 0.125 in Quantus at best.

    Args:
        attributions: maps (B, ...), tensor or numpy array, finite.
        mask: ground truth, bool or 0/1, non-empty for every sample.
        weighted: multiply by S_tot / S_in.

    Returns:
        float64 Tensor (B,): in [0, 1], or [0, N / |mask|] when weighted; NaN without positive relevance.
    """
    if not isinstance(weighted, bool):
        raise TypeError(f"weighted must be a bool, got {type(weighted).__name__}")
    r, m = _map_and_mask(attributions, mask)
    share = _positive_share_inside(r, m)
    if weighted:
        return share * r.shape[1] / m.sum(1)
    return share
