"""Side-by-side timings of gradattr's core methods, Captum 0.9 and the autograd floor.

floor = one forward + backward of the target logits w.r.t. the inputs (batch 64), the least any
gradient method can cost. For every model the table prints, per method: gradattr's median time, its
ratio to the floor, Captum's median time, gradattr/Captum, and max|gradattr - Captum| where the two
compute the same quantity (a check that the timed calls do the same work).

Targets (from the issue), marked PASS/MISS per model:
  Gradient*Input, eps-LRP, DeepLIFT <= 1.3 x floor;  IG(50) <= 1.1 x 50 x floor;
  Occlusion faster than Captum's Occlusion;  DeepLIFT >= 2x faster than Captum's DeepLift on the CNN.

Usage: python benchmarks/bench_core.py [--quick] [--threads N]
"""

from __future__ import annotations

import argparse
import math
import platform
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import captum
import torch
from captum.attr import LRP, DeepLift, InputXGradient, IntegratedGradients, Occlusion, Saliency
from torch import Tensor, nn
from torch.utils import benchmark

import gradattr

BATCH = 64
IG_STEPS = 50
IG_INTERNAL_BATCH = 8 * BATCH  # samples per forward for Captum IG (and gradattr, if it takes batch_size)
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
    Workload("MLP 784-512-512-10", mnist_mlp, (784,), ((16,), (1,))),
    Workload("CNN 2conv+2fc", mnist_cnn, (1, 28, 28), ((1, 4, 4),)),
    Workload("ResNet-like 3x32x32", small_resnet, (3, 32, 32), ((3, 4, 4),)),
)


# --------------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------------


def median_seconds(fn: Callable[[], Any], min_run_time: float) -> float:
    """Median time of ``fn()`` after one warm-up call (torch.utils.benchmark, current thread count)."""
    fn()
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_run_time).median


def quiet(fn: Callable[[], Tensor]) -> Callable[[], Tensor]:
    """``fn`` with warnings suppressed (Captum warns about its hooks on every call)."""

    def run() -> Tensor:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn()

    return run


def gradattr_accepts(method: str, option: str, value: Any) -> bool:
    """Whether ``gradattr.attribute(..., method=method, option=value)`` is accepted (probe on a tiny model)."""
    try:
        gradattr.attribute(nn.Linear(2, 2), torch.ones(1, 2), method=method, target=0, **{option: value})
    except (TypeError, ValueError):
        return False
    return True


@dataclass
class Row:
    """One method's measurements (seconds); ``key`` is the gradattr method name."""

    key: str
    label: str
    ours: float
    captum: float | None = None
    captum_note: str = ""
    max_diff: float | None = None


def measure(
    ours: Callable[[], Tensor],
    theirs: Callable[[], Tensor],
    min_run_time: float,
    comparable: bool,
    key: str,
    label: str | None = None,
) -> Row:
    """Time gradattr and Captum; record max|Δ| when both compute the same quantity."""
    row = Row(key, label or key, ours=median_seconds(ours, min_run_time))
    try:
        theirs_out = theirs()
    except Exception as exc:  # Captum rejecting a model is a result, not a crash
        row.captum_note = f"n/a ({type(exc).__name__}: {str(exc).splitlines()[0][:70]})"
        return row
    row.captum = median_seconds(theirs, min_run_time)
    if comparable:
        row.max_diff = (ours().detach() - theirs_out.detach()).abs().max().item()
    return row


def run_workload(work: Workload, quick: bool) -> tuple[float, list[Row]]:
    """Build the model, time the floor and every method; returns (floor seconds, rows)."""
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = work.build().eval()
    randomise_batchnorm(model, gen)
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.randn((BATCH, *work.shape), generator=gen)
    target = torch.randint(0, 10, (BATCH,), generator=gen)
    zeros = torch.zeros_like(x)
    min_run_time = 0.3 if quick else 1.0

    def floor() -> Tensor:
        xg = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(model(xg).gather(1, target[:, None]).sum(), xg)
        return g

    floor_s = median_seconds(floor, min_run_time)

    def ours(method: str, **opts: Any) -> Callable[[], Tensor]:
        return lambda: gradattr.attribute(model, x, method=method, target=target, **opts)

    ig_opts: dict[str, Any] = {"steps": IG_STEPS}
    if gradattr_accepts("integrated_gradients", "batch_size", IG_INTERNAL_BATCH):
        ig_opts["batch_size"] = IG_INTERNAL_BATCH

    rows = [
        measure(
            ours("saliency"),
            quiet(lambda: Saliency(model).attribute(x, target=target, abs=True)),
            min_run_time,
            True,
            "saliency",
        ),
        measure(
            ours("gradient_x_input"),
            quiet(lambda: InputXGradient(model).attribute(x, target=target)),
            min_run_time,
            True,
            "gradient_x_input",
        ),
        measure(
            ours("epsilon_lrp"),
            quiet(lambda: LRP(model).attribute(x, target=target)),
            min_run_time,
            False,  # Captum's default rules put ε = 1e-9 on every layer, gradattr ε = 1e-4 on activations
            "epsilon_lrp",
        ),
        measure(
            ours("deeplift"),
            quiet(lambda: DeepLift(model).attribute(x, baselines=zeros, target=target)),
            min_run_time,
            True,
            "deeplift",
        ),
        measure(
            ours("integrated_gradients", **ig_opts),
            quiet(
                lambda: IntegratedGradients(model).attribute(
                    x,
                    baselines=zeros,
                    target=target,
                    n_steps=IG_STEPS,
                    method="riemann_right",
                    internal_batch_size=IG_INTERNAL_BATCH,
                )
            ),
            min_run_time,
            True,
            "integrated_gradients",
            f"integrated_gradients({IG_STEPS})",
        ),
    ]
    for window in work.occlusion_windows:
        if quick and math.prod(window) == 1:
            continue
        rows.append(occlusion_row(model, x, target, window, min_run_time))
    return floor_s, rows


