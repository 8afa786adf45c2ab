"""gradattr's deletion / insertion AUC beside Quantus 0.6.0 PixelFlipping: values and speed (issue 17).

Deletion (Petsiuk et al., "RISE", BMVC 2018): remove the features in order of decreasing attribution, L equal chunks
of N / L features, and record S_c(x_k), the target's softmax probability, for k = 0..L; the AUC is the trapezoid
rule over the fractions k / L. Quantus PixelFlipping (Bach et al. 2015) runs the same removals with
``features_in_step = N / L``, ``perturb_baseline=0.0``, ``normalise=False``, ``abs=False``, ``softmax=True``; its
curve omits k = 0 and its AUC is ``np.trapz`` with dx = 1 over the L removal steps (``np.trapz`` is gone in NumPy 2,
so Quantus' ``return_auc_per_sample=True`` raises there). The curves (S_c(x_1..x_L)) must agree to float32 rounding;
the AUCs differ by construction, and the hand-derived value from the paper's definition is printed beside gradattr's
for sample 0. Insertion has no Quantus twin and is timed alone. Region perturbation (Samek et al. 2017) beside
Quantus RegionPerturbation: MoRF, the 49 4 x 4 patches one per step, baseline 0, logits, raw attributions; Quantus
returns the drops f(x_0) - f(x_k) for k = 1..G, gradattr the curve and AOPC = Σ_{k=0}^{G} (f(x_0) - f(x_k)) / (G +
1). Models are seeded and untrained (as in bench_robustness_metrics.py), batch 64, inputs seeded uniform in [0, 1],
attributions gradattr's gradient x input for both sides.

Forward evaluations: Quantus evaluates L batches of 64 rows, gradattr L + 1 (it also scores x itself, k = 0),
in passes of ``max_elements = 64 * 784`` input elements, i.e. the same 64-row forward batches as Quantus: on one
CPU thread the CNN's convolutions cost more per row in larger batches (cache), so gradattr's default budget
(131072 elements, 167 rows) is slower there.

    PYTHONPATH=src /work/peers-venv/bin/python benchmarks/bench_quality_metrics.py [--quick] [--threads N]

Without Quantus the script runs gradattr's side only and says so. Threads are fixed (default 1) and the load
average printed.
"""

from __future__ import annotations

import argparse
import math
import os
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

import gradattr
from gradattr.metrics import deletion_auc, draw_subsets, faithfulness_correlation, insertion_auc, region_perturbation
from gradattr.models import mnist_cnn, mnist_mlp

try:
    import quantus
except ImportError as error:  # the main environment: no torchvision
    quantus = None
    QUANTUS_MISSING = f"{type(error).__name__}: {error}"

BATCH = 64
PATCH = 4


def best_of(repeats: int, run: Callable[[], Any]) -> tuple[float, Any]:
    """Fastest of ``repeats`` timed runs, and the last result."""
    best, result = math.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


