"""gradattr's Sensitivity-n beside Quantus 0.6.0's ``SensitivityN``: speed, and the score of exact attributions.

1. Speed, same model, data and number of forward passes per sample, on three models of increasing cost
   (linear 784-10, MLP 784-128-10, the paper's MNIST MLP 784-512-512-10; seeded weights), 64 Fashion-MNIST
   test images scaled to [-1, 1] (random images where the files are absent), Gradient*Input attributions.
   Quantus removes one feature per step, 784 steps: 785 model evaluations per sample. gradattr runs its
   default grid of n (unique(round(geomspace(1, 0.8 N, 20)))) with the number of subsets per n chosen to make
   as many evaluations per sample. Printed: seconds per sample, forward evaluations (model rows) per second,
   the ratio (target: gradattr >= 3x Quantus), and the floor: the bare model's rows per second, which bounds
   any implementation; gradattr's share of it shows its own overhead.
2. Scores of a linear model S(x) = W x + b with exact Gradient*Input attributions, where Sensitivity-n holds
   for every subset by construction: gradattr's correlation at every n, Quantus' with its defaults (softmax,
   normalised attributions, per-sample minimum as the "black" baseline) and with logits and raw attributions.
3. The paper's qualitative result (Ancona et al., ICLR 2018, Fig. 3-4) on the digits MLP trained through
   :func:`gradattr.training.train_or_load`: every method, all 450 test digits.
4. A dataset-scale run: :func:`gradattr.evaluate` on 1000 Fashion-MNIST images (784 features) with four methods,
   its time and the process's peak memory.

Quantus imports torchvision, which does not import beside the CPU torch 2.13.0 of the main environment, so
the comparison runs in its own environment:

    benchmarks/quantus_setup.sh            # makes /work/venv-peers: torch 2.14.1, torchvision 0.29.1, quantus
    /work/venv-peers/bin/python benchmarks/bench_sensitivity.py [--quick] [--threads N]

Without Quantus the script still runs the gradattr parts and says so. Threads are fixed (default 1) and the
load average printed: other processes on the machine inflate every timing, so read the ratios.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import resource
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

import gradattr
from gradattr.data import load_digits
from gradattr.metrics.sensitivity import ELEMENTS_PER_FORWARD, SubsetPlan, default_ns, forwards_per_sample, measure
from gradattr.models import mnist_mlp
from gradattr.training import train_or_load

try:
    import quantus
except ImportError as error:  # the main environment: no torchvision
    quantus = None
    QUANTUS_MISSING = f"{type(error).__name__}: {error}"

BATCH = 64
SETUP = "benchmarks/quantus_setup.sh && /work/venv-peers/bin/python benchmarks/bench_sensitivity.py"


def fashion_images(count: int) -> tuple[Tensor, Tensor, str]:
    """``count`` Fashion-MNIST test images in [-1, 1] with labels, or seeded random images if absent."""
    try:
        from gradattr.data import load_fashion_mnist

        data = load_fashion_mnist()
        return data.test_x[:count], data.test_y[:count], "Fashion-MNIST test images"
    except (ImportError, OSError, ValueError) as error:
        generator = torch.Generator().manual_seed(0)
        x = torch.rand(count, 1, 28, 28, generator=generator) * 2 - 1
        return x, torch.randint(0, 10, (count,), generator=generator), f"random images ({error})"


def best_of(repeats: int, run: Callable[[], Any]) -> tuple[float, Any]:
    """Fastest of ``repeats`` timed runs (after none: the first run includes warm-up only if repeats == 1)."""
    best, result = math.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


def quantus_metric(**options: Any) -> Any:
    return quantus.SensitivityN(
        features_in_step=1, n_max_percentage=0.8, return_aggregate=False, disable_warnings=True,
        display_progressbar=False, **options,
    )  # fmt: skip


def quantus_scores(model: nn.Module, x: Tensor, y: Tensor, a: Tensor, softmax: bool, **options: Any) -> np.ndarray:
    """Quantus' SensitivityN over one batch: one score per n = 1, 2, ... (a correlation across samples)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = quantus_metric(**options)(
            model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a.numpy(), softmax=softmax, device="cpu",
            batch_size=len(x),
        )  # fmt: skip
    return np.asarray(scores, dtype=np.float64)


