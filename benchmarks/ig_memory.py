"""Peak memory of Integrated Gradients (100 steps) on a batch of 64, at gradattr's default and given budgets.

Each measurement runs in a fresh process: ``bench_core``'s seeded model and batch, one forward pass and a 2-row
IG(1) call first (lazy initialisation of kernels and code paths, outside the measurement), then the peak resident
memory of ``gradattr.attribute(model, x, "integrated_gradients", target, steps=100[, max_memory=BUDGET])`` over
the resident memory before it. On Linux the peak is read from /proc/self/status (VmHWM, reset to the current RSS
just before the call through /proc/self/clear_refs); elsewhere ``resource.getrusage(RUSAGE_SELF).ru_maxrss``
after minus before. (``ru_maxrss`` is not used on Linux: a child inherits its parent's peak in it across
fork + exec, which hides the child's own peak when the parent is larger.) A forward pre-hook on the model counts
the rows of every pass (2 and 4 rows: the budget's measuring passes). ``max_memory=`` is used where
``gradattr.attribute`` takes it. The peak varies by a few MiB from process to process (the allocator), so each
model and budget runs ``--runs`` times (default 3) and the largest peak is the one held against the budget.

Usage: python benchmarks/ig_memory.py [--budgets 32MB,128MB] [--runs 3] [--threads N]    (run.py uses it too)
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

import gradattr
from bench_core import WORKLOADS, prepare

STEPS = 100
BUDGETS = ("32MB", "128MB")
"""Budgets below what the default chunking uses on the ResNet-like net (64 rows per pass)."""


@dataclass
class Peak:
    """One model at one budget: the call's peak RSS growth, the rows per pass, seconds (or the error)."""

    model: str
    budget: str  # "default" or a max_memory string
    budget_bytes: int | None  # the default budget where gradattr exposes it
    peaks_mib: list[float] = field(default_factory=list)  # one per fresh process: peak during the call - before
    baseline_mib: float = math.nan
    passes: dict[int, int] = field(default_factory=dict)  # rows per pass -> number of passes
    seconds: float = math.nan
    how: str = ""  # how the peak was read
    error: str = ""

    @property
    def peak_mib(self) -> float:
        """The largest peak over the runs (the allocator makes it vary by a few MiB from process to process)."""
        return max(self.peaks_mib, default=math.nan)

    @property
    def within(self) -> bool | None:
        """Whether the peak stayed within the budget in every run (None: unknown budget or no measurement)."""
        if self.budget_bytes is None or not self.peaks_mib:
            return None
        return self.peak_mib * 2**20 <= self.budget_bytes

    def peaks_text(self) -> str:
        """ "34.8 (28.1–34.8, 3 runs)": the largest peak, and the range where there are several runs."""
        if not self.peaks_mib:
            return "-"
        if len(self.peaks_mib) == 1:
            return f"{self.peak_mib:.1f}"
        return f"{self.peak_mib:.1f} ({min(self.peaks_mib):.1f}–{self.peak_mib:.1f}, {len(self.peaks_mib)} runs)"


def max_memory_supported() -> bool:
    """Whether ``gradattr.attribute`` takes ``max_memory=``."""
    try:
        gradattr.attribute(nn.Linear(2, 1), torch.ones(1, 2), "saliency", max_memory="1GB")
    except TypeError:
        return False
    return True


def budget_bytes(budget: str) -> int | None:
    """Bytes of ``budget``; for "default", gradattr's default budget on the CPU where this version exposes it."""
    try:
        from gradattr.memory import budget as default_budget
        from gradattr.memory import parse_memory
    except ImportError:
        return None
    return default_budget(torch.device("cpu")) if budget == "default" else parse_memory(budget)


def _status_mib(name: str) -> float | None:
    """A field of /proc/self/status (``VmRSS``, ``VmHWM``) in MiB, or None off Linux."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(name + ":"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None


def _reset_peak() -> bool:
    """Set this process's peak RSS (VmHWM) to its current RSS (Linux: ``echo 5 > /proc/self/clear_refs``)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
    except OSError:
        return False
    return _status_mib("VmHWM") is not None


