"""Speed of gradattr's complexity and localisation metrics beside Quantus 0.6.0, batch 64, MNIST-sized maps.

Partial (issue 17): sparseness, complexity, effective complexity, pointing game, relevance mass and rank accuracy.
These read attributions and masks only (no forward evaluations on either side), so one tiny MLP serves for
Quantus' call signature. Best of N wall seconds, torch threads fixed (default 1), ratio = Quantus / gradattr.
Without Quantus (dev venv) only gradattr's times are printed.

Run: ``PYTHONPATH=src /work/peers-venv/bin/python benchmarks/bench_map_metrics.py``.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

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


def best_of(fn: Callable[[], object], repeats: int) -> float:
    """Minimum wall time of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    """Time each metric on both sides and print a Markdown table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    a = torch.randn(64, 1, 28, 28)
    s = torch.zeros(64, 1, 28, 28, dtype=torch.bool)
    s[:, :, 9:19, 9:19] = True
    try:
        import quantus
    except ImportError:
        quantus = None
        print("Quantus not importable: gradattr only")
    ours = {
        "sparseness": lambda: sparseness(a),
        "complexity": lambda: complexity(a),
        "effective_complexity": lambda: effective_complexity(a),
        "pointing_game": lambda: pointing_game(a, s),
        "relevance_mass_accuracy": lambda: relevance_mass_accuracy(a, s),
        "relevance_rank_accuracy": lambda: relevance_rank_accuracy(a, s),
        "top_k_intersection": lambda: top_k_intersection(a, s, k=100),
        "attribution_localisation": lambda: attribution_localisation(a, s),
    }
    theirs: dict[str, Callable[[], object]] = {}
    if quantus is not None:
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)).eval()
        kw = {
            "model": model,
            "x_batch": torch.rand(64, 1, 28, 28).numpy(),
            "y_batch": torch.zeros(64, dtype=torch.int64).numpy(),
            "a_batch": a.numpy(),
            "s_batch": s.float().numpy(),
            "device": "cpu",
        }
        cx = {"abs": True, "normalise": False, "disable_warnings": True}
        loc = {"abs": False, "normalise": False, "disable_warnings": True}
        classes = {
            "sparseness": quantus.Sparseness(**cx),
            "complexity": quantus.Complexity(**cx),
            "effective_complexity": quantus.EffectiveComplexity(eps=1e-5, **cx),
            "pointing_game": quantus.PointingGame(**loc),
            "relevance_mass_accuracy": quantus.RelevanceMassAccuracy(**loc),
            "relevance_rank_accuracy": quantus.RelevanceRankAccuracy(**loc),
            "top_k_intersection": quantus.TopKIntersection(k=100, **loc),
            "attribution_localisation": quantus.AttributionLocalisation(positive_attributions=True, **loc),
        }
        theirs = {name: (lambda m=m: m(**kw)) for name, m in classes.items()}
    print(f"threads {args.threads}, best of {args.repeats}, load average {os.getloadavg()[0]:.2f}")
    print("| metric | gradattr s | Quantus s | ratio |\n|---|---|---|---|")
    for name, fn in ours.items():
        t_ours = best_of(fn, args.repeats)
        if name in theirs:
            t_theirs = best_of(theirs[name], args.repeats)
            print(f"| {name} | {t_ours:.5f} | {t_theirs:.5f} | {t_theirs / t_ours:.1f}x |")
        else:
            print(f"| {name} | {t_ours:.5f} | - | - |")


if __name__ == "__main__":
    main()
