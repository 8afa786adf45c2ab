"""Every method and metric of gradattr beside Captum, Zennit and Quantus, written to benchmarks/RESULTS.md.

One script, the other benchmarks' pieces (imported, not copied), the same models and batches for every library:

1. Methods (``bench_core`` + ``bench_tutorial_methods``): the MLP, CNN and ResNet-like net of ``bench_core`` at
   batch 64. Every row is timed in rounds with the fwd+bwd floor and each peer (floor, gradattr, Captum, Zennit,
   repeat); ratios are medians of per-round ratios. Zennit 0.5 rows, where it has the method:
   ``Gradient`` (saliency; × x for Gradient*Input), ``Gradient`` with the ``GuidedBackprop`` / ``DeconvNet``
   composites, ``IntegratedGradients`` (same right Riemann sum, zero baseline), ``SmoothGrad`` (mean of raw
   gradients, its last sample noise-free: a different quantity from gradattr's mean |∇|), ``Occlusion``
   (occluding inside the window; converted to gradattr's definition for max|Δ|) and LRP-ε: the ``Epsilon`` rule
   on every linear/conv layer (Zennit's basic layer map: activations and batch-norm pass the relevance on). That
   LRP-ε is not gradattr's eps-LRP: Zennit's ε stabilises each layer's denominator z_j = Σ_i w_ji x_i + b_j,
   gradattr's (Ancona et al.) sits in the nonlinearities, f(z)/(z + ε sign z) — like Captum's LRP, so no max|Δ|.
   Zennit's composites ``EpsilonPlus`` / ``EpsilonAlpha2Beta1`` are other rules again and are not timed.
2. Sensitivity-n vs Quantus ``SensitivityN`` (``bench_sensitivity``): forward evaluations per second.
3. Max-/avg-sensitivity, local Lipschitz and infidelity vs Quantus (``bench_robustness_metrics``).
4. Peak memory of IG(100) on a batch of 64: each model in a fresh subprocess, ``ru_maxrss`` after the call minus
   before it, at gradattr's default memory budget and at two ``max_memory=`` budgets, with the rows per pass
   gradattr used (a forward pre-hook counts them).
5. ``torch.compile``: the floor and gradattr's saliency, DeepLIFT and IG(50) on ``torch.compile(model)``
   (inductor) against the eager model, with the first call's time (compilation) and dynamo's graph breaks.

Then the issue's targets, each PASS/MISS. Load: the script measures how many cores *other* processes kept busy
during each row (from /proc/stat, minus this process's own CPU time) and, above ``--busy`` cores, waits for
quiet (up to ``--wait`` s) and measures the row again, keeping the quieter run; the table shows the value.

Run it in the peers' environment, where Captum, Zennit and Quantus all import (``benchmarks/quantus_setup.sh``
makes it); a peer that does not import is named in the table and left out:

    /work/venv-peers/bin/python benchmarks/run.py            # full, ~9 min on 2 quiet cores: RESULTS.md
    /work/venv-peers/bin/python benchmarks/run.py --quick    # ~3 min; prints only (--out FILE to write)
    /work/venv-peers/bin/python benchmarks/run.py --only methods,compile --threads 2
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.metadata
import logging
import math
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor, nn

import bench_core
import bench_robustness_metrics as robustness_bench
import bench_sensitivity as sensitivity_bench
import gradattr
import ig_memory
from bench_core import (
    BATCH,
    IG_STEPS,
    WORKLOADS,
    Case,
    Comparison,
    Peer,
    PeerResult,
    Prepared,
    compare,
    core_cases,
    prepare,
)
from bench_tutorial_methods import tutorial_cases

try:
    import zennit
    from zennit.attribution import Gradient as ZennitGradient
    from zennit.attribution import IntegratedGradients as ZennitIntegratedGradients
    from zennit.attribution import Occlusion as ZennitOcclusion
    from zennit.attribution import SmoothGrad as ZennitSmoothGrad
    from zennit.attribution import occlude_independent
    from zennit.composites import DeconvNet, GuidedBackprop, LayerMapComposite, layer_map_base
    from zennit.rules import Epsilon
    from zennit.types import Convolution, Linear
except ImportError as error:
    zennit = None
    ZENNIT_MISSING = f"{type(error).__name__}: {error}"

HERE = Path(__file__).resolve().parent
SECTIONS = ("methods", "sensitivity", "robustness", "memory", "compile")
PEERS = ("Captum", "Zennit")
MODIFIED_GRADIENT = ("saliency", "gradient_x_input", "epsilon_lrp", "deeplift", "guided_backprop", "deconvnet")
"""Methods that are one (modified) backward pass: target <= 1.3 x floor."""
LRP_EPSILON = 1e-4  # gradattr's default; Zennit's Epsilon rule gets the same value

T = TypeVar("T")


# --------------------------------------------------------------------------------------------------
# Load from other processes
# --------------------------------------------------------------------------------------------------


def _busy_cpu_seconds() -> float | None:
    """CPU seconds all processes have spent busy since boot (/proc/stat), or None off Linux."""
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            fields = [int(v) for v in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


@dataclass
class Busy:
    """Cores kept busy by other processes during a block (NaN where /proc/stat is unreadable)."""

    cores: float = math.nan


@contextmanager
def others_busy() -> Iterator[Busy]:
    """Measure the CPU time other processes use while the block runs, in cores."""
    result = Busy()
    busy0, own0, wall0 = _busy_cpu_seconds(), _own_cpu_seconds(), time.perf_counter()
    try:
        yield result
    finally:
        busy1, own1, wall1 = _busy_cpu_seconds(), _own_cpu_seconds(), time.perf_counter()
        if busy0 is not None and busy1 is not None:
            result.cores = max(0.0, ((busy1 - busy0) - (own1 - own0)) / max(wall1 - wall0, 1e-9))


def wait_for_quiet(threshold: float, max_wait: float) -> float:
    """Sleep in 2 s samples until other processes use at most ``threshold`` cores or ``max_wait`` s have passed;
    the last sample's value."""
    start = time.perf_counter()
    while True:
        with others_busy() as busy:
            time.sleep(2.0)
        if not busy.cores > threshold or time.perf_counter() - start >= max_wait:
            return busy.cores


