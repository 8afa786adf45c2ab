"""gradattr's robustness metrics beside Quantus 0.6.0: speed and values on the same model, batch and explanation.

Metrics: max- and avg-sensitivity (Yeh et al. 2019), the local Lipschitz estimate (Alvarez-Melis & Jaakkola
2018) and infidelity (Yeh et al. 2019). Both sides explain with gradattr's saliency (Quantus through its
``explain_func``), so only the metric machinery is compared; both get the same settings:

- MaxSensitivity / AvgSensitivity: K draws uniform in the L∞ ball of radius r, Frobenius norms, divided by
  ‖Φ(x)‖ (Quantus always divides; gradattr with ``normalise=True``);
- LocalLipschitzEstimate: K draws of N(0, σ²), Euclidean norms, raw attributions (Quantus ``normalise=False``);
- Infidelity: Quantus 0.6.0 removes the 4 x 4 blocks of the image one after another, cumulatively (block j
  perturbs blocks 0..j to the sample's minimum, "black"), and takes the MSE between Σ (x - x') Φ and the logit
  drop over the 49 steps. gradattr runs the same schedule through a perturbation callable, so the two values
  must agree to float32 rounding; gradattr's own Gaussian and square perturbations are timed beside it.

Values: Quantus draws its noise from NumPy's global generator; to compare the numbers, Quantus is run a second
time with a ``perturb_func`` that replays gradattr's documented draws (δ_k from a ``torch.Generator`` seeded
with ``seed``, k = 0..K-1), so both evaluate the same perturbed points and the values must agree to float32
rounding. Speed: Quantus is timed with its own noise; explained (perturbed) inputs per second for the
stability metrics, model evaluations per second for infidelity, the ratio gradattr / Quantus, and gradattr's
share of the floor: one ``gradattr.attribute`` call (or forward pass) on all rows at once.

Quantus imports torchvision, which does not import beside the CPU torch of the main environment, so this runs
in its own environment (``benchmarks/quantus_setup.sh`` makes /work/venv-peers):

    /work/venv-peers/bin/python benchmarks/bench_robustness_metrics.py [--quick] [--threads N]

Without Quantus the script runs gradattr's side only and says so. Threads are fixed (default 1) and the load
average printed: other processes on the machine inflate every timing, so read the ratios.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

import gradattr
from gradattr.metrics import avg_sensitivity, infidelity, local_lipschitz, max_sensitivity
from gradattr.models import mnist_mlp

try:
    import quantus
except ImportError as error:  # the main environment: no torchvision
    quantus = None
    QUANTUS_MISSING = f"{type(error).__name__}: {error}"

BATCH = 64
RADIUS = 0.02
SIGMA = 0.1
PATCH = 4
SETUP = "benchmarks/quantus_setup.sh && /work/venv-peers/bin/python benchmarks/bench_robustness_metrics.py"


def images(count: int) -> tuple[Tensor, str]:
    """``count`` Fashion-MNIST test images in [-1, 1], or seeded random images where the files are absent."""
    try:
        from gradattr.data import load_fashion_mnist

        return load_fashion_mnist().test_x[:count], "Fashion-MNIST test images"
    except (ImportError, OSError, ValueError) as error:
        generator = torch.Generator().manual_seed(0)
        reason = str(error).split(" (")[0]  # the first clause: which file or directory is missing
        return torch.rand(count, 1, 28, 28, generator=generator) * 2 - 1, f"seeded random images ({reason})"


def best_of(repeats: int, run: Callable[[], Any]) -> tuple[float, Any]:
    """Fastest of ``repeats`` timed runs, and the last result."""
    best, result = math.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


def saliency_for_quantus(model: nn.Module, inputs: np.ndarray, targets: np.ndarray, **_: Any) -> np.ndarray:
    """Quantus' ``explain_func``: gradattr's saliency, NumPy in and out."""
    return gradattr.attribute(model, torch.from_numpy(inputs), "saliency", torch.from_numpy(targets)).numpy()


def quantus_scores(metric: Any, model: nn.Module, x: Tensor, y: Tensor, a: Tensor) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = metric(
            model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a.numpy(), explain_func=saliency_for_quantus,
            device="cpu", batch_size=len(x), softmax=False,
        )  # fmt: skip
    return np.asarray(scores, dtype=np.float64)


class CumulativeBlocks:
    """Quantus 0.6.0's Infidelity schedule as a gradattr perturbation: call k sets the PATCH x PATCH blocks
    0..k (row-major over the block grid, all channels) to each sample's minimum."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        height, width = shape[-2:]
        rows = torch.arange(height).view(-1, 1) // PATCH
        columns = torch.arange(width).view(1, -1) // PATCH
        self.block = rows * math.ceil(width / PATCH) + columns  # (H, W) block id
        self.blocks = int(self.block.max()) + 1
        self.calls = 0

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        removed = self.block <= self.calls
        self.calls += 1
        black = x.reshape(len(x), -1).amin(1).view(-1, *(1,) * (x.dim() - 1))
        return torch.where(removed, black, x)