def occlusion_row(model: nn.Module, x: Tensor, target: Tensor, window: tuple[int, ...], min_run_time: float) -> Row:
    """Occlusion with window = stride; Captum timed at each perturbations_per_eval, fastest reported.

    Compared numerically after converting Captum's per-count average to SPEC's per-window-size spread;
    with window = stride every feature is covered once, so gradattr = Captum / |window|.
    """
    label = "occlusion " + "x".join(map(str, window)) + "/" + "x".join(map(str, window))
    ours = lambda: gradattr.attribute(  # noqa: E731
        model, x, method="occlusion", target=target, window=window, stride=window
    )
    row = Row("occlusion", label, ours=median_seconds(ours, min_run_time))
    best: tuple[float, int] | None = None
    for ppe in CAPTUM_OCCLUSION_BATCHES:
        theirs = quiet(
            lambda ppe=ppe: Occlusion(model).attribute(
                x, target=target, sliding_window_shapes=window, strides=window, perturbations_per_eval=ppe
            )
        )
        t = median_seconds(theirs, min_run_time)
        if best is None or t < best[0]:
            best = (t, ppe)
            row.max_diff = (ours() - theirs() / math.prod(window)).abs().max().item()
    assert best is not None
    row.captum, row.captum_note = best[0], f"ppe={best[1]}"
    return row


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    """PASS/MISS marker."""
    return "PASS" if ok else "MISS"


def targets(work: Workload, floor_s: float, rows: list[Row]) -> list[str]:
    """The issue's performance targets evaluated on one model."""
    by = {r.key: r for r in rows}
    lines = []
    for key in ("gradient_x_input", "epsilon_lrp", "deeplift"):
        ratio = by[key].ours / floor_s
        lines.append(f"  [{verdict(ratio <= 1.3)}] {key} <= 1.3 x floor: {ratio:.2f} x")
    ig = by["integrated_gradients"].ours / (IG_STEPS * floor_s)
    lines.append(f"  [{verdict(ig <= 1.1)}] IG({IG_STEPS}) <= 1.1 x {IG_STEPS} x floor: {ig:.2f} x")
    for row in rows:
        if row.key == "occlusion" and row.captum is not None:
            speedup = row.captum / row.ours
            lines.append(f"  [{verdict(speedup > 1)}] {row.label} faster than Captum: {speedup:.2f} x")
    dl = by["deeplift"]
    if work.build is mnist_cnn and dl.captum is not None:
        speedup = dl.captum / dl.ours
        lines.append(f"  [{verdict(speedup >= 2)}] DeepLIFT >= 2x faster than Captum: {speedup:.2f} x")
    return lines


def fmt_ms(seconds: float | None) -> str:
    """Milliseconds, or a dash."""
    return f"{'-':>10}" if seconds is None else f"{1e3 * seconds:10.2f}"


def print_table(work: Workload, floor_s: float, rows: list[Row]) -> None:
    """One model's table followed by its targets."""
    print(f"\n== {work.name}  (batch {BATCH}, input {work.shape})  floor = {1e3 * floor_s:.2f} ms")
    header = f"{'method':<26}{'gradattr ms':>12}{'x floor':>9}{'Captum ms':>12}{'ours/Captum':>13}  {'max|Δ|':>9}  note"
    print(header)
    print("-" * len(header))
    for r in rows:
        ratio = f"{r.ours / r.captum:13.2f}" if r.captum is not None else f"{'-':>13}"
        diff = f"{r.max_diff:9.1e}" if r.max_diff is not None else f"{'-':>9}"
        print(
            f"{r.label:<26}{fmt_ms(r.ours):>12}{r.ours / floor_s:9.2f}{fmt_ms(r.captum):>12}{ratio}"
            f"  {diff}  {r.captum_note}"
        )
    print("targets:")
    for line in targets(work, floor_s, rows):
        print(line)


def main() -> None:
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter timing runs, skip occlusion-1")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ig_batch_note = (
        "also gradattr batch_size"
        if gradattr_accepts("integrated_gradients", "batch_size", IG_INTERNAL_BATCH)
        else "Captum only; gradattr default"
    )
    print(
        f"gradattr bench_core | torch {torch.__version__} | captum {captum.__version__} | "
        f"{platform.processor() or platform.machine()} | torch threads = {torch.get_num_threads()} | "
        f"float32 | IG internal batch {IG_INTERNAL_BATCH} "
        f"({ig_batch_note})"
    )
    for work in WORKLOADS:
        floor_s, rows = run_workload(work, args.quick)
        print_table(work, floor_s, rows)


if __name__ == "__main__":
    main()
