"""Side-by-side timings of gradattr's core methods, Captum 0.9 and the autograd floor.

floor = one forward + backward of the target logits w.r.t. the inputs (batch 64), the least any
gradient method can cost. For every model the table prints, per method: gradattr's median time, its
ratio to the floor, Captum's median time, gradattr/Captum, and max|gradattr - Captum| where the two
compute the same quantity (a check that the timed calls do the same work).

Timing (``Timing``): one untimed warm-up call each, then rounds of floor, gradattr, Captum, one after
the other (ms-scale methods: >= 10 rounds and >= 1 s; IG and occlusion: 3 rounds, floor averaged over 5
calls; ``--quick``: 5 rounds / 0.3 s and 1 round). Times are medians; ratios (x floor, ours/Captum) are
medians of per-round ratios, so load from other processes affects both sides alike. ``torch`` threads are
fixed (default 1) and printed with the load average; re-run when the load is high.

Targets (from the issue), marked PASS/MISS per model:
  Gradient*Input, eps-LRP, DeepLIFT <= 1.3 x floor;  IG(50) <= 1.1 x 50 x floor;
  Occlusion faster than Captum's Occlusion;  DeepLIFT >= 2x faster than Captum's DeepLift on the CNN.

The pieces (``Workload``, ``prepare``, ``Case``/``Peer``, ``compare``, ``core_cases``) are shared with the other
benchmarks and ``run.py``, which adds Zennit's implementations as further peers of the same cases.

Usage: python benchmarks/bench_core.py [--quick] [--threads N]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

import gradattr

try:
    import captum
    from captum.attr import LRP, DeepLift, InputXGradient, IntegratedGradients, Occlusion, Saliency
except ImportError as error:  # benchmarks/run.py reports a missing peer in its table and goes on
    captum = None
    CAPTUM_MISSING = f"{type(error).__name__}: {error}"

BATCH = 64
IG_STEPS = 50
CAPTUM_IG_INTERNAL_BATCH = BATCH  # rows per forward for Captum IG; gradattr runs with its default chunking
CAPTUM_OCCLUSION_BATCHES = (1, 16)  # Captum perturbations_per_eval tried; the faster one is reported


# --------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------


def mnist_mlp() -> nn.Sequential:
    """784-512-512-10 ReLU MLP on flattened 28x28 inputs."""
    return nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))


def mnist_cnn() -> nn.Sequential:
    """Two stride-2 3x3 convs (32, 64 channels) and two linear layers, input 1x28x28."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )


class BasicBlock(nn.Module):
    """``relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))``; a 1x1 conv + BN shortcut when shapes change.

    Every ReLU is its own module so that Captum's module hooks can see each call.
    """

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu2 = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        """Residual block forward."""
        out = self.relu1(self.bn1(self.conv1(x)))
        return self.relu2(self.bn2(self.conv2(out)) + self.shortcut(x))


def small_resnet() -> nn.Sequential:
    """ResNet-like net for 3x32x32: stem + 3 residual blocks (16, 32, 64 ch) + adaptive avg pool + linear."""
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        BasicBlock(16, 16, 1),
        BasicBlock(16, 32, 2),
        BasicBlock(32, 64, 2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, 10),
    )