@dataclass(frozen=True)
class Guard:
    """Repeat a measurement taken while other processes kept more than ``threshold`` cores busy."""

    threshold: float
    wait: float
    reruns: int

    def run(self, label: str, measure: Callable[[], T]) -> tuple[T, float, int]:
        """(result of the quietest attempt, its busy cores, the number of repeats made)."""
        best: tuple[T, float] | None = None
        repeats = 0
        for attempt in range(1 + self.reruns):
            if attempt:
                print(f"    [{label}: other processes kept {best[1]:.1f} cores busy; waiting <= {self.wait:.0f} s, "
                      "measuring again]", flush=True)  # fmt: skip
                wait_for_quiet(self.threshold, self.wait)
                repeats += 1
            with others_busy() as busy:
                result = measure()
            if best is None or not busy.cores >= best[1]:
                best = (result, busy.cores)
            if not busy.cores > self.threshold:
                break
        assert best is not None
        return best[0], best[1], repeats


# --------------------------------------------------------------------------------------------------
# Zennit's implementations of gradattr's methods
# --------------------------------------------------------------------------------------------------


def epsilon_everywhere() -> Any:
    """Zennit's LRP-ε: the Epsilon rule on every conv and linear layer (the basic layer map elsewhere)."""
    return LayerMapComposite(
        [*layer_map_base(), (Convolution, Epsilon(epsilon=LRP_EPSILON)), (Linear, Epsilon(epsilon=LRP_EPSILON))]
    )


