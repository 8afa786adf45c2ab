"""gradattr's Grad-CAM family beside pytorch-grad-cam 1.5.7, at the layer's resolution, before any scaling.

torchvision ResNet-50 (layer ``layer4``, 7x7) and VGG-16 (``features.29``, the ReLU after the last convolution,
14x14) with random weights (seeded; BatchNorm running statistics and affine parameters randomised), eval mode,
float32, a few N(0, 1) images at 224x224 with fixed targets. For GradCAM (a sanity row), GradCAM++, HiResCAM,
XGradCAM, LayerCAM and EigenCAM:

- pytorch-grad-cam's raw map: its ``ActivationsAndGradients`` forward pass, the summed ``ClassifierOutputTarget``
  scores' backward pass (as ``BaseCAM.forward``), then its ``get_cam_image`` on the activations and gradients it
  recorded and ``np.maximum(cam, 0)`` (what ``compute_cam_per_layer`` does before ``scale_cam_image`` min-max
  scales and resizes it);
- gradattr's ``attribute(model, x, method=..., layer=..., target=..., upsample=False)``;
- ``same A, g``: gradattr's weighting (``gradattr.methods.cams``) applied to pytorch-grad-cam's own activations and
  gradients, which isolates the formula from the two forward/backward passes;
- Grad-CAM++ keeps pytorch-grad-cam's 1e-6 in the denominator of α: where g² is far below 1e-6 (random
  weights: the median |g| is printed) that term dominates α, and without it the maps differ by up to 156 %.

Differences: max |ours − theirs| and that ÷ max |theirs|. Eigen-CAM is compared before the ReLU (``relu=False``
against ``get_cam_image``), up to SVD's sign: the sign that pytorch-grad-cam's SVD happened to give is printed.

Usage (the peer venv, gradattr from the checkout):
    PYTHONPATH=src /work/peers-venv/bin/python benchmarks/peers/gradcam_family.py
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import Tensor, nn

import gradattr
from gradattr.methods import cams
from gradattr.methods.gradcam import gradcam_weights

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fmt, header, markdown_table, print_table

OUT = Path(__file__).resolve().parent / "GRADCAM_FAMILY.md"
COMMAND = "PYTHONPATH=src /work/peers-venv/bin/python benchmarks/peers/gradcam_family.py"
IMAGES = 3
TARGETS = [1, 207, 980]
MODELS: dict[str, tuple[Callable[[], nn.Module], str]] = {
    "resnet50": (lambda: torchvision.models.resnet50(weights=None), "layer4"),
    "vgg16": (lambda: torchvision.models.vgg16(weights=None), "features.29"),
}
# method -> (pytorch-grad-cam class, gradattr's weighting or None for Eigen-CAM)
METHODS: dict[str, tuple[Any, Callable[[Tensor, Tensor], Tensor] | None]] = {
    "gradcam": (GradCAM, gradcam_weights),
    "gradcam_plus_plus": (GradCAMPlusPlus, cams.gradcam_plus_plus_weights),
    "hirescam": (HiResCAM, cams.hirescam_weights),
    "xgradcam": (XGradCAM, cams.xgradcam_weights),
    "layercam": (LayerCAM, cams.layercam_weights),
    "eigencam": (EigenCAM, None),
}


def random_model(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    """torchvision's initialisation, then every BatchNorm's running statistics and affine parameters drawn."""
    torch.manual_seed(seed)
    model = build()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_(0.0, 0.2)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.2)
    return model.eval()


def peer_raw(peer_class: Any, model: nn.Module, layer: nn.Module, x: Tensor) -> tuple[np.ndarray, np.ndarray, Any]:
    """pytorch-grad-cam's map before its ReLU and scaling, (B, H, W), with the activations and gradients it
    recorded (gradients None for Eigen-CAM)."""
    peer = peer_class(model=model, target_layers=[layer])
    targets = [ClassifierOutputTarget(c) for c in TARGETS]
    outputs = peer.activations_and_grads(x)
    if peer.uses_gradients:
        model.zero_grad()
        sum(target(output) for target, output in zip(targets, outputs, strict=True)).backward()
    activations = peer.activations_and_grads.activations[0].numpy()
    gradients = peer.activations_and_grads.gradients[0].numpy() if peer.uses_gradients else None
    raw = peer.get_cam_image(x, layer, targets, activations, gradients, False)
    peer.activations_and_grads.release()
    return raw, activations, gradients


def differences(ours: np.ndarray, theirs: np.ndarray) -> tuple[float, float]:
    diff = float(np.abs(ours - theirs).max())
    return diff, diff / max(float(np.abs(theirs).max()), 1e-30)


def compare(model_name: str, method: str, model: nn.Module, layer_name: str, x: Tensor) -> list[Any]:
    peer_class, weights = METHODS[method]
    layer = dict(model.named_modules())[layer_name]
    raw, activations, gradients = peer_raw(peer_class, model, layer, x)
    relu = method != "eigencam"
    ours = gradattr.attribute(model, x, method=method, layer=layer_name, target=TARGETS, upsample=False, relu=relu)
    ours = ours[:, 0].detach().numpy()
    sign = ""
    if relu:
        theirs = np.maximum(raw, 0)
        a, g = torch.from_numpy(activations), torch.from_numpy(gradients)
        same_inputs = differences(torch.relu((weights(a, g) * a).sum(1)).numpy(), theirs)
    else:  # Eigen-CAM: SVD's sign per sample, then the same projection up to rounding
        signs = np.sign((ours * raw).reshape(len(raw), -1).sum(1))
        theirs = raw * signs[:, None, None]
        sign = " ".join(f"{s:+.0f}" for s in signs)
        same_inputs = differences(cams.principal_projection(torch.from_numpy(activations)).numpy(), theirs)
    absolute, relative = differences(ours, theirs)
    g_scale = "-" if gradients is None else fmt(float(np.median(np.abs(gradients[gradients != 0]))), ".2e")
    return [model_name, layer_name, method, tuple(raw.shape), fmt(float(np.abs(theirs).max())), fmt(absolute, ".2e"),
            fmt(relative, ".2e"), fmt(same_inputs[1], ".2e"), g_scale, sign or "-"]  # fmt: skip


def main() -> None:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(min(8, torch.get_num_threads()))
    x = torch.randn(IMAGES, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    rows = []
    for seed, (model_name, (build, layer_name)) in enumerate(MODELS.items()):
        model = random_model(build, seed)
        for method in METHODS:
            rows.append(compare(model_name, method, model, layer_name, x))
            print(*rows[-1], sep=" | ", flush=True)
    columns = ["model", "layer", "method", "map shape", "max |theirs|", "max |ours − theirs|", "÷ max |theirs|",
               "same A, g: ÷ max", "median |g| (g ≠ 0)", "Eigen-CAM SVD sign"]  # fmt: skip
    print_table(columns, rows)
    lines = header("gradattr's Grad-CAM family beside pytorch-grad-cam", ["torch", "torchvision", "grad-cam"])
    lines += [f"`{COMMAND}`", "", (__doc__ or "").split("\n\nUsage")[0], "", *markdown_table(columns, rows), ""]
    OUT.write_text("\n".join(lines))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
