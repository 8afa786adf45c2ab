"""Speed of gradattr's LRP composites beside Zennit 0.5.1 (the "Speed" section of LRP_ZENNIT.md).

torchvision VGG-16 and ResNet-50 with random weights (seeded; BN statistics and affine parameters randomised as in
zennit_lrp.py), eval mode, float32, CPU, ``torch.set_num_threads(2)``, batch 8 at 224x224, N(0, 1) inputs clamped
to [-2, 2.5], targets 0..7. Per composite, the median of 3 timed calls (one untimed warm-up call per model and
side before the first composite) of

- gradattr: ``attribute(model, x, method="lrp", target=t, composite=NAME)`` (``low=-2.0, high=2.5`` for the box);
- Zennit: the same map as in zennit_lrp.py, building the composite (canonizers: none for VGG-16,
  ``ResNetCanonizer`` for ResNet-50) and registering it inside the timed call:
  ``with Gradient(model, composite) as a: a(x, lambda o: eye(1000)[t] * o)``;
- floor: one plain forward and backward of the summed target logits w.r.t. the input.

Ratios: gradattr ÷ floor (target ≤ 2) and Zennit ÷ gradattr (target ≥ 1.5). ``--profile`` adds, per model,
torch.profiler's ops by self CPU time for one gradattr ``epsilon_plus`` call.

Usage (the peer venv, gradattr from the checkout; run on an otherwise idle machine):
    PYTHONPATH=src /work/peers-venv/bin/python benchmarks/peers/lrp_speed.py [--profile]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import Tensor, nn
from zennit.attribution import Gradient
from zennit.torchvision import ResNetCanonizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fmt, header, markdown_table, print_table, timed
from zennit_lrp import (
    HIGH,
    LOW,
    OUT,
    SPEED_END,
    SPEED_START,
    gradattr_map,
    output_relevance,
    randomise_bn,
    zennit_composite,
)

from gradattr.composites import COMPOSITES

COMMAND = "PYTHONPATH=src /work/peers-venv/bin/python benchmarks/peers/lrp_speed.py --profile"
BATCH, SIZE, REPEATS = 8, 224, 3
MODELS: dict[str, Callable[[], list[Any]]] = {
    "vgg16": lambda: [],
    "resnet50": lambda: [ResNetCanonizer()],
}


def build(name: str) -> nn.Module:
    torch.manual_seed(0)
    return randomise_bn(getattr(torchvision.models, name)(weights=None)).eval()


def floor(model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x).gather(1, target[:, None]).sum(), x)
    return grad


def theirs(model: nn.Module, x: Tensor, target: Tensor, name: str, canonizers: Callable[[], list[Any]]) -> Tensor:
    with Gradient(model, zennit_composite(name, canonizers(), x)) as attributor:
        _, rel = attributor(x.clone(), output_relevance(target))
    return rel


def profile(model: nn.Module, x: Tensor, target: Tensor, rows: int = 14) -> list[str]:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        gradattr_map(model, x, target, "epsilon_plus")
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    table = [
        [e.key, e.count, fmt(e.self_cpu_time_total / 1e6, ".2f"), fmt(100 * e.self_cpu_time_total / total, ".1f")]
        for e in events[:rows]
    ]
    print_table(["op", "calls", "self CPU s", "%"], table)
    return markdown_table(["op", "calls", "self CPU s", "% of self CPU"], table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(1234)
    x = torch.randn(BATCH, 3, SIZE, SIZE).clamp(LOW, HIGH)
    target = torch.arange(BATCH)
    start = time.perf_counter()
    load_before = " ".join(f"{v:.2f}" for v in os.getloadavg())
    rows: list[list[Any]] = []
    profiles: list[str] = []
    for net in args.models.split(","):
        model, canonizers = build(net), MODELS[net]
        t_floor, _, _ = timed(lambda model=model: floor(model, x, target), REPEATS)
        for i, name in enumerate(COMPOSITES):
            warm = 1 if i == 0 else 0
            t_ours, _, a = timed(lambda model=model, name=name: gradattr_map(model, x, target, name), REPEATS, warm)
            t_theirs, _, b = timed(
                lambda model=model, name=name, c=canonizers: theirs(model, x, target, name, c), REPEATS, warm
            )
            rel = ((a - b).abs().max() / b.abs().max()).item()
            row = [
                net,
                name,
                fmt(t_floor, ".2f"),
                fmt(t_ours, ".2f"),
                fmt(t_theirs, ".2f"),
                fmt(t_ours / t_floor, ".2f"),
                fmt(t_theirs / t_ours, ".2f"),
                fmt(rel, ".1e"),
            ]
            rows.append(row)
            print("  ".join(str(v) for v in row), flush=True)
        if args.profile:
            print(f"profile {net}", flush=True)
            profiles += [f"gradattr ``epsilon_plus`` on {net}, one call, torch.profiler (self CPU time):", ""]
            profiles += [*profile(model, x, target), ""]
        del model
    cols = [
        "model",
        "composite",
        "floor s",
        "gradattr s",
        "Zennit s",
        "gradattr ÷ floor",
        "Zennit ÷ gradattr",
        "max|Δ| ÷ max (float32)",
    ]
    print_table(cols, rows)
    head = header("LRP speed", ["torch", "torchvision", "zennit"])
    section = [
        SPEED_START,
        "## Speed (lrp_speed.py)",
        "",
        *[line for line in head[2:] if line],
        f"- load average before the run {load_before}; run time {time.perf_counter() - start:.0f} s",
        "",
        f"`{COMMAND}`",
        "",
        (__doc__ or "").split("\n\nUsage")[0],
        "",
        *markdown_table(cols, rows),
        "",
        *profiles,
        SPEED_END,
    ]
    old = OUT.read_text() if OUT.exists() else ""
    if SPEED_END in old:
        new = old[: old.index(SPEED_START)] + "\n".join(section) + old[old.index(SPEED_END) + len(SPEED_END) :]
    else:
        new = old + "\n" + "\n".join(section) + "\n"
    OUT.write_text(new)
    print(f"wrote the speed section of {OUT}")


if __name__ == "__main__":
    main()