class ReplayDraws:
    """A Quantus ``perturb_func`` that returns x + δ_k for its k-th call, δ_k drawn as gradattr documents it:
    r (2 U - 1) (``uniform``) or σ N(0, 1) (``gaussian``) from a ``torch.Generator`` seeded with ``seed``."""

    def __init__(self, kind: str, scale: float, shape: tuple[int, ...], seed: int = 0) -> None:
        self.kind, self.scale, self.shape = kind, scale, shape
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, arr: np.ndarray, indices: np.ndarray, **_: Any) -> np.ndarray:
        if self.kind == "uniform":
            delta = (torch.rand(self.shape, generator=self.generator) * 2 - 1) * self.scale
        else:
            delta = torch.randn(self.shape, generator=self.generator) * self.scale
        return arr + delta.reshape(arr.shape).numpy()


@dataclass
class Row:
    metric: str
    work: int  # explained inputs (stability) or model evaluations (infidelity) per sample
    ours_seconds: float
    ours_values: np.ndarray
    theirs_seconds: float | None = None
    theirs_values: np.ndarray | None = None  # on the same perturbed points as gradattr

    @property
    def ours_rate(self) -> float:
        """gradattr's explained inputs (or model evaluations) per second."""
        return self.work * BATCH / self.ours_seconds

    @property
    def theirs_rate(self) -> float | None:
        """Quantus' explained inputs (or model evaluations) per second, if it ran."""
        return None if self.theirs_seconds is None else self.work * BATCH / self.theirs_seconds

    def max_relative_difference(self) -> float | None:
        """max |gradattr - Quantus| / |Quantus| over the samples (scale floored at 1e-6 of the largest)."""
        if self.theirs_values is None:
            return None
        scale = np.maximum(np.abs(self.theirs_values), np.abs(self.theirs_values).max() * 1e-6)
        return float((np.abs(self.ours_values - self.theirs_values) / scale).max())


def stability_rows(model: nn.Module, x: Tensor, y: Tensor, a: Tensor, samples: int, repeats: int) -> list[Row]:
    """Max-/avg-sensitivity and Lipschitz: gradattr and Quantus with the same K, r, σ and norms."""
    ours: dict[str, Callable[[], Tensor]] = {
        "max-sensitivity": lambda: max_sensitivity(model, x, "saliency", y, radius=RADIUS, samples=samples,
                                                   normalise=True),
        "avg-sensitivity": lambda: avg_sensitivity(model, x, "saliency", y, radius=RADIUS, samples=samples,
                                                   normalise=True),
        "local Lipschitz": lambda: local_lipschitz(model, x, "saliency", y, sigma=SIGMA, samples=samples),
    }  # fmt: skip
    rows = []
    for name, run in ours.items():
        run()  # warm-up
        seconds, values = best_of(repeats, run)
        rows.append(Row(name, samples, seconds, values.numpy()))
    if quantus is None:
        return rows
    classes = {
        "max-sensitivity": (quantus.MaxSensitivity, "uniform", RADIUS, {"lower_bound": RADIUS}),
        "avg-sensitivity": (quantus.AvgSensitivity, "uniform", RADIUS, {"lower_bound": RADIUS}),
        "local Lipschitz": (quantus.LocalLipschitzEstimate, "gaussian", SIGMA, {"perturb_std": SIGMA}),
    }
    for row in rows:
        metric_class, kind, scale, noise = classes[row.metric]
        common = {"nr_samples": samples, "normalise": False, "abs": False, "disable_warnings": True}
        metric = metric_class(**common, **noise)
        quantus_scores(metric, model, x[:4], y[:4], a[:4])  # warm-up
        row.theirs_seconds, _ = best_of(repeats, lambda m=metric: quantus_scores(m, model, x, y, a))
        replay = metric_class(**common, perturb_func=ReplayDraws(kind, scale, tuple(x.shape)))
        row.theirs_values = quantus_scores(replay, model, x, y, a)
    return rows


def infidelity_rows(model: nn.Module, x: Tensor, y: Tensor, a: Tensor, repeats: int) -> list[Row]:
    """Quantus' cumulative-block Infidelity and the same schedule in gradattr; gradattr's own perturbations."""
    steps = CumulativeBlocks(x.shape).blocks

    def ours_blocks() -> Tensor:
        return infidelity(model, x, a, y, perturbation=CumulativeBlocks(x.shape), samples=steps)

    ours_blocks()
    seconds, values = best_of(repeats, ours_blocks)
    rows = [Row(f"infidelity, {steps} cumulative {PATCH}x{PATCH} blocks", steps + 1, seconds, values.numpy())]
    if quantus is not None:
        metric = quantus.Infidelity(
            perturb_patch_sizes=[PATCH], n_perturb_samples=1, perturb_baseline="black", normalise=False, abs=False,
            disable_warnings=True,
        )  # fmt: skip
        quantus_scores(metric, model, x[:4], y[:4], a[:4])
        rows[0].theirs_seconds, rows[0].theirs_values = best_of(repeats, lambda: quantus_scores(metric, model, x, y, a))
    for perturbation in ("gaussian", "square"):
        run = lambda p=perturbation: infidelity(model, x, a, y, perturbation=p, samples=100)  # noqa: E731
        run()
        seconds, values = best_of(repeats, run)
        rows.append(Row(f"infidelity, gradattr {perturbation}, K=100", 101, seconds, values.numpy()))
    return rows