def floor_rate(model: nn.Module, x: Tensor, rows: int, repeats: int) -> float:
    """Forward evaluations per second of the bare model, ``rows`` copies of the inputs per pass (no_grad)."""
    batch = x.repeat((max(1, rows // len(x)) + 1, *(1,) * (x.dim() - 1)))[:rows]
    passes = max(3, 20_000 // rows)
    with torch.no_grad():
        model(batch)
        seconds, _ = best_of(repeats, lambda: [model(batch) for _ in range(passes)])
    return rows * passes / seconds


@dataclass
class Speed:
    """One model's Sensitivity-n timings: (label, seconds for the batch, forward evaluations per sample) per
    implementation (gradattr first, then Quantus where it imports), and the floor's rows per second."""

    name: str
    ns: int  # values of n (gradattr)
    subsets: int  # subsets per n (gradattr)
    features: int  # removal steps (Quantus)
    rows: list[tuple[str, float, int]]
    floor: float

    def rate(self, i: int) -> float:
        """Forward evaluations (model rows) per second of implementation ``i``."""
        _, seconds, forwards = self.rows[i]
        return forwards * BATCH / seconds

    @property
    def ratio(self) -> float | None:
        """gradattr / Quantus, forward evaluations per second (None without Quantus)."""
        return self.rate(0) / self.rate(1) if len(self.rows) == 2 else None


SPEED_MODELS: tuple[tuple[str, Callable[[], nn.Module]], ...] = (
    ("Linear 784-10", lambda: nn.Sequential(nn.Flatten(), nn.Linear(784, 10))),
    ("MLP 784-128-10", lambda: mnist_mlp((1, 28, 28), 10, hidden=(128,))),
    ("MNIST MLP of the paper, 784-512-512-10 (seeded, untrained)", lambda: mnist_mlp((1, 28, 28), 10)),
)
"""The models of part 1, built in this order after one ``torch.manual_seed(0)``."""


def measure_speed(name: str, model: nn.Module, repeats: int) -> Speed:
    """Same model, inputs, attributions and forward evaluations per sample for both implementations."""
    x, y, _ = fashion_images(BATCH)
    attributions = gradattr.attribute(model, x, method="gradient_x_input", target=y)
    features = x[0].numel()
    quantus_forwards = features + 1  # one per removal step, plus the unperturbed input
    ns = default_ns(features, fraction=0.8)  # the grid of the Quantus comparison: n = N has no correlation
    plan = SubsetPlan.draw(features, ns, round((quantus_forwards - 1) / len(ns)), seed=0)

    def ours() -> None:
        measure(model, x, {"gradient_x_input": attributions}, target=y, plan=plan)

    ours()  # warm-up
    rows = [("gradattr sensitivity_n", *best_of(repeats, ours)[:1], forwards_per_sample(plan))]
    if quantus is not None:
        quantus_scores(model, x[:4], y[:4], attributions[:4], softmax=False)  # warm-up
        theirs = best_of(repeats, lambda: quantus_scores(model, x, y, attributions, softmax=False))[0]
        rows.append(("quantus SensitivityN", theirs, quantus_forwards))
    ours_rows = max(1, ELEMENTS_PER_FORWARD // features // plan.num_subsets) * plan.num_subsets  # rows per pass
    floor = max(floor_rate(model, x, BATCH, repeats), floor_rate(model, x, ours_rows, repeats))
    return Speed(name, len(ns), plan.num_subsets, features, rows, floor)


def speed(name: str, model: nn.Module, repeats: int) -> None:
    """One row per implementation: same model, inputs, attributions and forward evaluations per sample."""
    result = measure_speed(name, model, repeats)
    print(f"\n{name}: {result.ns} values of n x {result.subsets} subsets (gradattr), {result.features} steps "
          "(Quantus)")  # fmt: skip
    print(f"{'':24} {'s/sample':>10} {'fwd/sample':>11} {'fwd/s':>10} {'% of floor':>11}")
    for i, (label, seconds, forwards) in enumerate(result.rows):
        rate = result.rate(i)
        print(f"{label:24} {seconds / BATCH:10.4f} {forwards:11d} {rate:10.0f} {100 * rate / result.floor:10.0f}%")
    print(f"{'floor: bare forward':24} {'':10} {'':11} {result.floor:10.0f} {100:10.0f}%")
    if result.ratio is not None:
        verdict = "PASS" if result.ratio >= 3 else "MISS"
        bound = result.floor / result.rate(1)
        print(f"gradattr / Quantus, forward evaluations per second: {result.ratio:.1f}x (target >= 3x: {verdict}); "
              f"at most {bound:.1f}x is possible on this model (the floor over Quantus)")  # fmt: skip
    else:
        print(f"Quantus not importable here ({QUANTUS_MISSING}); to compare, run: {SETUP}")


def speeds(repeats: int) -> None:
    _, _, source = fashion_images(BATCH)
    print(f"\n## 1. Speed: {BATCH} {source}, Gradient*Input attributions, best of {repeats}")
    torch.manual_seed(0)
    for name, build in SPEED_MODELS:
        speed(name, build().eval(), repeats)


def linear_scores() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).eval()
    x, y, source = fashion_images(BATCH)
    exact = gradattr.attribute(model, x, method="gradient_x_input", target=y)
    ours = gradattr.sensitivity_n(model, x, exact, target=y, ns=sorted({*default_ns(x[0].numel()), 10}))
    print(f"\n## 2. Linear model, exact Gradient*Input attributions, {BATCH} {source}")
    at = {n: float(v) for n, v in zip(ours.ns, ours.correlation, strict=True)}
    print(f"gradattr: min over n = {min(at.values()):.6f}, at n=10: {at.get(10, float('nan')):.6f} "
          f"(n = {ours.ns[0]}..{ours.ns[-1]}, {len(ours.ns)} values)")  # fmt: skip
    if quantus is None:
        print(f"Quantus not importable here; to compare, run: {SETUP}")
        return
    for label, softmax, options in (
        ("Quantus defaults (softmax, normalise, black)", True, {}),
        ("Quantus logits, raw attributions, black", False, {"normalise": False}),
    ):
        scores = quantus_scores(model, x, y, exact, softmax=softmax, **options)
        print(f"{label:46}: at n=10 {scores[9]:.4f}, n=1 {scores[0]:.4f}, n={len(scores)} {scores[-1]:.4f}, "
              f"mean over n {np.nanmean(scores):.4f}")  # fmt: skip


def paper_result() -> None:
    data = load_digits()
    model, trained = train_or_load(
        "digits-mlp", lambda: mnist_mlp(data.input_shape, data.num_classes), data, seed=0, progress=False
    )
    start = time.perf_counter()
    table = gradattr.evaluate(model, (data.test_x, data.test_y), progress=False)
    seconds = time.perf_counter() - start
    names, ns, means = table.pivot()
    print(f"\n## 3. Paper's result: digits MLP 64-512-512-10 (test accuracy {trained.test_accuracy:.3f}), "
          f"{table.samples} test digits, 100 subsets per n, {seconds:.1f} s")  # fmt: skip
    print(table)
    first = {m: means[i, 0] for i, m in enumerate(names)}
    last = {m: means[i, -1] for i, m in enumerate(names)}
    best_first = max(first, key=first.get)
    print(f"n=1: highest is {best_first} ({first[best_first]:.4f}); n={ns[-1]}: occlusion {last['occlusion']:.4f}, "
          f"integrated_gradients {last['integrated_gradients']:.4f}, deeplift {last['deeplift']:.4f}")  # fmt: skip
    holds = best_first == "occlusion" and last["occlusion"] < min(last["integrated_gradients"], last["deeplift"])
    print(f"Occlusion-1 best at n=1 and below IG/DeepLIFT at the largest n: {'yes' if holds else 'NO'}")


def dataset_run(samples: int) -> None:
    torch.manual_seed(0)
    model = mnist_mlp((1, 28, 28), 10).eval()
    x, y, source = fashion_images(samples)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    methods = ["gradient_x_input", "integrated_gradients", "deeplift", "occlusion"]
    start = time.perf_counter()
    table = gradattr.evaluate(
        model, (x, y), methods, method_options={"integrated_gradients": {"steps": 20}}, progress=False
    )
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    forwards = table.samples * (1 + 100 * len(table.ns))
    what = f"{table.samples} {source} (784 features), untrained MNIST MLP, {len(methods)} methods"
    print(f"\n## 4. gradattr.evaluate: {what}")
    print(f"{seconds:.1f} s in all ({', '.join(f'{k} {v:.1f} s' for k, v in table.seconds.items())})")
    print(f"{forwards / table.seconds['sensitivity-n']:.0f} Sensitivity-n forwards/s; "
          f"peak RSS of the process {before:.0f} MiB before, {peak:.0f} MiB after")  # fmt: skip
    print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 timing repeat, 100 samples in part 4")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    versions = f"torch {torch.__version__}, gradattr {gradattr.__version__}"
    versions += f", quantus {quantus.__version__}" if quantus is not None else ", quantus: not importable"
    print(f"# Sensitivity-n benchmark: {versions}")
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, threads={args.threads}, "
          f"load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    speeds(repeats=1 if args.quick else 3)
    linear_scores()
    paper_result()
    dataset_run(100 if args.quick else 1000)


if __name__ == "__main__":
    main()