def zennit_peers(prepared: Prepared, case: Case) -> tuple[Peer, ...]:
    """Zennit's implementation of ``case``'s method on the same model and batch, where it has one."""
    if zennit is None:
        return ()
    model, x, target = prepared.model, prepared.x, prepared.target
    with torch.no_grad():
        output = model(x)
    onehot = nn.functional.one_hot(target, output.shape[1]).to(x.dtype)
    score = output.gather(1, target[:, None]).view(-1, *(1,) * (x.dim() - 1))

    def selected(out: Tensor) -> Tensor:  # the target logit as the output relevance (LRP, occlusion)
        return out * onehot

    def gradient(composite: Callable[[], Any] | None = None, attr_output: Any = onehot) -> Tensor:
        return ZennitGradient(model, None if composite is None else composite())(x, attr_output)[1]

    key = case.key
    if key == "saliency":
        return (Peer("Zennit", lambda: gradient().abs(), note="Zennit Gradient, abs"),)
    if key == "gradient_x_input":
        return (Peer("Zennit", lambda: x * gradient(), note="Zennit Gradient × x"),)
    if key == "epsilon_lrp":
        note = "Zennit: Epsilon rule on every conv/linear layer (ε in z_j), gradattr: ε in the nonlinearities"
        return (Peer("Zennit", lambda: gradient(epsilon_everywhere, selected), convert=None, note=note),)
    if key == "guided_backprop":
        return (Peer("Zennit", lambda: gradient(GuidedBackprop), note="Zennit GuidedBackprop composite"),)
    if key == "deconvnet":
        return (Peer("Zennit", lambda: gradient(DeconvNet), note="Zennit DeconvNet composite"),)
    if key == "integrated_gradients":
        steps = case.params["steps"]
        return (
            Peer(
                "Zennit",
                lambda: ZennitIntegratedGradients(model, n_iter=steps)(x, onehot)[1],
                note=f"Zennit IntegratedGradients n_iter={steps}, one pass of the batch per step",
            ),
        )
    if key == "smoothgrad":
        samples, sigma = case.params["samples"], case.params["sigma"]
        return (
            Peer(
                "Zennit",
                lambda: ZennitSmoothGrad(model, noise_level=sigma, n_iter=samples)(x, onehot)[1],
                convert=None,
                note="Zennit SmoothGrad: mean of raw gradients, last sample noise-free",
            ),
        )
    if key == "occlusion":
        window = case.params["window"]
        size = math.prod(window)
        occlude_inside = partial(occlude_independent, fill_fn=torch.zeros_like, invert=True)

        def occlusion() -> Tensor:
            return ZennitOcclusion(model, occlusion_fn=occlude_inside, window=window, stride=window)(x, selected)[1]

        return (Peer("Zennit", occlusion, convert=lambda t: (score - t) / size, note="Zennit Occlusion"),)
    return ()


# --------------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------------


@dataclass
class MethodRow:
    model: str
    comparison: Comparison
    busy: float
    repeats: int


def methods_section(quick: bool, guard: Guard) -> list[MethodRow]:
    """Every method on every workload: gradattr, the floor, Captum and Zennit in the same rounds."""
    rows, measures = [], []
    for work in WORKLOADS:
        prepared = prepare(work, quick)
        print(f"\n== {work.name} (batch {BATCH}, input {work.shape})", flush=True)
        for case in core_cases(prepared, work, quick) + tutorial_cases(prepared, work):
            case = dataclasses.replace(case, peers=case.peers + zennit_peers(prepared, case))
            measures.append((f"{work.name}: {case.label}", partial(prepared.run, case)))
            comparison, busy, repeats = guard.run(case.label, measures[-1][1])
            rows.append(MethodRow(work.name, comparison, busy, repeats))
            print("  " + " | ".join(method_cells(rows[-1])[1:]), flush=True)
    if guard.reruns:  # load comes in bursts: one more try at the end for rows that stayed busy
        for row, (label, measure) in zip(rows, measures, strict=True):
            if row.busy > guard.threshold:
                print(f"    [{label}: still {row.busy:.1f} busy cores; waiting <= {guard.wait:.0f} s, measuring again]")
                wait_for_quiet(guard.threshold, guard.wait)
                with others_busy() as busy:
                    comparison = measure()
                row.repeats += 1
                if busy.cores < row.busy:
                    row.comparison, row.busy = comparison, busy.cores
                print("  " + " | ".join(method_cells(row)[1:]), flush=True)
    return rows


@dataclass
class SpeedRow:
    speed: sensitivity_bench.Speed
    busy: float


def sensitivity_section(quick: bool, guard: Guard) -> list[SpeedRow]:
    """Sensitivity-n vs Quantus' SensitivityN on bench_sensitivity's three models."""
    repeats = 1 if quick else 3
    rows = []
    torch.manual_seed(0)
    for name, build in sensitivity_bench.SPEED_MODELS:
        model = build().eval()
        speed, busy, _ = guard.run(name, partial(sensitivity_bench.measure_speed, name, model, repeats))
        rows.append(SpeedRow(speed, busy))
        print("  " + " | ".join(speed_cells(rows[-1])), flush=True)
    return rows


