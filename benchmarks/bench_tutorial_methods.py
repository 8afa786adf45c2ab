"""Timings of the robustness tutorial's methods (Nielsen et al. 2022) against Captum 0.9 and the floor.

Same models, batch, timing protocol and table as ``bench_core.py`` (imported from it): floor = one
forward + backward of the target logits (batch 64). Rows: Guided Backprop, Deconvnet (Captum
GuidedBackprop / Deconvolution), Grad-CAM upsampled bilinearly (Captum LayerGradCam + interpolate),
Guided Grad-CAM (Captum GuidedGradCam, nearest), SmoothGrad of saliency with 20 samples (Captum
NoiseTunnel over Saliency: different noise, so no max|Δ| column), and Shapley value sampling of 7x7
patches (or 49 feature groups on the MLP) with 5 orderings (Captum ShapleyValueSampling, also different
orderings). Captum's Shapley result gives each feature its group's value; gradattr spreads it evenly.

Usage: python benchmarks/bench_tutorial_methods.py [--quick] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import platform
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

import gradattr
from bench_core import BATCH, WORKLOADS, Case, Peer, Prepared, Row, Workload, captum, captum_peers, fmt, prepare

if captum is not None:
    from captum.attr import (
        Deconvolution,
        GuidedBackprop,
        GuidedGradCam,
        LayerAttribution,
        LayerGradCam,
        NoiseTunnel,
        Saliency,
        ShapleyValueSampling,
    )

SMOOTHGRAD_SAMPLES = 20
SMOOTHGRAD_SIGMA = 0.15  # gradattr's default: σ = 0.15 (max x - min x)
SHAPLEY_SAMPLES = 5
CAM_LAYERS = {"CNN 2conv+2fc": "2", "ResNet-like 3x32x32": "5"}
"""The last convolutional stage of each model (Grad-CAM's usual choice); the MLP has none."""


def feature_groups(shape: tuple[int, ...]) -> Tensor:
    """7x7 patches of an image (all channels together) or 49 contiguous groups of a flat vector."""
    if len(shape) == 1:
        return torch.arange(shape[0]) * 49 // shape[0]
    return gradattr.patches((1, *shape[1:]), 7).expand(shape).contiguous()


def tutorial_cases(prepared: Prepared, work: Workload) -> list[Case]:
    """The robustness tutorial's methods on ``prepared``, with Captum's implementations as peers."""
    model, x, target = prepared.model, prepared.x, prepared.target

    def ours(method: str, **opts: Any) -> Callable[[], Tensor]:
        return lambda: gradattr.attribute(model, x, method=method, target=target, **opts)

    cases = [
        Case(
            "guided_backprop",
            "guided_backprop",
            ours("guided_backprop"),
            captum_peers(Peer("Captum", lambda: GuidedBackprop(model).attribute(x, target))),
        ),
        Case(
            "deconvnet",
            "deconvnet",
            ours("deconvnet"),
            captum_peers(Peer("Captum", lambda: Deconvolution(model).attribute(x, target))),
        ),
    ]
    layer_name = CAM_LAYERS.get(work.name)
    if layer_name is not None:
        layer = dict(model.named_modules())[layer_name]

        def captum_gradcam() -> Tensor:
            cam = LayerGradCam(model, layer).attribute(x, target, relu_attributions=True)
            return LayerAttribution.interpolate(cam, x.shape[2:], interpolate_mode="bilinear").expand_as(x)

        cases += [
            Case("gradcam", "gradcam", ours("gradcam", layer=layer_name), captum_peers(Peer("Captum", captum_gradcam))),
            Case(
                "guided_gradcam",
                "guided_gradcam",
                ours("guided_gradcam", layer=layer_name, interpolation="nearest"),
                captum_peers(Peer("Captum", lambda: GuidedGradCam(model, layer).attribute(x, target))),
            ),
        ]
    sigma = SMOOTHGRAD_SIGMA * float(x.amax() - x.amin())
    groups = feature_groups(work.shape)
    cases += [
        Case(
            "smoothgrad",
            f"smoothgrad({SMOOTHGRAD_SAMPLES})",
            ours("smoothgrad", samples=SMOOTHGRAD_SAMPLES),
            captum_peers(
                Peer(
                    "Captum",
                    lambda: NoiseTunnel(Saliency(model)).attribute(
                        x, nt_samples=SMOOTHGRAD_SAMPLES, stdevs=sigma, target=target, abs=True
                    ),
                    convert=None,
                )
            ),
            slow=True,
            params={"samples": SMOOTHGRAD_SAMPLES, "sigma": SMOOTHGRAD_SIGMA},
        ),
        Case(
            "shapley_sampling",
            f"shapley_sampling({SHAPLEY_SAMPLES}, {int(groups.max()) + 1} groups)",
            ours("shapley_sampling", samples=SHAPLEY_SAMPLES, feature_groups=groups),
            captum_peers(
                Peer(
                    "Captum",
                    lambda: ShapleyValueSampling(model).attribute(
                        x,
                        target=target,
                        n_samples=SHAPLEY_SAMPLES,
                        feature_mask=groups.unsqueeze(0),
                        perturbations_per_eval=16,
                    ),
                    convert=None,
                )
            ),
            slow=True,
        ),
    ]
    return cases


def run_workload(work: Workload, quick: bool) -> list[Row]:
    prepared = prepare(work, quick)
    return [Row.from_comparison(prepared.run(case)) for case in tutorial_cases(prepared, work)]


def print_table(work: Workload, rows: list[Row]) -> None:
    floor_ms = 1e3 * rows[0].floor
    print(f"\n== {work.name}  (batch {BATCH}, input {work.shape})  floor = {floor_ms:.2f} ms")
    header = f"{'method':<34}{'gradattr ms':>12}{'x floor':>9}{'Captum ms':>12}{'Captum/ours':>13}  {'max|Δ|':>9}"
    print(header)
    print("-" * len(header))
    for r in rows:
        diff = f"{r.max_diff:9.1e}" if r.max_diff is not None else f"{'-':>9}"
        speedup = None if r.over_captum is None else 1 / r.over_captum
        print(
            f"{r.label:<34}{fmt(r.ours, 1e3, 12)}{fmt(r.over_floor, 1, 9)}{fmt(r.captum, 1e3, 12)}"
            f"{fmt(speedup, 1, 13)}  {diff}  {r.note}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"gradattr bench_tutorial_methods | torch {torch.__version__} | captum {getattr(captum, '__version__', '-')} | "
        f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} | "
        f"torch threads = {torch.get_num_threads()} | float32"
    )
    for work in WORKLOADS:
        print_table(work, run_workload(work, args.quick))


if __name__ == "__main__":
    main()
