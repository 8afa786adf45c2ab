"""How :func:`gradattr.distributed.evaluate` scales: throughput with local Ray workers vs one process, and the
constants of the cost model in README.md ("Scaling: memory, GPU and Ray").

Workload (fixed): the paper's MLP adapted to the 8x8 digits (64-512-512-10, seeded random weights: timings do
not depend on training), the 448 first digits of scikit-learn's data (test split, then train), the paper's six
methods (Integrated Gradients with 50 steps), Sensitivity-n with 100 subsets per n on the default grid of n,
batches of 32. Measured:

1. one process on one torch thread: the per-sample cost c, and the reference table;
2. ``ray.init`` of a local Ray (the one-off start-up);
3. each configuration -- one process on all threads; Ray with (workers, threads per worker) = (1, 1),
   (1, all), (all, 1) -- in ``--rounds`` rounds, each round timing the one-thread process and then the
   configuration: median seconds, samples/s, and the median of the per-round speed-ups (so load from other
   processes, which comes and goes, affects both sides of a ratio alike). For Ray, a first call starts the
   workers (worker start-up = that call - the median); the rounds reuse them. Every table is checked against
   the single-process one (max |Δ| of the per-sample values);
4. shipping a model to the workers (``ray.put`` + every worker deserialising it): the workload model and a
   ~100 MB one, giving seconds per MB.

    python benchmarks/bench_distributed.py [--samples 448] [--rounds 5] [--quick]

The load average is printed before and after: on a shared machine, rerun when it is high.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

import gradattr
from gradattr import distributed
from gradattr.data import load_digits
from gradattr.evaluation import SensitivityTable
from gradattr.models import mnist_mlp

BATCH = 32
SETTINGS: dict[str, Any] = {
    "num_subsets": 100,
    "batch_size": BATCH,
    "method_options": {"integrated_gradients": {"steps": 50}},
    "progress": False,
}


@dataclass
class Run:
    """One configuration, timed in rounds paired with the single-process, one-thread run: medians of its
    seconds and of the per-round ratio (single-process seconds / its seconds), and its agreement with the
    single-process table."""

    label: str
    seconds: list[float]
    ratios: list[float]
    samples: int
    startup: float | None = None
    max_diff: float | None = None
    call: Callable[[], SensitivityTable] | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def throughput(self) -> float:
        return self.samples / self.median


def workload(samples: int) -> tuple[nn.Module, Tensor, Tensor]:
    """The seeded model and the first ``samples`` digits."""
    torch.manual_seed(0)
    model = mnist_mlp((1, 8, 8)).eval()
    data = load_digits()
    x = torch.cat([data.test_x, data.train_x])[:samples]
    y = torch.cat([data.test_y, data.train_y])[:samples]
    return model, x, y


def max_diff(table: SensitivityTable, reference: SensitivityTable) -> float:
    """Largest |Δ| between per-sample values (NaN where both are NaN counts as equal)."""
    worst = 0.0
    for name, result in reference.results.items():
        ours, theirs = table.results[name].per_sample, result.per_sample
        if not torch.equal(ours.isnan(), theirs.isnan()):
            return float("inf")
        finite = ~theirs.isnan()
        worst = max(worst, float((ours[finite] - theirs[finite]).abs().max()))
    return worst


def timed(call: Callable[[], SensitivityTable]) -> tuple[float, SensitivityTable]:
    start = time.perf_counter()
    table = call()
    return time.perf_counter() - start, table


def in_process(model: nn.Module, x: Tensor, y: Tensor, threads: int) -> SensitivityTable:
    """:func:`gradattr.evaluate` in this process on ``threads`` torch threads."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return gradattr.evaluate(model, (x, y), **SETTINGS)
    finally:
        torch.set_num_threads(previous)


def paired(
    label: str, contender: Callable[[], SensitivityTable], baseline: Run, rounds: int, reference: SensitivityTable,
) -> Run:  # fmt: skip
    """``rounds`` rounds of (baseline, contender): the contender's seconds and the per-round speed-up; the
    baseline's seconds are added to its run."""
    seconds, ratios, table = [], [], reference
    for _ in range(rounds):
        base, _ = timed(baseline.call)
        baseline.seconds.append(base)
        took, table = timed(contender)
        seconds.append(took)
        ratios.append(base / took)
    return Run(label, seconds, ratios, baseline.samples, max_diff=max_diff(table, reference))


