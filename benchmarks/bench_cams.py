"""Score-CAM and Ablation-CAM (and Grad-CAM, Grad-CAM++) of gradattr beside pytorch-grad-cam 1.5.7: time and maps.

torchvision ResNet-50 with random weights (seeded; BatchNorm running statistics and affine parameters randomised
as in ``benchmarks/peers/gradcam_family.py``), eval mode, float32, CPU, N(0, 1) images, targets the argmax
classes, the same layer for both. Each method is timed as one call (after a warm-up call of Grad-CAM that
loads the kernels); pytorch-grad-cam's call is its ``cam(input_tensor=x, targets=[ClassifierOutputTarget(c)])``
with its default batch sizes (16 masked images a pass for Score-CAM, 32 ablated copies for Ablation-CAM).

Maps are compared before pytorch-grad-cam's min-max scaling and resizing: its ``get_cam_image`` result, recorded
during the timed call, after ``np.maximum(cam, 0)``, against gradattr's ``upsample=False`` map. Score-CAM's masks
are upsampled bilinearly by both: pytorch-grad-cam's ``UpsamplingBilinear2d`` uses ``align_corners=True``,
gradattr's ``interpolation="linear"`` ``align_corners=False``; for the comparison pytorch-grad-cam's upsampler is
swapped for the same op with ``align_corners=False`` (``--corners`` keeps its own; the masks then differ).

Also timed: gradattr's Ablation-CAM in full passes (the whole model on the B·K copies, as pytorch-grad-cam runs it),
to show what running only the part after the layer pays, and the number of distinct Score-CAM masks.

Usage (the peer venv, gradattr from the checkout):
    PYTHONPATH=src /work/peers-venv/bin/python benchmarks/bench_cams.py [--batch 2] [--size 224] [--layer layer4]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

os.environ.setdefault("TQDM_DISABLE", "1")  # pytorch-grad-cam's progress bars

import numpy as np
import torch
import torchvision
from pytorch_grad_cam import AblationCAM, GradCAM, GradCAMPlusPlus, ScoreCAM, score_cam
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import Tensor, nn

import gradattr
from gradattr.methods import perturbation_cams

sys.path.insert(0, str(Path(__file__).resolve().parent / "peers"))
from _common import fmt, header, markdown_table, print_table
from gradcam_family import random_model

OUT = Path(__file__).resolve().parent / "CAMS.md"
PEERS = {"scorecam": ScoreCAM, "ablationcam": AblationCAM, "gradcam": GradCAM, "gradcam_plus_plus": GradCAMPlusPlus}


class _Upsampler(nn.Module):
    """pytorch-grad-cam's ``UpsamplingBilinear2d(size=...)`` with ``align_corners=False`` (gradattr's)."""

    def __init__(self, size: tuple[int, ...]) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.interpolate(x, size=self.size, mode="bilinear", align_corners=False)


def peer_call(method: str, model: nn.Module, layer: nn.Module, x: Tensor, targets: list[int]) -> Callable[[], Any]:
    """pytorch-grad-cam's call; it records its map before the ReLU and scaling in the returned call's ``raw``."""
    peer = PEERS[method](model=model, target_layers=[layer])
    recorded: list[np.ndarray] = []
    cam_image = peer.get_cam_image

    def record(*args: Any, **kwargs: Any) -> np.ndarray:
        recorded.append(cam_image(*args, **kwargs))
        return recorded[-1]

    peer.get_cam_image = record

    def call() -> np.ndarray:
        recorded.clear()
        peer(input_tensor=x, targets=[ClassifierOutputTarget(c) for c in targets])
        return np.maximum(recorded[-1], 0)

    return call


def distinct_masks(model: nn.Module, layer: nn.Module, x: Tensor) -> tuple[int, int]:
    """(distinct Score-CAM masks over the batch, B·K): constant maps share the zero mask."""
    seen: list[Tensor] = []
    handle = layer.register_forward_hook(lambda module, args, out: seen.append(out.detach()))
    with torch.no_grad():
        model(x)
    handle.remove()
    maps = seen[0].flatten(2)
    maps = maps.masked_fill((maps.amax(2) == maps.amin(2)).unsqueeze(2), 0)
    return sum(len(torch.unique(m, dim=0)) for m in maps), maps.shape[0] * maps.shape[1]


def seconds(call: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = call()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--layer", default="layer4")
    parser.add_argument("--methods", default="gradcam,gradcam_plus_plus,ablationcam,scorecam")
    parser.add_argument("--corners", action="store_true", help="keep pytorch-grad-cam's align_corners=True")
    parser.add_argument("--no-full", action="store_true", help="skip gradattr's Ablation-CAM in full passes")
    parser.add_argument("--write", action="store_true", help=f"write {OUT.name}")
    args = parser.parse_args()
    model = random_model(lambda: torchvision.models.resnet50(weights=None), 0)
    layer = dict(model.named_modules())[args.layer]
    x = torch.randn(args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        targets = model(x).argmax(1).tolist()
    load = os.getloadavg()
    print(f"load before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; torch threads {torch.get_num_threads()}")
    distinct, total = distinct_masks(model, layer, x)
    print(f"Score-CAM masks: {distinct} distinct of B·K = {total}")
    gradattr.attribute(model, x, method="gradcam", layer=args.layer, target=targets)  # warm-up
    rows = []

    def ours(method: str) -> Callable[[], np.ndarray]:
        return lambda: gradattr.attribute(model, x, method=method, layer=args.layer, target=targets, upsample=False)[
            :, 0
        ].numpy()

    for method in args.methods.split(","):
        upsampler = score_cam.torch.nn.UpsamplingBilinear2d if args.corners else _Upsampler
        with mock.patch.object(score_cam.torch.nn, "UpsamplingBilinear2d", upsampler):
            theirs_s, theirs = seconds(peer_call(method, model, layer, x, targets))
        ours_s, mine = seconds(ours(method))
        diff = float(np.abs(mine - theirs).max())
        scale = max(float(np.abs(theirs).max()), 1e-30)
        rows.append([method, fmt(ours_s), fmt(theirs_s), fmt(theirs_s / ours_s, ".3g"), fmt(diff, ".2e"),
                     fmt(diff / scale, ".2e")])  # fmt: skip
        print(*rows[-1], sep=" | ", flush=True)
        if method == "ablationcam" and not args.no_full:
            with mock.patch.object(perturbation_cams, "_suffix_is_exact", lambda *_: False):
                full_s, full = seconds(ours(method))
            diff = float(np.abs(full - theirs).max())
            rows.append(["ablationcam, full passes", fmt(full_s), fmt(theirs_s), fmt(theirs_s / full_s, ".3g"),
                         fmt(diff, ".2e"), fmt(diff / scale, ".2e")])  # fmt: skip
            print(*rows[-1], sep=" | ", flush=True)
    load_after = os.getloadavg()
    columns = ["method", "gradattr s", "pytorch-grad-cam s", "ratio (theirs ÷ ours)", "max |Δ|", "÷ max |theirs|"]
    print_table(columns, rows)
    if args.write:
        command = f"PYTHONPATH=src /work/peers-venv/bin/python benchmarks/bench_cams.py {' '.join(sys.argv[1:])}"
        title = "gradattr's Score-CAM and Ablation-CAM beside pytorch-grad-cam"
        lines = header(title, ["torch", "torchvision", "grad-cam"])
        lines += [f"`{command}`", "", f"ResNet-50, {args.layer}, batch {args.batch} at {args.size}x{args.size}; "
                  f"torch threads {torch.get_num_threads()}; load average before {load[0]:.2f} {load[1]:.2f} "
                  f"{load[2]:.2f}, after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}; Score-CAM "
                  f"masks: {distinct} distinct of B·K = {total}.", "", *markdown_table(columns, rows), ""]  # fmt: skip
        OUT.write_text("\n".join(lines))
        print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