@dataclass
class MetricRows:
    model: str
    measured: robustness_bench.Measured
    busy: float


def robustness_section(quick: bool, guard: Guard) -> tuple[int, list[MetricRows]]:
    """Max-/avg-sensitivity, local Lipschitz and infidelity vs Quantus on bench_robustness_metrics' models."""
    repeats, samples = (1, 10) if quick else (3, 50)
    rows = []
    for name, build in robustness_bench.METRIC_MODELS:
        torch.manual_seed(0)
        model = build().eval()
        measured, busy, _ = guard.run(name, partial(robustness_bench.measure_model, model, samples, repeats))
        rows.append(MetricRows(name, measured, busy))
        for cells in metric_cells(rows[-1]):
            print("  " + " | ".join(cells), flush=True)
    return samples, rows


def memory_section(quick: bool, threads: int) -> list[ig_memory.Peak]:
    """IG(100) on each workload (quick: the ResNet-like net), a fresh process per budget: the default and (if
    supported) two ``max_memory=``."""
    rows = []
    for work in WORKLOADS[2:] if quick else WORKLOADS:
        for budget in ig_memory.budgets():
            rows.append(ig_memory.measure(work.name, budget, threads, runs=1 if quick else 3))
            print("  " + " | ".join(memory_cells(rows[-1])), flush=True)
    return rows


@dataclass
class CompileRow:
    model: str
    what: str
    first_call: float = math.nan  # seconds of the compiled version's first call (compilation included)
    comparison: Comparison | None = None  # "ours" = compiled, peer "eager"
    graph_breaks: int = 0
    error: str = ""


def compile_section(quick: bool, guard: Guard) -> list[CompileRow]:
    """The floor and gradattr's saliency, DeepLIFT and IG(50) on torch.compile(model) against eager."""
    from torch._dynamo.utils import counters

    logging.getLogger("torch._dynamo").setLevel(logging.ERROR)  # graph-break and recompile warnings: counted
    logging.getLogger("torch._inductor").setLevel(logging.ERROR)
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # "No CUDA runtime is found": CPU run
    rows = []
    for work in WORKLOADS[1:2] if quick else WORKLOADS:
        torch._dynamo.reset()
        counters.clear()
        eager = prepare(work, quick)
        compiled = dataclasses.replace(eager, model=torch.compile(eager.model))
        zeros = torch.zeros_like(eager.x)

        def method(prepared: Prepared, name: str, **opts: Any) -> Callable[[], Tensor]:
            return lambda: gradattr.attribute(prepared.model, prepared.x, name, prepared.target, **opts)

        cases = [
            ("floor (fwd+bwd)", False, eager.floor, compiled.floor),
            ("saliency", False, method(eager, "saliency"), method(compiled, "saliency")),
            ("deeplift", False, method(eager, "deeplift", baseline=zeros),
             method(compiled, "deeplift", baseline=zeros)),
            (f"integrated_gradients({IG_STEPS})", True, method(eager, "integrated_gradients", steps=IG_STEPS),
             method(compiled, "integrated_gradients", steps=IG_STEPS)),
        ]  # fmt: skip
        for what, slow, eager_call, compiled_call in cases:
            row = CompileRow(work.name, what)
            breaks_before = sum(counters["graph_break"].values())
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    start = time.perf_counter()
                    compiled_call()
                    row.first_call = time.perf_counter() - start
            except Exception as exc:  # a failure to compile is a result
                row.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:100]}"
            row.graph_breaks = sum(counters["graph_break"].values()) - breaks_before
            if not row.error:
                case = Case(what, what, compiled_call, (Peer("eager", eager_call),), slow=slow)
                timing = eager.slow if slow else eager.fast
                row.comparison, _, _ = guard.run(f"compile {what}", partial(compare, timing, eager.floor, case))
            rows.append(row)
            print("  " + " | ".join(compile_cells(row)), flush=True)
    return rows


# --------------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------------


def num(value: float | None, digits: int = 2) -> str:
    """A number with ``digits`` decimals, or a dash."""
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def sci(value: float | None) -> str:
    return "–" if value is None else f"{value:.1e}"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