def quantus_curves(model: nn.Module, x: Tensor, y: Tensor, a: Tensor, steps: int) -> np.ndarray:
    """Quantus PixelFlipping's curves (B, L) with the paper's settings (see the module docstring)."""
    metric = quantus.PixelFlipping(
        features_in_step=x[0].numel() // steps, perturb_baseline=0.0, normalise=False, abs=False,
        disable_warnings=True, display_progressbar=False,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = metric(
            model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a.numpy(), device="cpu",
            batch_size=len(x), softmax=True,
        )  # fmt: skip
    return np.asarray(scores, dtype=np.float64)


def quantus_region_drops(model: nn.Module, x: Tensor, y: Tensor, a: Tensor) -> np.ndarray:
    """Quantus RegionPerturbation's drops f(x_0) - f(x_k), k = 1..G (B, G): MoRF, all G patches, logits."""
    metric = quantus.RegionPerturbation(
        patch_size=PATCH, order="morf", regions_evaluation=(28 // PATCH) ** 2, perturb_baseline=0.0,
        normalise=False, abs=False, disable_warnings=True, display_progressbar=False,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = metric(
            model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a.numpy(), device="cpu",
            batch_size=len(x), softmax=False,
        )  # fmt: skip
    return np.asarray(scores, dtype=np.float64)


def region_row(name: str, model: nn.Module, x: Tensor, y: Tensor, a: Tensor, repeats: int) -> str:
    """Region perturbation (Samek et al. 2017), MoRF over the 49 4 x 4 patches, one patch per step, beside
    Quantus: the drops f(x_0) - f(x_k) compared; AOPC = Σ_{k=1}^{G} drop_k / (G + 1) from Quantus' drops."""
    groups, regions = gradattr.patches((1, 28, 28), PATCH), (28 // PATCH) ** 2
    run = lambda: region_perturbation(model, x, a, y, groups, steps=regions, max_elements=x.numel())  # noqa: E731
    ours_seconds, ours = best_of(repeats, run)
    if quantus is None:
        aopc = float(ours.per_sample[0])
        return f"| {name} | region_perturbation | {regions} | {ours_seconds:.4f} | — | — | AOPC {aopc:.6f} |"
    theirs_seconds, theirs = best_of(repeats, lambda: quantus_region_drops(model, x, y, a))
    drops = (ours.curve[:, :1] - ours.curve[:, 1:]).numpy()
    diff = float(np.abs(drops - theirs).max())
    aopc = float(np.abs(ours.per_sample.numpy() - theirs.sum(1) / (regions + 1)).max())
    return (
        f"| {name} | region_perturbation vs RegionPerturbation | {regions} | {ours_seconds:.4f} | "
        f"{theirs_seconds:.4f} | {theirs_seconds / ours_seconds:.1f}x | drops max abs diff {diff:.2e}, "
        f"AOPC (Σ drops / (G + 1)) max abs diff {aopc:.2e} |"
    )


def quantus_correlation(model: nn.Module, x: Tensor, y: Tensor, a: Tensor, subsets: Tensor | None) -> np.ndarray:
    """Quantus FaithfulnessCorrelation (baseline 0, logits, raw attributions) per sample; with ``subsets``
    (R, |S|) its ``np.random.choice`` draws are replayed: run r gives every sample subset r, as gradattr."""
    runs, size = (100, 78) if subsets is None else subsets.shape
    metric = quantus.FaithfulnessCorrelation(
        nr_runs=runs, subset_size=size, perturb_baseline=0.0, normalise=False, abs=False, return_aggregate=False,
        disable_warnings=True,
        display_progressbar=False,
    )  # fmt: skip
    calls, original = [0], np.random.choice

    def replay(*_: Any, **__: Any) -> np.ndarray:
        row = subsets[calls[0] // len(x)].numpy()
        calls[0] += 1
        return row

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if subsets is not None:
            np.random.choice = replay
        try:
            scores = metric(
                model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a.numpy(), device="cpu",
                batch_size=len(x), softmax=False,
            )  # fmt: skip
        finally:
            np.random.choice = original
    return np.asarray(scores, dtype=np.float64)


def correlation_row(name: str, model: nn.Module, x: Tensor, y: Tensor, a: Tensor, repeats: int) -> str:
    """Faithfulness correlation (Bhatt et al. 2020), |S| = 78 of 784 pixels, 100 subsets, beside Quantus."""
    run = lambda: faithfulness_correlation(model, x, a, y, subset_size=78, max_elements=x.numel())  # noqa: E731
    ours_seconds, ours = best_of(repeats, run)
    if quantus is None:
        return f"| {name} | faithfulness_correlation | 100 | {ours_seconds:.4f} | — | — | — |"
    theirs_seconds, _ = best_of(repeats, lambda: quantus_correlation(model, x, y, a, None))
    replayed = quantus_correlation(model, x, y, a, draw_subsets(784, 78, 100))
    diff = float(np.abs(ours.numpy() - replayed).max())
    return (
        f"| {name} | faithfulness_correlation vs FaithfulnessCorrelation | 100 | {ours_seconds:.4f} | "
        f"{theirs_seconds:.4f} | {theirs_seconds / ours_seconds:.1f}x | subsets replayed: max abs diff {diff:.2e} |"
    )


def hand_deletion_auc(model: nn.Module, x: Tensor, y: int, a: Tensor, steps: int) -> float:
    """Deletion AUC of one sample from the paper's definition: an explicit loop over k = 0..L."""
    flat, order = x.flatten().clone(), a.flatten().argsort(descending=True, stable=True)
    chunk, scores = flat.numel() // steps, []
    for k in range(steps + 1):
        point = flat.clone()
        point[order[: k * chunk]] = 0.0
        with torch.no_grad():
            scores.append(float(model(point.view(1, *x.shape)).double().softmax(-1)[0, y]))
    return sum((scores[k] + scores[k + 1]) / 2 / steps for k in range(steps))


def run_model(name: str, model: nn.Module, steps: int, repeats: int) -> list[str]:
    model.eval()
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(BATCH, 1, 28, 28, generator=generator)
    with torch.no_grad():
        y = model(x).argmax(1)
    a = gradattr.attribute(model, x, "gradient_x_input", y)
    rows_budget = x.numel()  # 64 rows per forward pass, as Quantus
    ours_del, ours = best_of(repeats, lambda: deletion_auc(model, x, a, y, steps=steps, max_elements=rows_budget))
    ours_ins, _ = best_of(repeats, lambda: insertion_auc(model, x, a, y, steps=steps, max_elements=rows_budget))
    hand = hand_deletion_auc(model, x[0], int(y[0]), a[0], steps)
    rows = [
        f"| {name} | insertion_auc | {steps} | {ours_ins:.4f} | — | — | no Quantus twin |",
        region_row(name, model, x, y, a, repeats),
        correlation_row(name, model, x, y, a, repeats),
    ]
    if quantus is None:
        auc = float(ours.per_sample[0])
        rows.insert(0, f"| {name} | deletion_auc | {steps} | {ours_del:.4f} | — | — | AUC {auc:.6f}, hand {hand:.6f} |")
        return rows
    theirs_seconds, theirs = best_of(repeats, lambda: quantus_curves(model, x, y, a, steps))
    diff = float(np.abs(ours.curve[:, 1:].numpy() - theirs).max())
    quantus_auc = float(np.trapezoid(theirs[0]))
    rows.insert(
        0,
        f"| {name} | deletion_auc vs PixelFlipping | {steps} | {ours_del:.4f} | {theirs_seconds:.4f} | "
        f"{theirs_seconds / ours_del:.1f}x | curves max abs diff {diff:.2e}; sample 0: gradattr AUC "
        f"{float(ours.per_sample[0]):.6f} = hand {hand:.6f}, Quantus trapz over steps {quantus_auc:.6f} |",
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="L = 16 steps, 1 repeat")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    steps, repeats = (16, 1) if args.quick else (49, 3)
    print(f"threads {args.threads}, load average {os.getloadavg()}, batch {BATCH}, seeded untrained models")
    if quantus is None:
        print(f"Quantus not importable ({QUANTUS_MISSING}): gradattr's side only")
    print("| model | metric | L | gradattr s | Quantus s | ratio | values |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    torch.manual_seed(0)
    for name, build in (("MLP", lambda: mnist_mlp((1, 28, 28), 10)), ("CNN", lambda: mnist_cnn((1, 28, 28), 10))):
        for row in run_model(name, build(), steps, repeats):
            print(row)


if __name__ == "__main__":
    main()