def attribution_floor(model: nn.Module, x: Tensor, y: Tensor, samples: int, repeats: int) -> float:
    """Explained inputs per second of one saliency call on all K·B rows: the least the stability metrics cost."""
    rows = x.repeat(samples, 1, 1, 1)
    targets = y.repeat(samples)
    gradattr.attribute(model, rows, "saliency", targets)
    seconds, _ = best_of(repeats, lambda: gradattr.attribute(model, rows, "saliency", targets))
    return len(rows) / seconds


def forward_floor(model: nn.Module, x: Tensor, copies: int, repeats: int) -> float:
    """Model evaluations per second of one no-grad forward pass on ``copies`` copies of the batch."""
    rows = x.repeat(copies, 1, 1, 1)
    with torch.no_grad():
        model(rows)
        seconds, _ = best_of(repeats, lambda: model(rows))
    return len(rows) / seconds


def print_table(title: str, rows: list[Row], floor: float, unit: str) -> None:
    print(f"\n{title}")
    header = f"{'metric':42} {unit + '/s gradattr':>18} {'Quantus':>9} {'ratio':>6} {'% floor':>8}"
    print(header + f" {'mean gradattr':>14} {'mean Quantus':>13} {'max rel. diff':>14}")
    for row in rows:
        ours_rate, theirs_rate, difference = row.ours_rate, row.theirs_rate, row.max_relative_difference()
        line = f"{row.metric:42} {ours_rate:18.0f}"
        if theirs_rate is None or difference is None or row.theirs_values is None:
            print(line + f" {'-':>9} {'-':>6} {100 * ours_rate / floor:7.0f}% {row.ours_values.mean():14.6g}")
            continue
        line += f" {theirs_rate:9.0f} {ours_rate / theirs_rate:5.1f}x {100 * ours_rate / floor:7.0f}%"
        line += f" {row.ours_values.mean():14.6g} {row.theirs_values.mean():13.6g} {difference:14.1e}"
        print(line)
    print(f"{'floor: one call on all rows':42} {floor:18.0f}")


@dataclass
class Measured:
    """One model's metrics: the stability rows with their floor (explained inputs/s) and the infidelity rows
    with theirs (model evaluations/s)."""

    source: str
    stability: list[Row]
    stability_floor: float
    infidelity: list[Row]
    infidelity_floor: float


METRIC_MODELS: tuple[tuple[str, Callable[[], nn.Module]], ...] = (
    ("MLP 784-128-10 (seeded, untrained)", lambda: mnist_mlp((1, 28, 28), 10, hidden=(128,))),
    ("MNIST MLP of the paper, 784-512-512-10 (seeded, untrained)", lambda: mnist_mlp((1, 28, 28), 10)),
)
"""The models compared, each built after ``torch.manual_seed(0)``."""


def measure_model(model: nn.Module, samples: int, repeats: int) -> Measured:
    """Every metric on ``model`` with gradattr and (where it imports) Quantus, and the two floors."""
    x, source = images(BATCH)
    y = model(x).argmax(1)
    a = gradattr.attribute(model, x, "saliency", y)
    stability = stability_rows(model, x, y, a, samples, repeats)
    stability_floor = attribution_floor(model, x, y, samples, repeats)
    infidelities = infidelity_rows(model, x, y, a, repeats)
    return Measured(source, stability, stability_floor, infidelities, forward_floor(model, x, 100, repeats))


def run_model(name: str, model: nn.Module, samples: int, repeats: int) -> None:
    measured = measure_model(model, samples, repeats)
    print(f"\n## {name}: {BATCH} {measured.source}, saliency, target = argmax at x")
    title = f"Stability, K = {samples} draws (r = {RADIUS} uniform L∞, σ = {SIGMA} Gaussian)"
    print_table(title, measured.stability, measured.stability_floor, "expl")
    print_table("Infidelity", measured.infidelity, measured.infidelity_floor, "fwd")
    if quantus is None:
        print(f"Quantus not importable here ({QUANTUS_MISSING}); to compare, run: {SETUP}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 timing repeat, K = 10 draws")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    versions = f"torch {torch.__version__}, gradattr {gradattr.__version__}"
    versions += f", quantus {quantus.__version__}" if quantus is not None else ", quantus: not importable"
    print(f"# Robustness metrics benchmark: {versions}")
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, threads={args.threads}, "
          f"load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    repeats, samples = (1, 10) if args.quick else (3, 50)
    for name, build in METRIC_MODELS:
        torch.manual_seed(0)
        run_model(name, build().eval(), samples, repeats)


if __name__ == "__main__":
    main()