def measure_here(work_name: str, budget: str) -> dict[str, Any]:
    """The measurement itself, in a fresh process.

    The peak is VmHWM after the call minus VmRSS before it, with VmHWM reset just before the call where
    Linux allows it. ``ru_maxrss`` is the fallback only: Linux carries the parent's peak RSS over ``fork`` +
    ``exec`` into the child's ``ru_maxrss``, so a child of a large process (run.py) would read that parent's
    peak as its own."""
    work = next(w for w in WORKLOADS if w.name == work_name)
    prepared = prepare(work, quick=True)
    model, x, target = prepared.model, prepared.x, prepared.target
    options: dict[str, Any] = {} if budget == "default" else {"max_memory": budget}
    with torch.no_grad():
        model(x)
    gradattr.attribute(model, x[:2], "integrated_gradients", target[:2], steps=1, **options)
    passes: list[int] = []
    model.register_forward_pre_hook(lambda _module, args: passes.append(int(args[0].shape[0])))
    if _reset_peak():
        how, before = "VmHWM - VmRSS before (peak reset)", _status_mib("VmRSS")
    else:
        how, before = "ru_maxrss after - before", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    gradattr.attribute(model, x, "integrated_gradients", target, steps=STEPS, **options)
    seconds = time.perf_counter() - start
    after = (
        _status_mib("VmHWM") if how.startswith("VmHWM") else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    return {"baseline_mib": before, "peak_mib": after - before, "seconds": seconds, "passes": dict(Counter(passes)),
            "how": how}  # fmt: skip


def measure(work_name: str, budget: str, threads: int = 1, runs: int = 1) -> Peak:
    """IG(STEPS) on ``bench_core``'s workload ``work_name`` at ``budget``, in ``runs`` fresh processes."""
    peak = Peak(work_name, budget, budget_bytes(budget))
    command = [sys.executable, str(Path(__file__).resolve()), "--child", work_name, budget, "--threads", str(threads)]
    for _ in range(runs):
        done = subprocess.run(command, capture_output=True, text=True, cwd=Path(__file__).parent, check=False)
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if done.returncode or not lines:
            peak.error = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1][:160]
            return peak
        result = json.loads(lines[-1].removeprefix("RESULT "))
        peak.peaks_mib.append(result["peak_mib"])
        peak.baseline_mib, peak.seconds, peak.how = result["baseline_mib"], result["seconds"], result["how"]
        peak.passes = {int(rows): count for rows, count in result["passes"].items()}
    return peak


def budgets(requested: tuple[str, ...] = BUDGETS) -> list[str]:
    """ "default" and, where ``max_memory=`` exists, the requested budgets."""
    return ["default", *requested] if max_memory_supported() else ["default"]


def passes_text(passes: dict[int, int]) -> str:
    """ "64×100, 4×1": rows per pass × number of passes, largest first."""
    return ", ".join(f"{rows}×{count}" for rows, count in sorted(passes.items(), reverse=True)) or "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", default=",".join(BUDGETS), help="max_memory budgets besides the default")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3, help="fresh processes per model and budget (default 3)")
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "BUDGET"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        print("RESULT " + json.dumps(measure_here(*args.child)))
        return
    chosen = budgets(tuple(b for b in args.budgets.split(",") if b))
    if chosen == ["default"]:
        print("gradattr.attribute has no max_memory= here: default budget only")
    print(f"{'model':22} {'budget':>9} {'within':>7} {'s':>7}  {'peak MiB (range)':36} rows per pass × passes")
    for work in WORKLOADS:
        for budget in chosen:
            p = measure(work.name, budget, args.threads, args.runs)
            within = {None: "-", True: "yes", False: "NO"}[p.within]
            print(f"{p.model:22} {budget:>9} {within:>7} {p.seconds:7.2f}  {p.peaks_text():36} "
                  f"{passes_text(p.passes)}{'  ' + p.error if p.error else ''}")  # fmt: skip


if __name__ == "__main__":
    main()