def shipping(ray: Any, models: dict[str, nn.Module], workers: int) -> dict[str, tuple[float, float]]:
    """Model name -> (MB, median seconds to put it and have every worker deserialise it)."""
    pool = distributed._Pool.acquire(ray, distributed.WorkerSettings(workers=workers, threads_per_worker=1))
    found = {}
    for name, model in models.items():
        megabytes = sum(t.numel() * t.element_size() for t in model.state_dict().values()) / 1e6
        seconds = []
        for _ in range(3):
            start = time.perf_counter()
            pool.load(model, None)
            seconds.append(time.perf_counter() - start)
        pool.unload()
        found[name] = (megabytes, sorted(seconds)[1])
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=448)
    parser.add_argument("--rounds", type=int, default=5, help="rounds per configuration (medians are printed)")
    parser.add_argument("--quick", action="store_true", help="128 samples, one round, 2 workers only")
    args = parser.parse_args()
    samples, rounds = (128, 1) if args.quick else (args.samples, args.rounds)
    cores = os.cpu_count() or 1
    print(f"{platform.processor() or platform.machine()}, {cores} cores, torch {torch.__version__}, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
    model, x, y = workload(samples)

    def single() -> SensitivityTable:
        return in_process(model, x, y, 1)

    first, reference = timed(single)
    base = Run("one process, 1 thread", [first], [1.0], samples, call=single)
    runs = [base]
    if cores > 1 and not args.quick:
        runs.append(paired(f"one process, {cores} threads", lambda: in_process(model, x, y, cores), base, rounds,
                           reference))  # fmt: skip
    ray = distributed.import_ray()
    ray_start, _ = timed(lambda: ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False))
    configurations = [(cores, 1)] if args.quick else list(dict.fromkeys([(1, 1), (1, cores), (cores, 1)]))
    for workers, threads in configurations:

        def on_ray(workers: int = workers, threads: int = threads) -> SensitivityTable:
            return distributed.evaluate(model, (x, y), workers=workers, threads_per_worker=threads, **SETTINGS)

        distributed.release_workers()
        cold, _ = timed(on_ray)  # starts the workers
        run = paired(f"Ray, {workers} worker(s) x {threads} thread(s)", on_ray, base, rounds, reference)
        run.startup = cold - run.median
        runs.append(run)
        print(f"{run.label}: {run.median:.1f} s", flush=True)
    big = nn.Sequential(*(nn.Linear(2048, 2048) for _ in range(6)))  # 6 x 4.2 M parameters: ~100 MB
    shipped = shipping(ray, {"workload MLP": model, "6 x Linear(2048, 2048)": big}, cores)
    distributed.release_workers()
    ray.shutdown()

    print(f"\nworkload: {samples} digits, {', '.join(gradattr.PAPER_METHODS)}; 100 subsets per n; batches of {BATCH}; "
          f"medians of {rounds} round(s)")  # fmt: skip
    print("\n| configuration | seconds | samples/s | speed-up vs 1 process, 1 thread | worker start-up (s) | max |Δ| |")
    print("|---|---|---|---|---|---|")
    for run in runs:
        startup = f"{run.startup:.1f}" if run.startup is not None else "-"
        diff = f"{run.max_diff:.1e}" if run.max_diff is not None else "-"
        print(f"| {run.label} | {run.median:.1f} | {run.throughput:.1f} | {statistics.median(run.ratios):.2f}x "
              f"| {startup} | {diff} |")  # fmt: skip
    print(
        f"\nper-sample cost c (one thread): {base.median / samples * 1000:.1f} ms; ray.init (local): {ray_start:.1f} s"
    )
    for name, (megabytes, seconds) in shipped.items():
        print(f"shipping {name} ({megabytes:.1f} MB) to {cores} workers: {seconds:.2f} s")
    (small_mb, small_s), (big_mb, big_s) = shipped.values()
    rate = (big_mb - small_mb) / max(big_s - small_s, 1e-9)
    print(f"shipping: {small_s:.2f} s fixed + {1 / rate * 1000:.1f} ms per MB ({rate:.0f} MB/s)")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
