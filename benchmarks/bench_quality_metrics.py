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

IROF, ROAD and monotonicity (``--metrics new``) beside Quantus IROF, ROAD and Monotonicity: IROF on Quantus' own
SLIC superpixels given to gradattr, baseline 0 on both sides; ROAD at noise 0 and 0.01 (draws replayed), MoRF,
the same pixel counts; monotonicity (Arya et al.) one feature per step from baseline 0 on logits. Where Quantus
departs from the paper the script prints the hand-derived value for sample 0 (see the functions' docstrings).

    PYTHONPATH=src /work/peers-venv/bin/python benchmarks/bench_quality_metrics.py [--quick] [--threads N]
        [--metrics all|old|new|irof,road,...]

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
from gradattr.metrics import (
    deletion_auc,
    draw_subsets,
    faithfulness_correlation,
    insertion_auc,
    irof,
    monotonicity,
    region_perturbation,
    road,
)
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


def quantus_call(metric: Any, model: nn.Module, x: Tensor, y: Tensor, a: Tensor, softmax: bool) -> np.ndarray:
    """One Quantus metric call on the batch (CPU, one batch); ``np.trapz`` (removed in NumPy 2, still called by
    Quantus' IROF) is lent ``np.trapezoid`` meanwhile."""
    had_trapz = hasattr(np, "trapz")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if not had_trapz:
            np.trapz = np.trapezoid
        try:
            scores = metric(
                model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a.numpy(), device="cpu",
                batch_size=len(x), softmax=softmax,
            )  # fmt: skip
        finally:
            if not had_trapz:
                del np.trapz
    return np.asarray(scores, dtype=np.float64)


def slic_segments(x: Tensor) -> Tensor:
    """The SLIC superpixels Quantus IROF computes (``slic(img, start_label=0)`` on each HWC image), (B, H, W)."""
    from quantus.helpers.utils import get_superpixel_segments

    images = [np.moveaxis(image, 0, -1).astype("double") for image in x.numpy()]
    return torch.from_numpy(np.stack([get_superpixel_segments(img=i, segmentation_method="slic") for i in images]))


def hand_irof(model: nn.Module, x: Tensor, y: int, a: Tensor, segments: Tensor) -> float:
    """IROF of one image from Rieger & Hansen's definition: superpixels removed cumulatively (to 0), most
    relevant (mean attribution) first, p_c(x_k) / p_c(x_0) for k = 0..L integrated over k / L; 1 - area."""
    ids = segments.unique()
    means = torch.stack([a[:, segments == s].mean() for s in ids])
    point, scores = x.clone(), []
    with torch.no_grad():
        scores.append(float(model(point[None]).double().softmax(-1)[0, y]))
        for s in ids[means.argsort(descending=True, stable=True)]:
            point[:, segments == s] = 0.0
            scores.append(float(model(point[None]).double().softmax(-1)[0, y]))
    ratios, steps = [v / scores[0] for v in scores], len(ids)
    return 1.0 - sum((ratios[k] + ratios[k + 1]) / 2 / steps for k in range(steps))


def irof_row(name: str, model: nn.Module, x: Tensor, y: Tensor, a: Tensor, repeats: int) -> str:
    """IROF (Rieger & Hansen 2020) beside Quantus IROF: the same SLIC superpixels (Quantus' own) given to
    gradattr, baseline 0 on both sides, probabilities. Quantus reports L_b - Σ_k p_k / p_0 (trapezoid, dx = 1,
    k = 1..L_max, zero-padded past L_b); gradattr the normalised 1 - ∫_0^1 p_k / p_0. Quantus' number is
    recomputed from gradattr's curve and compared, and gradattr's IROF against the hand-derived value."""
    segments = slic_segments(x)
    run = lambda: irof(model, x, a, y, segments, baseline=0.0, max_elements=x.numel())  # noqa: E731
    ours_seconds, ours = best_of(repeats, run)
    hand = hand_irof(model, x[0], int(y[0]), a[0], segments[0])
    if quantus is None:
        return f"| {name} | irof | SLIC | {ours_seconds:.4f} | — | — | sample 0 {float(ours.per_sample[0]):.6f} |"
    metric = quantus.IROF(
        segmentation_method="slic", perturb_baseline=0.0, normalise=False, abs=False, return_aggregate=False,
        disable_warnings=True, display_progressbar=False,
    )  # fmt: skip
    theirs_seconds, theirs = best_of(repeats, lambda: quantus_call(metric, model, x, y, a, softmax=True))
    counts = np.array([len(np.unique(s)) for s in segments.numpy()])
    width = int(counts.max())
    ratios = (ours.curve[:, 1 : width + 1] / ours.curve[:, :1]).numpy()
    ratios = ratios * (np.arange(width)[None] < counts[:, None])  # Quantus' zero padding past L_b
    recomputed = counts - np.trapezoid(ratios, axis=1)
    diff = float(np.abs(recomputed - theirs).max())
    return (
        f"| {name} | irof vs IROF | SLIC {counts.min()}-{counts.max()} | {ours_seconds:.4f} | "
        f"{theirs_seconds:.4f} | {theirs_seconds / ours_seconds:.1f}x | Quantus' L - Σ from gradattr's curve: max abs "
        f"diff {diff:.2e}; sample 0: gradattr {float(ours.per_sample[0]):.6f} = hand {hand:.6f}, "
        f"Quantus {theirs[0]:.6f} (L = {counts[0]}) |"
    )


def road_row(name: str, model: nn.Module, x: Tensor, y: Tensor, a: Tensor, repeats: int) -> str:
    """ROAD (Rong et al. 2022), MoRF, timed and compared at noise 0, then compared at noise 0.01 with Quantus'
    ``np.random.randn`` draws replaced by gradattr's (:func:`road_replayed_noise`): the per-sample correct-class
    indicators. Quantus removes floor(784 p / 100) pixels, gradattr round(784 p): gradattr is given the fractions
    floor(784 p / 100) / 784 so that both remove the same pixels."""
    percents = [10, 30, 50, 70, 90]
    fractions = [int(784 * p / 100) / 784 for p in percents]
    run = lambda: road(model, x, a, y, fractions, noise=0.0, max_elements=x.numel())  # noqa: E731
    ours_seconds, ours = best_of(repeats, run)
    if quantus is None:
        accuracy = ", ".join(f"{float(v):.3f}" for v in ours.accuracy)
        return f"| {name} | road | {len(percents)} | {ours_seconds:.4f} | — | — | accuracy {accuracy} |"
    metric = quantus.ROAD(
        percentages=percents, noise=0.0, normalise=False, abs=False, return_aggregate=False, disable_warnings=True,
        display_progressbar=False,
    )  # fmt: skip
    captured, evaluate_batch = [], metric.evaluate_batch

    def capture(*args: Any, **kwargs: Any) -> Any:  # Quantus returns only the batch accuracies per percentage
        result = evaluate_batch(*args, **kwargs)
        captured.append(result[0])
        return result

    metric.evaluate_batch = capture
    theirs_seconds, accuracies = best_of(repeats, lambda: metric(
        model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a.numpy(), device="cpu", batch_size=len(x),
        softmax=True,
    ))  # fmt: skip
    theirs = np.asarray(captured[-1], dtype=np.float64)
    accuracy_diff = float(np.abs(ours.accuracy.numpy() - np.array(list(accuracies.values()))).max())
    correct = ours.correct.double().numpy()
    diff = float(np.abs(correct - theirs).max())
    accuracy = ", ".join(f"{float(v):.3f}" for v in ours.accuracy)
    noisy = road_replayed_noise(model, x, y, a, percents, fractions)
    return (
        f"| {name} | road vs ROAD (noise 0) | {len(percents)} | {ours_seconds:.4f} | {theirs_seconds:.4f} | "
        f"{theirs_seconds / ours_seconds:.1f}x | correct indicators max abs diff {diff:.0f} "
        f"({int((correct != theirs).sum())} of {correct.size} differ), accuracies max abs diff "
        f"{accuracy_diff:.0e}; accuracy {accuracy}; noise 0.01 replayed: {noisy} |"
    )


def road_replayed_noise(
    model: nn.Module, x: Tensor, y: Tensor, a: Tensor, percents: list[int], fractions: list[float]
) -> str:
    """ROAD at noise 0.01 with Quantus' ``np.random.randn`` draws replaced by gradattr's: Quantus calls it once
    per (percentage k, image b), for the removed pixels in its order ``argsort(-a)[:count]``; gradattr draws a
    (C, H, W) normal image from the seed (0, b, k) and adds it at the removed pixels."""
    from gradattr.metrics.road import _copy_seed, _noisy_imputation  # replays gradattr's seeds: private on purpose

    ours = road(model, x, a, y, fractions, noise=0.01, seed=0, max_elements=x.numel())
    order = np.argsort(-a.numpy().reshape(len(x), -1), axis=1)
    calls, original = [0], np.random.randn

    def replay(*shape: int) -> np.ndarray:
        k, b = divmod(calls[0], len(x))
        calls[0] += 1
        draw = torch.randn(
            x.shape[1:], generator=torch.Generator().manual_seed(_copy_seed(0, b, k)), dtype=torch.float64
        )
        picked = order[b, : int(784 * percents[k] / 100)]
        return draw.reshape(x.shape[1], -1).numpy()[:, picked].reshape(shape)

    metric = quantus.ROAD(
        percentages=percents, noise=0.01, normalise=False, abs=False, return_aggregate=False, disable_warnings=True,
        display_progressbar=False,
    )  # fmt: skip
    captured, evaluate_batch = [], metric.evaluate_batch

    def capture(*args: Any, **kwargs: Any) -> Any:
        result = evaluate_batch(*args, **kwargs)
        captured.append(result[0])
        return result

    metric.evaluate_batch = capture
    images, perturb = [], metric.perturb_func

    def keep(*args: Any, **kwargs: Any) -> np.ndarray:  # Quantus' imputed images, in call order
        images.append(perturb(*args, **kwargs))
        return images[-1]

    metric.perturb_func = keep
    np.random.randn = replay
    try:
        metric(
            model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a.numpy(), device="cpu", batch_size=len(x),
            softmax=True,
        )  # fmt: skip
    finally:
        np.random.randn = original
    theirs, correct = np.asarray(captured[-1], dtype=np.float64), ours.correct.double().numpy()
    image_diff = 0.0
    for call, image in enumerate(images):  # gradattr's imputation of the same pixels with its own seed
        k, b = divmod(call, len(x))
        removed = torch.zeros(x[0, 0].numel(), dtype=torch.bool)
        removed[torch.from_numpy(order[b, : int(784 * percents[k] / 100)])] = True
        mine = _noisy_imputation(x[b], removed.view(x.shape[2:]), 0.01, _copy_seed(0, b, k))
        image_diff = max(image_diff, float(np.abs(mine.numpy() - image).max()))
    return (
        f"{int((correct != theirs).sum())} of {correct.size} indicators differ, imputed images max abs diff "
        f"{image_diff:.1e} ({calls[0]} draws replayed)"
    )


def hand_monotonicity(model: nn.Module, x: Tensor, y: int, a: Tensor) -> tuple[float, float]:
    """Arya et al.'s monotonicity of one sample, an explicit loop: from the baseline 0, insert x's features one
    at a time in order of increasing attribution; 1 when the logit never drops. Also the share of non-drops."""
    flat, order = x.flatten(), a.flatten().argsort(stable=True)
    point, scores = torch.zeros_like(flat), []
    with torch.no_grad():
        for i in order:
            point[i] = flat[i]
            scores.append(float(model(point.view(1, *x.shape))[0, y]))
    steps = [scores[k + 1] >= scores[k] for k in range(len(scores) - 1)]
    return float(all(steps)), sum(steps) / len(steps)


def monotonicity_row(name: str, model: nn.Module, x: Tensor, y: Tensor, a: Tensor, repeats: int) -> str:
    """Monotonicity (Arya et al. 2019) beside Quantus Monotonicity: one feature per step (784 steps), baseline
    0, logits, raw attributions; per-sample indicators compared, and sample 0 derived by hand."""
    run = lambda: monotonicity(model, x, a, y, max_elements=x.numel())  # noqa: E731
    ours_seconds, ours = best_of(repeats, run)
    fraction = monotonicity(model, x, a, y, reduce="fraction", max_elements=x.numel())
    hand, hand_fraction = hand_monotonicity(model, x[0], int(y[0]), a[0])
    values = (
        f"sample 0: gradattr {float(ours[0]):.0f} (fraction {float(fraction[0]):.4f}) = hand {hand:.0f} "
        f"({hand_fraction:.4f}); gradattr mean {float(ours.mean()):.3f}"
    )
    if quantus is None:
        return f"| {name} | monotonicity | 784 | {ours_seconds:.4f} | — | — | {values} |"
    metric = quantus.Monotonicity(
        features_in_step=1, perturb_baseline=0.0, normalise=False, abs=False, return_aggregate=False,
        disable_warnings=True, display_progressbar=False,
    )  # fmt: skip
    theirs_seconds, theirs = best_of(repeats, lambda: quantus_call(metric, model, x, y, a, softmax=False))
    diff = float(np.abs(ours.numpy() - theirs).max())
    return (
        f"| {name} | monotonicity vs Monotonicity | 784 | {ours_seconds:.4f} | {theirs_seconds:.4f} | "
        f"{theirs_seconds / ours_seconds:.1f}x | max abs diff {diff:.0f}; Quantus mean {theirs.mean():.3f}; {values} |"
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


OLD_METRICS = ("deletion", "region", "correlation")
NEW_METRICS = ("irof", "road", "monotonicity")
NEW_ROWS = {"irof": irof_row, "road": road_row, "monotonicity": monotonicity_row}


def run_model(name: str, model: nn.Module, steps: int, repeats: int, metrics: tuple[str, ...]) -> list[str]:
    model.eval()
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(BATCH, 1, 28, 28, generator=generator)
    with torch.no_grad():
        y = model(x).argmax(1)
    a = gradattr.attribute(model, x, "gradient_x_input", y)
    rows = [NEW_ROWS[metric](name, model, x, y, a, repeats) for metric in NEW_METRICS if metric in metrics]
    if not set(OLD_METRICS) & set(metrics):
        return rows
    rows_budget = x.numel()  # 64 rows per forward pass, as Quantus
    ours_del, ours = best_of(repeats, lambda: deletion_auc(model, x, a, y, steps=steps, max_elements=rows_budget))
    ours_ins, _ = best_of(repeats, lambda: insertion_auc(model, x, a, y, steps=steps, max_elements=rows_budget))
    hand = hand_deletion_auc(model, x[0], int(y[0]), a[0], steps)
    rows = [
        f"| {name} | insertion_auc | {steps} | {ours_ins:.4f} | — | — | no Quantus twin |",
        region_row(name, model, x, y, a, repeats),
        correlation_row(name, model, x, y, a, repeats),
        *rows,
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
    parser.add_argument(
        "--metrics", default="all", help="'all', 'old' (deletion, region, correlation), 'new' (irof, road, "
        "monotonicity) or a comma-separated list of these names"
    )  # fmt: skip
    args = parser.parse_args()
    groups = {"all": OLD_METRICS + NEW_METRICS, "old": OLD_METRICS, "new": NEW_METRICS}
    metrics = groups.get(args.metrics) or tuple(args.metrics.split(","))
    torch.set_num_threads(args.threads)
    steps, repeats = (16, 1) if args.quick else (49, 3)
    print(f"threads {args.threads}, load average {os.getloadavg()}, batch {BATCH}, seeded untrained models")
    if quantus is None:
        print(f"Quantus not importable ({QUANTUS_MISSING}): gradattr's side only")
    print("| model | metric | L | gradattr s | Quantus s | ratio | values |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    torch.manual_seed(0)
    for name, build in (("MLP", lambda: mnist_mlp((1, 28, 28), 10)), ("CNN", lambda: mnist_cnn((1, 28, 28), 10))):
        for row in run_model(name, build(), steps, repeats, metrics):
            print(row)


if __name__ == "__main__":
    main()