METHOD_HEADER = ["model", "method", "floor ms", "gradattr ms", "× floor"] + [
    column for peer in PEERS for column in (f"{peer} ms", f"{peer} ÷ gradattr", f"max\\|Δ\\| {peer}")
] + ["busy", "notes"]  # fmt: skip


def method_cells(row: MethodRow) -> list[str]:
    c = row.comparison
    cells = [row.model, c.label, num(1e3 * c.floor), num(1e3 * c.ours), num(c.over_floor)]
    notes = []
    for peer in PEERS:
        result = c.peers.get(peer)
        if result is None:
            cells += ["–", "–", "–"]
            continue
        cells += [num(None if result.seconds is None else 1e3 * result.seconds), num(result.speedup),
                  sci(result.max_diff)]  # fmt: skip
        if result.note:
            notes.append(result.note)
    repeated = f" (measured {1 + row.repeats}x)" if row.repeats else ""
    return [*cells, num(row.busy, 1) + repeated, "; ".join(notes)]


def speed_cells(row: SpeedRow) -> list[str]:
    s = row.speed
    quantus = len(s.rows) == 2
    return [
        s.name,
        f"{s.rows[0][2]} / {s.rows[1][2] if quantus else '–'}",
        f"{s.rate(0):.0f}",
        f"{s.rate(1):.0f}" if quantus else "–",
        num(s.ratio, 1),
        f"{s.floor:.0f}",
        f"{100 * s.rate(0) / s.floor:.0f} %",
        f"{100 * s.rate(1) / s.floor:.0f} %" if quantus else "–",
        num(row.busy, 1),
    ]


SPEED_HEADER = ["model", "forwards/sample gradattr / Quantus", "gradattr fwd/s", "Quantus fwd/s", "gradattr ÷ Quantus",
                "floor fwd/s", "gradattr % floor", "Quantus % floor", "busy"]  # fmt: skip


def metric_cells(rows: MetricRows) -> list[list[str]]:
    out = []
    m = rows.measured
    for metric_rows, floor, unit in (
        (m.stability, m.stability_floor, "explained inputs/s"),
        (m.infidelity, m.infidelity_floor, "model evaluations/s"),
    ):
        for r in metric_rows:
            theirs = r.theirs_rate
            out.append([
                rows.model, r.metric, unit, f"{r.ours_rate:.0f}", "–" if theirs is None else f"{theirs:.0f}",
                num(None if theirs is None else r.ours_rate / theirs, 1), f"{100 * r.ours_rate / floor:.0f} %",
                sci(r.max_relative_difference()), num(rows.busy, 1),
            ])  # fmt: skip
    return out


METRIC_HEADER = ["model", "metric", "unit", "gradattr", "Quantus", "gradattr ÷ Quantus", "gradattr % floor",
                 "max rel. diff (same draws)", "busy"]  # fmt: skip


def memory_cells(row: ig_memory.Peak) -> list[str]:
    budget = row.budget
    if row.budget_bytes:
        budget += f" ({row.budget_bytes / 2**20:.{0 if budget == 'default' else 1}f} MiB)"
    within = {None: "–", True: "yes", False: "NO"}[row.within]
    return [row.model, budget, ig_memory.passes_text(row.passes), row.peaks_text(), num(row.baseline_mib, 0),
            num(row.seconds, 2), within, row.error]  # fmt: skip


MEMORY_HEADER = ["model", "budget", "rows per pass × passes", "peak − baseline MiB (max; range)", "baseline MiB", "s",
                 "≤ budget",
                 "error"]  # fmt: skip


def compile_cells(row: CompileRow) -> list[str]:
    c = row.comparison
    eager: PeerResult | None = None if c is None else c.peers.get("eager")
    if c is None or eager is None:
        return [row.model, row.what, "–", "–", "–", num(row.first_call, 1), str(row.graph_breaks), "–",
                row.error or "eager n/a"]  # fmt: skip
    return [row.model, row.what, num(1e3 * eager.seconds), num(1e3 * c.ours), num(eager.over, 2),
            num(row.first_call, 1), str(row.graph_breaks), sci(eager.max_diff), row.error]  # fmt: skip


