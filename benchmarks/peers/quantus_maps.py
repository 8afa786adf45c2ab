"""gradattr's complexity metrics beside Quantus 0.6.0 on the same attributions (issue 17), partial.

Covers pointing game, relevance mass and rank accuracy (Arras et al. 2022; random 10x10 box masks) and
sparseness (Gini index, Chalasani et al. 2020), complexity (entropy of |a|/Σ|a|, Bhatt et al. 2020) and
effective complexity (count of |a| > eps, Nguyen & Martínez 2020). Quantus is run with ``abs=True,
normalise=False`` so both sides read the same |a|; the values need no model output, so a small MNIST-sized MLP is
passed only to satisfy Quantus' call signature. Batch 64, attributions drawn once from a seeded normal.

Run in the peer venv: ``PYTHONPATH=src /work/peers-venv/bin/python benchmarks/peers/quantus_maps.py --out F``.
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import quantus
import torch

from gradattr.metrics import (
    attribution_localisation,
    complexity,
    effective_complexity,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
    sparseness,
    top_k_intersection,
)

NOTE = """
Quantus' RelevanceMassAccuracy divides the signed sum inside the mask by the signed total, Σ_mask a / Σ a, which
is unbounded when Σ a is near 0 (hence the large difference on signed maps). Arras et al. (2022) use positive
relevance, Σ_mask a⁺ / Σ a⁺: Quantus given a⁺ agrees with gradattr, and so does the explicit loop for sample 0.
"""


def _gini_by_hand(a: np.ndarray) -> float:
    """Σ_i (2i − n − 1) a_(i) / (n Σ a) over |a| sorted ascending, i = 1..n (Chalasani et al. 2020)."""
    v = np.sort(np.abs(a).ravel().astype(np.float64))
    n = v.size
    return float(sum((2 * (i + 1) - n - 1) * v[i] for i in range(n)) / (n * v.sum()))


def _entropy_by_hand(a: np.ndarray) -> float:
    """−Σ p_i ln p_i with p = |a| / Σ|a| (Bhatt et al. 2020)."""
    p = np.abs(a).ravel().astype(np.float64)
    p = p / p.sum()
    return float(-sum(q * math.log(q) for q in p if q > 0))


def _row(name: str, ours: torch.Tensor, theirs: list, hand: float, settings: str) -> tuple:
    """Max |gradattr − Quantus| over the batch and |gradattr − hand-derived| at sample 0."""
    ours_np = ours.double().numpy()
    diff = float(np.max(np.abs(ours_np - np.asarray(theirs, dtype=np.float64))))
    return name, settings, diff, abs(float(ours_np[0]) - hand)


def main() -> None:
    """Compare per-sample values and write a Markdown table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)).eval()
    x = torch.rand(64, 1, 28, 28)
    y = torch.randint(0, 10, (64,))
    a = torch.randn(64, 1, 28, 28)
    a[:, :, :4] = 0.0
    kw = {"model": model, "x_batch": x.numpy(), "y_batch": y.numpy(), "a_batch": a.numpy(), "device": "cpu"}
    settings = {"abs": True, "normalise": False, "disable_warnings": True}
    rows = []
    for name, ours, theirs, hand in (
        ("sparseness", sparseness(a), quantus.Sparseness(**settings)(**kw), _gini_by_hand(a[0].numpy())),
        ("complexity", complexity(a), quantus.Complexity(**settings)(**kw), _entropy_by_hand(a[0].numpy())),
        (
            "effective_complexity",
            effective_complexity(a, eps=1e-5),
            quantus.EffectiveComplexity(eps=1e-5, **settings)(**kw),
            float((np.abs(a[0].numpy()) > 1e-5).sum()),
        ),
    ):
        rows.append(_row(name, ours, theirs, hand, "abs=True, normalise=False"))
    s = torch.zeros(64, 1, 28, 28, dtype=torch.bool)
    for i in range(64):
        r, c = int(torch.randint(0, 18, ())), int(torch.randint(0, 18, ()))
        s[i, :, r : r + 10, c : c + 10] = True
    kw["s_batch"] = s.numpy().astype(np.float32)
    loc = {"abs": False, "normalise": False, "disable_warnings": True}
    for name, ours, theirs in (
        ("pointing_game", pointing_game(a, s), quantus.PointingGame(**loc)(**kw)),
        ("relevance_mass_accuracy", relevance_mass_accuracy(a, s), quantus.RelevanceMassAccuracy(**loc)(**kw)),
        ("relevance_rank_accuracy", relevance_rank_accuracy(a, s), quantus.RelevanceRankAccuracy(**loc)(**kw)),
        ("top_k_intersection (k=100)", top_k_intersection(a, s, k=100), quantus.TopKIntersection(k=100, **loc)(**kw)),
        (
            "attribution_localisation",
            attribution_localisation(a, s),
            quantus.AttributionLocalisation(positive_attributions=True, weighted=False, **loc)(**kw),
        ),
    ):
        rows.append(_row(name, ours, theirs, float("nan"), "abs=False, normalise=False"))
    a0, s0 = a[0, 0].double().numpy(), s[0, 0].numpy()
    hand_mass = sum(max(v, 0.0) for v in a0[s0]) / sum(max(v, 0.0) for v in a0.ravel())
    quantus_positive = quantus.RelevanceMassAccuracy(**loc)(**{**kw, "a_batch": a.clamp(min=0).numpy()})
    rows.append(
        _row("relevance_mass_accuracy", relevance_mass_accuracy(a, s), quantus_positive, hand_mass, "on a⁺, abs=False")
    )
    lines = [
        "| metric | Quantus class + settings | max abs diff vs Quantus (64 samples) "
        "| abs diff vs hand-derived (sample 0) |",
        "|---|---|---|---|",
    ]
    for name, settings_text, diff, hand_diff in rows:
        lines.append(f"| {name} | {settings_text} | {diff:.2e} | {hand_diff:.2e} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write("# gradattr vs Quantus 0.6.0: complexity and localisation metrics (partial)\n\n" + text + NOTE)


if __name__ == "__main__":
    main()