def randomise_batchnorm(model: nn.Module, generator: torch.Generator) -> None:
    """Give every BatchNorm non-trivial running statistics and affine parameters (eval mode)."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
            m.running_var.copy_(0.5 + torch.rand(n, generator=generator))
            with torch.no_grad():
                m.weight.copy_(1.0 + 0.1 * torch.randn(n, generator=generator))
                m.bias.copy_(0.1 * torch.randn(n, generator=generator))


@dataclass(frozen=True)
class Workload:
    """A model, its input shape and the occlusion window used on it."""

    name: str
    build: Callable[[], nn.Module]
    shape: tuple[int, ...]
    occlusion_windows: tuple[tuple[int, ...], ...]  # window = stride for each occlusion row


WORKLOADS = (
    Workload("MLP 784-512-512-10", mnist_mlp, (784,), ((16,), (1,))),  # (1,): Occlusion-1
    Workload("CNN 2conv+2fc", mnist_cnn, (1, 28, 28), ((1, 4, 4),)),
    Workload("ResNet-like 3x32x32", small_resnet, (3, 32, 32), ((3, 4, 4),)),
)


# --------------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    """Round-robin timing: after one untimed warm-up call each, every round runs the floor ``floor_calls``
    times and then each contender once; rounds repeat until ``min_run_time`` seconds and ``min_rounds``.

    Ratios are medians of per-round ratios, so a burst of load from other processes hits both sides of a
    ratio alike.
    """

    min_run_time: float
    min_rounds: int
    floor_calls: int

    def rounds(
        self,
        floor: Callable[[], Tensor],
        contenders: dict[str, Callable[[], Tensor]],
        warmed: dict[str, Tensor] | None = None,
    ) -> tuple[list[float], dict[str, list[float]], dict[str, Tensor]]:
        """(floor seconds per round, contender seconds per round, warm-up outputs); ``warmed``: outputs of
        contenders whose warm-up call has already been made (not repeated)."""
        floor()
        outputs = dict(warmed or {})
        outputs.update({name: fn().detach() for name, fn in contenders.items() if name not in outputs})
        floors: list[float] = []
        times: dict[str, list[float]] = {name: [] for name in contenders}
        start = time.perf_counter()
        while len(floors) < self.min_rounds or time.perf_counter() - start < self.min_run_time:
            t0 = time.perf_counter()
            for _ in range(self.floor_calls):
                floor()
            floors.append((time.perf_counter() - t0) / self.floor_calls)
            for name, fn in contenders.items():
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
        return floors, times, outputs


def quiet(fn: Callable[[], Tensor]) -> Callable[[], Tensor]:
    """``fn`` with warnings suppressed (Captum warns about its hooks on every call)."""

    def run() -> Tensor:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn()

    return run


def paired_median(numerator: list[float], denominator: list[float]) -> float:
    """Median over rounds of numerator / denominator."""
    return statistics.median(n / d for n, d in zip(numerator, denominator, strict=True))


def identity(t: Tensor) -> Tensor:
    """A peer's output that already has gradattr's definition."""
    return t


@dataclass(frozen=True)
class Peer:
    """Another library's implementation of a method. ``convert`` maps its output onto gradattr's definition for
    the max|Δ| column (``None``: the two compute different quantities). Several peers of one library (e.g.
    Captum's occlusion at two batchings) are timed in the same rounds and the fastest is reported."""

    library: str
    run: Callable[[], Tensor]
    convert: Callable[[Tensor], Tensor] | None = identity
    note: str = ""


@dataclass(frozen=True)
class Case:
    """One method to time: gradattr's call and the peers' calls computing the same method on the same batch;
    ``slow``: seconds per call (timed with :attr:`Prepared.slow`); ``params``: settings another library's
    peer needs to compute the same thing (``steps``, ``window``, ...)."""

    key: str  # gradattr method name
    label: str
    ours: Callable[[], Tensor]
    peers: tuple[Peer, ...] = ()
    slow: bool = False
    params: dict[str, Any] = field(default_factory=dict)  # the method's settings, for peers added later


@dataclass
class PeerResult:
    """One library's measurements on a case: median seconds, ratios as medians of per-round ratios."""

    seconds: float | None = None
    over: float | None = None  # gradattr / peer
    speedup: float | None = None  # peer / gradattr
    max_diff: float | None = None
    note: str = ""


@dataclass
class Comparison:
    """A case's measurements: gradattr's and the floor's median seconds, gradattr / floor, and each library."""

    key: str
    label: str
    ours: float
    floor: float
    over_floor: float
    peers: dict[str, PeerResult]


def compare(timing: Timing, floor: Callable[[], Tensor], case: Case) -> Comparison:
    """Time gradattr and every peer of ``case`` in the same rounds as the floor. A peer that raises on its
    warm-up call (Captum rejecting a model) is a result, reported in its note, not a crash."""
    contenders = {"ours": case.ours}
    warmed = {"ours": case.ours().detach()}
    results: dict[str, PeerResult] = {}
    for i, peer in enumerate(case.peers):
        run = quiet(peer.run)
        try:
            warmed[f"peer{i}"] = run().detach()
            contenders[f"peer{i}"] = run
        except Exception as exc:
            if peer.library not in results:
                results[peer.library] = PeerResult(
                    note=f"{peer.library} n/a ({type(exc).__name__}: {str(exc).splitlines()[0][:60]})"
                )
    floors, times, outputs = timing.rounds(floor, contenders, warmed)
    comparison = Comparison(
        case.key,
        case.label,
        ours=statistics.median(times["ours"]),
        floor=statistics.median(floors),
        over_floor=paired_median(times["ours"], floors),
        peers=results,
    )
    for library in dict.fromkeys(peer.library for peer in case.peers):
        timed = [i for i, peer in enumerate(case.peers) if peer.library == library and f"peer{i}" in times]
        if not timed:
            continue
        best = min(timed, key=lambda i: statistics.median(times[f"peer{i}"]))
        peer, theirs = case.peers[best], times[f"peer{best}"]
        result = PeerResult(
            seconds=statistics.median(theirs),
            over=paired_median(times["ours"], theirs),
            speedup=paired_median(theirs, times["ours"]),
            note=peer.note,
        )
        if peer.convert is not None:
            result.max_diff = (outputs["ours"] - peer.convert(outputs[f"peer{best}"])).abs().max().item()
        comparison.peers[library] = result
    return comparison


@dataclass
class Row:
    """One method's measurements against Captum: medians in seconds, ratios as medians of per-round ratios."""

    key: str  # gradattr method name
    label: str
    ours: float
    floor: float
    over_floor: float
    captum: float | None = None
    over_captum: float | None = None
    note: str = ""
    max_diff: float | None = None

    @classmethod
    def from_comparison(cls, comparison: Comparison, library: str = "Captum") -> Row:
        """The columns of ``bench_core``'s table: gradattr, the floor and one library."""
        peer = comparison.peers.get(library, PeerResult())
        return cls(
            comparison.key,
            comparison.label,
            comparison.ours,
            comparison.floor,
            comparison.over_floor,
            captum=peer.seconds,
            over_captum=peer.over,
            note=peer.note,
            max_diff=peer.max_diff,
        )


def measure(
    timing: Timing,
    floor: Callable[[], Tensor],
    key: str,
    ours: Callable[[], Tensor],
    theirs: Callable[[], Tensor],
    convert: Callable[[Tensor], Tensor] | None = identity,
    label: str | None = None,
) -> Row:
    """Time gradattr and Captum against the floor. ``convert`` maps Captum's output onto gradattr's
    definition for the max|Δ| column (``None``: the two compute different quantities, no column)."""
    case = Case(key, label or key, ours, (Peer("Captum", theirs, convert),))
    return Row.from_comparison(compare(timing, floor, case))


@dataclass(frozen=True)
class Prepared:
    """A workload ready to time: the seeded model (eval, frozen), a batch, its targets and the floor."""

    model: nn.Module
    x: Tensor
    target: Tensor
    fast: Timing
    slow: Timing

    def floor(self) -> Tensor:
        """One forward + backward of the target logits w.r.t. the inputs."""
        xg = self.x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(self.model(xg).gather(1, self.target[:, None]).sum(), xg)
        return g

    def timing(self, case: Case) -> Timing:
        """The protocol for ``case``: ms-scale or seconds-scale."""
        return self.slow if case.slow else self.fast

    def run(self, case: Case) -> Comparison:
        """Time ``case`` on this workload."""
        return compare(self.timing(case), self.floor, case)


def prepare(work: Workload, quick: bool) -> Prepared:
    """Build the seeded model and batch of ``work``, with the timing protocol for ms- and s-scale methods."""
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = work.build().eval()
    randomise_batchnorm(model, gen)
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.randn((BATCH, *work.shape), generator=gen)
    target = torch.randint(0, 10, (BATCH,), generator=gen)
    fast = Timing(0.3, 5, 1) if quick else Timing(1.0, 10, 1)  # ms-scale methods
    slow = Timing(0.0, 1, 3) if quick else Timing(0.0, 3, 5)  # IG, occlusion: seconds per call
    return Prepared(model, x, target, fast, slow)


def captum_peers(*peers: Peer) -> tuple[Peer, ...]:
    """``peers`` where Captum imports, else none (the calls name Captum's classes only when run)."""
    return peers if captum is not None else ()


def core_cases(prepared: Prepared, work: Workload, quick: bool) -> list[Case]:
    """Ancona et al.'s methods and occlusion on ``prepared``, with Captum's implementations as peers."""
    model, x, target = prepared.model, prepared.x, prepared.target
    zeros = torch.zeros_like(x)

    def ours(method: str, **opts: Any) -> Callable[[], Tensor]:
        return lambda: gradattr.attribute(model, x, method=method, target=target, **opts)

    cases = [
        Case(
            "saliency",
            "saliency",
            ours("saliency"),
            captum_peers(Peer("Captum", lambda: Saliency(model).attribute(x, target, abs=True))),
        ),
        Case(
            "gradient_x_input",
            "gradient_x_input",
            ours("gradient_x_input"),
            captum_peers(Peer("Captum", lambda: InputXGradient(model).attribute(x, target))),
        ),
        Case(
            "epsilon_lrp",
            "epsilon_lrp",
            ours("epsilon_lrp"),
            # Captum's default rules: ε = 1e-9 on every layer; gradattr: ε = 1e-4 on activations
            captum_peers(Peer("Captum", lambda: LRP(model).attribute(x, target), convert=None)),
        ),
        Case(
            "deeplift",
            "deeplift",
            ours("deeplift"),
            captum_peers(Peer("Captum", lambda: DeepLift(model).attribute(x, baselines=zeros, target=target))),
        ),
        Case(
            "integrated_gradients",
            f"integrated_gradients({IG_STEPS})",
            ours("integrated_gradients", steps=IG_STEPS),
            captum_peers(
                Peer(
                    "Captum",
                    lambda: IntegratedGradients(model).attribute(
                        x,
                        baselines=zeros,
                        target=target,
                        n_steps=IG_STEPS,
                        method="riemann_right",
                        internal_batch_size=CAPTUM_IG_INTERNAL_BATCH,
                    ),
                )
            ),
            slow=True,
            params={"steps": IG_STEPS},
        ),
    ]
    batches = CAPTUM_OCCLUSION_BATCHES[-1:] if quick else CAPTUM_OCCLUSION_BATCHES
    cases += [occlusion_case(model, x, target, window, batches) for window in work.occlusion_windows]
    return cases


def occlusion_case(
    model: nn.Module, x: Tensor, target: Tensor, window: tuple[int, ...], captum_batches: tuple[int, ...]
) -> Case:
    """Occlusion with window = stride; Captum at each perturbations_per_eval (timed in the same rounds, the
    fastest reported).

    With window = stride every feature is covered by exactly one window, so SPEC's spread over the window
    is Captum's per-window drop divided by |window|: gradattr = Captum / |window|.
    """
    size = math.prod(window)

    def ours() -> Tensor:
        return gradattr.attribute(model, x, method="occlusion", target=target, window=window, stride=window)

    def captum_occlusion(ppe: int) -> Callable[[], Tensor]:
        return lambda: Occlusion(model).attribute(
            x, target=target, sliding_window_shapes=window, strides=window, perturbations_per_eval=ppe
        )

    peers = captum_peers(
        *(
            Peer("Captum", captum_occlusion(ppe), lambda t: t / size, f"Captum perturbations_per_eval={ppe}")
            for ppe in captum_batches
        )
    )
    label = "occlusion " + "x".join(map(str, window)) + " stride=window"
    return Case("occlusion", label, ours, peers, slow=True, params={"window": window})


def run_workload(work: Workload, quick: bool) -> list[Row]:
    """Build the model and time every method against the floor and Captum."""
    prepared = prepare(work, quick)
    return [Row.from_comparison(prepared.run(case)) for case in core_cases(prepared, work, quick)]


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    """PASS/MISS marker."""
    return "PASS" if ok else "MISS"


def targets(work: Workload, rows: list[Row]) -> list[str]:
    """The issue's performance targets evaluated on one model (paired ratios)."""
    by = {r.key: r for r in rows}
    lines = []
    for key in ("gradient_x_input", "epsilon_lrp", "deeplift"):
        ratio = by[key].over_floor
        lines.append(f"  [{verdict(ratio <= 1.3)}] {key} <= 1.3 x floor: {ratio:.2f} x")
    ig = by["integrated_gradients"].over_floor / IG_STEPS
    lines.append(f"  [{verdict(ig <= 1.1)}] IG({IG_STEPS}) <= 1.1 x {IG_STEPS} x floor: {ig:.2f} x")
    for row in rows:
        if row.key == "occlusion" and row.over_captum is not None:
            speedup = 1 / row.over_captum
            lines.append(f"  [{verdict(speedup > 1)}] {row.label} faster than Captum: {speedup:.2f} x")
    dl = by["deeplift"]
    if work.build is mnist_cnn and dl.over_captum is not None:
        speedup = 1 / dl.over_captum
        lines.append(f"  [{verdict(speedup >= 2)}] DeepLIFT >= 2x faster than Captum: {speedup:.2f} x")
    return lines


def fmt(value: float | None, scale: float = 1.0, width: int = 10) -> str:
    """Right-aligned number with two decimals, or a dash."""
    return f"{'-':>{width}}" if value is None else f"{scale * value:{width}.2f}"


def print_table(work: Workload, rows: list[Row]) -> None:
    """One model's table followed by its targets."""
    floor_ms = 1e3 * statistics.median(r.floor for r in rows)
    print(f"\n== {work.name}  (batch {BATCH}, input {work.shape})  floor = {floor_ms:.2f} ms")
    header = f"{'method':<30}{'gradattr ms':>12}{'x floor':>9}{'Captum ms':>12}{'ours/Captum':>13}  {'max|Δ|':>9}  note"
    print(header)
    print("-" * len(header))
    for r in rows:
        diff = f"{r.max_diff:9.1e}" if r.max_diff is not None else f"{'-':>9}"
        print(
            f"{r.label:<30}{fmt(r.ours, 1e3, 12)}{fmt(r.over_floor, 1, 9)}{fmt(r.captum, 1e3, 12)}"
            f"{fmt(r.over_captum, 1, 13)}  {diff}  {r.note}"
        )
    print("targets:")
    for line in targets(work, rows):
        print(line)


def main() -> None:
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats; Captum occlusion at one batching")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (default 1: stable on a shared 2-core machine)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if captum is None:
        print(f"Captum not importable ({CAPTUM_MISSING}): gradattr and the floor only")
    print(
        f"gradattr bench_core | torch {torch.__version__} | captum {getattr(captum, '__version__', '-')} | "
        f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} | "
        f"torch threads = {torch.get_num_threads()} | "
        f"float32 | gradattr default options | Captum IG internal_batch_size={CAPTUM_IG_INTERNAL_BATCH}"
    )
    for work in WORKLOADS:
        print_table(work, run_workload(work, args.quick))


if __name__ == "__main__":
    main()