COMPILE_HEADER = ["model", "what", "eager ms", "compiled ms", "compiled ÷ eager", "first compiled call s",
                  "graph breaks", "max\\|Δ\\|", "error"]  # fmt: skip


# --------------------------------------------------------------------------------------------------
# Targets
# --------------------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def targets(results: dict[str, Any]) -> list[list[str]]:
    """The issue's targets: [target, model, measured, verdict] rows."""
    out = []
    methods: list[MethodRow] = results.get("methods", [])
    for work in WORKLOADS:
        by = {r.comparison.label: r.comparison for r in methods if r.model == work.name}
        if not by:
            continue
        ratios = {k: by[k].over_floor for k in MODIFIED_GRADIENT if k in by}
        if ratios:
            out.append(["modified-gradient methods ≤ 1.3 × floor", work.name,
                        ", ".join(f"{k} {v:.2f}" for k, v in ratios.items()),
                        verdict(max(ratios.values()) <= 1.3)])  # fmt: skip
        if (ig_row := by.get(f"integrated_gradients({IG_STEPS})")) is not None:
            ig = ig_row.over_floor / IG_STEPS
            out.append([f"IG({IG_STEPS}) ≤ 1.1 × {IG_STEPS} × floor", work.name, f"{ig:.2f} × {IG_STEPS} × floor",
                        verdict(ig <= 1.1)])  # fmt: skip
        if len(work.shape) == 3 and "deeplift" in by:  # the CNNs
            deeplift = by["deeplift"].peers.get("Captum")
            speedup = None if deeplift is None else deeplift.speedup
            out.append(["DeepLIFT ≥ 2 × faster than Captum's DeepLift (CNNs)", work.name,
                        f"{num(speedup)} ×", "n/a" if speedup is None else verdict(speedup >= 2)])  # fmt: skip
        for comparison in by.values():
            captum = comparison.peers.get("Captum")
            if comparison.key == "occlusion" and captum is not None and captum.speedup is not None:
                out.append([f"{comparison.label} faster than Captum's", work.name, f"{captum.speedup:.2f} ×",
                            verdict(captum.speedup > 1)])  # fmt: skip
    for row in results.get("sensitivity", []):
        ratio = row.speed.ratio
        out.append(["Sensitivity-n ≥ 3 × Quantus (forward evaluations/s)", row.speed.name, f"{num(ratio, 1)} ×",
                    "n/a" if ratio is None else verdict(ratio >= 3)])  # fmt: skip
    for row in results.get("memory", []):
        if row.within is not None:
            passes = ig_memory.passes_text({k: v for k, v in row.passes.items() if k > 4})
            out.append([f"IG({ig_memory.STEPS}) peak memory ≤ budget ({memory_cells(row)[1]})", row.model,
                        f"{row.peak_mib:.1f} MiB, rows per pass × passes {passes}", verdict(row.within)])  # fmt: skip
    return out


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def version(module: Any, missing: str) -> str:
    """The installed version of an imported peer, or why it is missing."""
    if module is None:
        return f"not importable ({missing})"
    try:
        return importlib.metadata.version(module.__name__)
    except importlib.metadata.PackageNotFoundError:
        return getattr(module, "__version__", "?")


def header_lines(args: argparse.Namespace, load_start: tuple[float, ...], seconds: float) -> list[str]:
    quantus = sensitivity_bench.quantus
    load_end = os.getloadavg()
    mode = "quick" if args.quick else "full"
    return [
        f"Written by `benchmarks/run.py` ({mode} mode{', sections ' + args.only if args.only else ''}) on "
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC in {seconds / 60:.1f} min.",
        "",
        f"- Machine: {cpu_model()}, {os.cpu_count()} cores ({platform.machine()}, {platform.system()}); load average "
        f"(1/5/15 min) {'/'.join(f'{v:.2f}' for v in load_start)} at the start, "
        f"{'/'.join(f'{v:.2f}' for v in load_end)} at the end.",
        f"- torch threads: {torch.get_num_threads()}; float32; batch {BATCH}; "
        f"busy = cores kept busy by other processes during the row (repeated above {args.busy}).",
        f"- Versions: gradattr {gradattr.__version__}, torch {torch.__version__}, "
        f"captum {version(bench_core.captum, getattr(bench_core, 'CAPTUM_MISSING', ''))}, "
        f"zennit {version(zennit, globals().get('ZENNIT_MISSING', ''))}, "
        f"quantus {version(quantus, getattr(sensitivity_bench, 'QUANTUS_MISSING', ''))}, numpy {np.__version__}, "
        f"Python {platform.python_version()}.",
    ]


