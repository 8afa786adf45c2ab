"""Complexity of attribution maps, per sample: sparseness (Gini index), complexity (entropy), effective complexity.

All three read the magnitudes |R| of a map flattened per sample (every non-batch dimension, channels included,
is a feature; see :func:`gradattr.metrics._maps.flat_map`), and are vectorised over the batch.

Against Quantus 0.6.0 (``quantus.Sparseness``, ``Complexity``, ``EffectiveComplexity``), whose defaults take
|R| and first divide each map by its largest magnitude (``normalise=True``):

- Sparseness adds 1e-7 to every |R_i| before the Gini index, which pulls every value towards 0; e.g. for a
  one-hot map over n features normalised to a peak of 1 the paper gives 1 − 1/n, Quantus
  (1 − 1/n)/(1 + n·1e-7) ≈ 1 − 1/n − (n − 1)·1e-7.
- Complexity computes −Σ p_i log(p_i + 1e-12): the entropy up to about 1e-12·n; an all-zero map gives NaN
  there (0/0), log n here (see :func:`complexity`).
- Effective complexity counts |R_i| > eps as here, but on the max-normalised map, so Quantus' eps is relative
  to each map's peak while ours is absolute (normalise first to reproduce Quantus).
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gradattr.metrics._maps import flat_map


def _magnitudes(attributions: Any) -> Tensor:
    """|R| as float64 (B, N), at least one feature per sample."""
    magnitudes = flat_map(attributions).abs()
    if magnitudes.shape[1] == 0:
        raise ValueError(f"attributions must have at least one feature per sample, got shape {tuple(magnitudes.shape)}")
    return magnitudes


def sparseness(attributions: Any) -> Tensor:
    """Gini index of |R| per sample (Chalasani et al., "Concise explanations of neural networks using adversarial
    training", ICML 2020).

    With a = |R| sorted ascending (a_1 <= ... <= a_n) over the n features of a sample:

        G = Σ_{i=1..n} (2i − n − 1) a_i / (n Σ_i a_i),

    0 for a uniform map, 1 − 1/n (the largest value) for a map with a single non-zero feature; higher is
    sparser. An all-zero map has no Σ a; it gets 0, the value of every constant map c·1, c > 0, and so the limit
    of the definition as c → 0 (the value Quantus' 1e-7 offset gives it too).

    Args:
        attributions: maps (B, ...), tensor or numpy array, finite.

    Returns:
        float64 Tensor (B,) in [0, 1 − 1/n].
    """
    a = _magnitudes(attributions)
    # On CPU, numpy's sort of a (B, N) float64 array is ~18x faster than torch.sort with one thread; same order.
    a = torch.from_numpy(np.sort(a.detach().numpy(), axis=1)) if a.device.type == "cpu" else a.sort(dim=1).values
    n = a.shape[1]
    weights = 2 * torch.arange(1, n + 1, dtype=a.dtype, device=a.device) - n - 1
    total = a.sum(1)
    gini = (weights * a).sum(1) / (n * total)
    return torch.where(total > 0, gini, torch.zeros_like(gini))


def complexity(attributions: Any) -> Tensor:
    """Entropy of the map's share of |R| per feature (Bhatt, Weller, Moura, "Evaluating and aggregating
    feature-based model explanations", IJCAI 2020).

    With p_i = |R_i| / Σ_j |R_j| over the n features of a sample:

        H = −Σ_i p_i log p_i   (natural log, 0 · log 0 = 0),

    0 for a map with a single non-zero feature, log n (the largest value) for a uniform map; lower is simpler.
    An all-zero map has no p; it gets log n, the value of every constant map and so the limit as it shrinks to
    zero (consistent with :func:`sparseness` = 0 for it).

    Args:
        attributions: maps (B, ...), tensor or numpy array, finite.

    Returns:
        float64 Tensor (B,) in [0, log n].
    """
    a = _magnitudes(attributions)
    total = a.sum(1, keepdim=True)
    p = a / total
    entropy = -torch.special.xlogy(p, p).sum(1)
    return torch.where(total.squeeze(1) > 0, entropy, torch.full_like(entropy, math.log(a.shape[1])))


def effective_complexity(attributions: Any, eps: float = 1e-5) -> Tensor:
    """Number of features whose attribution exceeds ``eps`` in magnitude (Nguyen & Martínez, "On quantitative
    aspects of model interpretability", 2020).

        C_eps = #{i : |R_i| > eps}

    The threshold is absolute: maps on different scales should be normalised first (Quantus divides each map by
    its largest magnitude by default).

    Args:
        attributions: maps (B, ...), tensor or numpy array, finite.
        eps: threshold, a finite real number >= 0.

    Returns:
        float64 Tensor (B,) of counts in 0..n.
    """
    if isinstance(eps, bool) or not isinstance(eps, Real):
        raise TypeError(f"eps must be a real number, got {type(eps).__name__}")
    if not (math.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be finite and >= 0, got {eps!r}")
    return (_magnitudes(attributions) > eps).sum(1).to(torch.float64)