def report(args: argparse.Namespace, results: dict[str, Any], load_start: tuple[float, ...], seconds: float) -> str:
    parts = ["# gradattr benchmark results", "", *header_lines(args, load_start, seconds), ""]
    rows = targets(results)
    if rows:
        parts += ["## Targets", "", table(["target", "model", "measured", "verdict"], rows), ""]
    if "methods" in results:
        methods: list[MethodRow] = results["methods"]
        body = []
        for work in WORKLOADS:
            mine = [r for r in methods if r.model == work.name]
            if mine:
                body += [method_cells(r) for r in mine]
        parts += [
            "## Methods: gradattr vs Captum vs Zennit vs the fwd+bwd floor",
            "",
            "Medians over rounds of floor, gradattr, Captum, Zennit (floor = one forward + backward of the target "
            "logits, timed in the same rounds as the row); × floor and *peer* ÷ gradattr are medians of "
            "per-round ratios (÷ > 1: gradattr is faster), so they hold under load better than the ms columns. "
            "max|Δ| is max |gradattr − peer| where both compute the "
            "same quantity (converted to gradattr's definition for occlusion); – where they differ or the peer "
            "lacks the method. Models and settings as in `bench_core.py` / `bench_tutorial_methods.py`.",
            "",
            table(METHOD_HEADER, body),
            "",
        ]
    if "sensitivity" in results:
        parts += [
            "## Sensitivity-n vs Quantus `SensitivityN`",
            "",
            f"{BATCH} images, Gradient*Input attributions, the same number of forward evaluations per sample "
            "(Quantus: one per removed feature); floor = the bare model's forward rows/s (`bench_sensitivity.py`). "
            "The two compute different quantities (see that script), so only speed is compared.",
            "",
            table(SPEED_HEADER, [speed_cells(r) for r in results["sensitivity"]]),
            "",
        ]
    if "robustness" in results:
        samples, metric_rows = results["robustness"]
        parts += [
            "## Robustness metrics vs Quantus",
            "",
            f"Saliency explanations, K = {samples} draws, settings of `bench_robustness_metrics.py`; "
            "max rel. diff: Quantus rerun on gradattr's documented draws (same perturbed points). "
            "% floor: share of one saliency call (stability) or one forward pass (infidelity) on all rows.",
            "",
            table(METRIC_HEADER, [cells for rows_ in metric_rows for cells in metric_cells(rows_)]),
            "",
        ]
    if "memory" in results:
        parts += [
            f"## Peak memory of IG({ig_memory.STEPS}) on a batch of {BATCH}",
            "",
            "Each in a fresh process (`ig_memory.py`): the peak resident memory during `gradattr.attribute(..., "
            f"'integrated_gradients', steps={ig_memory.STEPS}[, max_memory=...])` minus the resident memory before "
            "it (model, batch, one forward pass and a 2-row warm-up call already made; Linux VmHWM reset before the "
            "call, since `ru_maxrss` inherits the parent's peak across fork + exec). Rows per pass from a forward "
            "pre-hook (2 and 4 rows: the budget's measuring passes). The budget bounds what a pass keeps for the "
            "backward pass; the peak is the whole process's. Full mode: 3 fresh processes each, the largest peak "
            "held against the budget.",
            "",
            table(MEMORY_HEADER, [memory_cells(r) for r in results["memory"]]),
            "",
        ]
    if "compile" in results:
        compile_rows: list[CompileRow] = results["compile"]
        parts += [
            "## `torch.compile` (inductor, CPU) vs eager",
            "",
            "The same calls on `torch.compile(model)` and on the model; compiled ÷ eager is a median of per-round "
            "ratios (< 1: compiled is faster); the first compiled call includes compilation (and recompilations "
            "for the other batch shapes gradattr passes; inductor's on-disk cache shortens it on later runs); "
            "graph breaks counted by dynamo during that call.",
            "",
            table(COMPILE_HEADER, [compile_cells(r) for r in compile_rows]),
            "",
            compile_conclusion(compile_rows),
            "",
        ]
    return "\n".join(parts)


def compile_ratio(row: CompileRow) -> float | None:
    """compiled ÷ eager of one row (median of per-round ratios), if measured."""
    eager = None if row.comparison is None else row.comparison.peers.get("eager")
    return None if eager is None else eager.over


def compile_conclusion(rows: list[CompileRow]) -> str:
    """One sentence from the measured numbers."""
    failed = [r for r in rows if r.error]
    measured = [(r, ratio) for r in rows if (ratio := compile_ratio(r)) is not None]
    if not measured:
        return "Conclusion: torch.compile could not be measured here" + (f" ({failed[0].error})." if failed else ".")

    def mean_by(key: Callable[[CompileRow], str]) -> str:
        groups: dict[str, list[float]] = {}
        for row, ratio in measured:
            groups.setdefault(key(row), []).append(ratio)
        return ", ".join(f"{name} {statistics.geometric_mean(values):.2f}×" for name, values in groups.items())

    overall = statistics.geometric_mean([ratio for _, ratio in measured])
    comparison = "slower than" if overall > 1.05 else "faster than" if overall < 0.95 else "about as fast as"
    breaks = sum(r.graph_breaks for r in rows if r.what == "deeplift")
    compile_seconds = sum(r.first_call for r in rows if not math.isnan(r.first_call))
    return (
        f"Conclusion (measured): on this CPU, gradattr on a `torch.compile`d model is {comparison} on the eager "
        f"model overall (compiled ÷ eager, geometric mean {overall:.2f}×; by model: {mean_by(lambda r: r.model)}; "
        f"by call: {mean_by(lambda r: r.what)}), with the same attributions; DeepLIFT's rule mode caused {breaks} "
        f"graph break(s), and the first calls spent {compile_seconds:.0f} s compiling"
        f"{'; failures: ' + '; '.join(r.error for r in failed) if failed else ''}."
    )


def write(path: Path | None, text: str) -> None:
    if path is None:
        return
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, compile on the CNN only (a few minutes)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--only", default="", help=f"comma-separated sections of {','.join(SECTIONS)}")
    parser.add_argument("--out", type=Path, help="markdown file (default: benchmarks/RESULTS.md in full mode)")
    parser.add_argument("--busy", type=float, default=0.5, help="repeat a row when other processes kept more "
                        "cores busy than this (default 0.5)")  # fmt: skip
    parser.add_argument("--wait", type=float, default=None, help="seconds to wait for quiet before repeating "
                        "(default 30, quick 10)")  # fmt: skip
    parser.add_argument("--reruns", type=int, default=None, help="repeats of a busy row (default 1, quick 0)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sections = [s for s in args.only.split(",") if s] or list(SECTIONS)
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    out = args.out if args.out is not None else (None if args.quick else HERE / "RESULTS.md")
    guard = Guard(
        threshold=args.busy,
        wait=args.wait if args.wait is not None else (10.0 if args.quick else 30.0),
        reruns=args.reruns if args.reruns is not None else (0 if args.quick else 1),
    )
    load_start = os.getloadavg()
    started = time.perf_counter()
    for line in header_lines(args, load_start, 0.0)[2:]:
        print(line)
    if zennit is None:
        print(f"Zennit not importable ({ZENNIT_MISSING}): its columns stay empty")
    results: dict[str, Any] = {}
    runners: dict[str, Callable[[], Any]] = {
        "methods": lambda: methods_section(args.quick, guard),
        "sensitivity": lambda: sensitivity_section(args.quick, guard),
        "robustness": lambda: robustness_section(args.quick, guard),
        "memory": lambda: memory_section(args.quick, args.threads),
        "compile": lambda: compile_section(args.quick, guard),
    }
    for section in SECTIONS:
        if section in sections:
            print(f"\n# {section} (load average {os.getloadavg()[0]:.2f})", flush=True)
            results[section] = runners[section]()
            write(out, report(args, results, load_start, time.perf_counter() - started))
    text = report(args, results, load_start, time.perf_counter() - started)
    write(out, text)
    print("\n" + text)
    if out is not None:
        print(f"written: {out}")


if __name__ == "__main__":
    main()
