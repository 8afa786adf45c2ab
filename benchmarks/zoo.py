"""Every gradattr method on the torchvision classification zoo and HF transformer configs, beside the floor, Captum,
Zennit and LXT (GitHub issue 19, item 6), written to ``benchmarks/ZOO.md`` and a section of ``benchmarks/RESULTS.md``.

Models (random weights, float32, eval, CPU, batch ``--batch`` = 8, ``--threads`` = 2 torch threads):

- torchvision classification models, built by ``peers/torchvision_zoo.build`` (torchvision's initialisation made
  healthy: BatchNorm statistics calibrated on random batches, affine parameters randomised, all-zero weights
  re-drawn), N(0, 1) images at 224x224 (inception_v3: 299x299). Default order: the item-3 models resnet50, vgg16,
  mobilenet_v2, efficientnet_b0, vit_b_16, then the HF configs, then the rest of the zoo by GFLOPs, until
  ``--budget-minutes``;
- ``hf-gpt2-small``: ``GPT2LMHeadModel(GPT2Config(n_layer=12, n_embd=768, n_head=12, vocab_size=8192))`` at
  sequence ``--seq`` (128), attributed on ``inputs_embeds``, target = the argmax logit at the last position;
- ``hf-bert-tiny``: ``BertForSequenceClassification`` (2 layers, hidden 128, 2 heads, intermediate 512, vocabulary
  8192, 2 labels) at ``--seq``, on ``inputs_embeds``; ``hf-vit-tiny``: ``ViTForImageClassification`` at ViT-Ti size
  (12 layers, hidden 192, 3 heads, intermediate 768, 224x224, patch 16, 1000 labels), on the pixels.

Methods (gradattr's options): saliency, gradient_x_input, integrated_gradients (``steps=--ig-steps``, 16, zero
baseline), smoothgrad (``samples=--samples``, 8), gradient_shap (``samples=--samples``; references: zeros and one
0.1·N(0, 1) draw), deeplift (zero baseline), deeplift_shap (the same references), epsilon_lrp, guided_backprop,
deconvnet, occlusion (``--patch`` 56x56 patches of all channels on images, one token on text; window = stride),
shapley_sampling (the same features, ``samples=2``) and gradcam on CNNs (the last module with a (B, C, H, W)
output, ``torchvision_zoo.cam_layer``).

Peers, where they have the method (a peer that does not import is skipped, and the reason printed):

- Captum 0.9: ``Saliency(abs=True)``, ``InputXGradient``, ``IntegratedGradients`` (same ``n_steps``,
  ``method="riemann_right"`` = gradattr's sum, default ``internal_batch_size``: all steps in one pass, or
  ``--captum-ig-batch`` rows where that does not fit in memory), ``NoiseTunnel(Saliency)``
  smoothgrad (σ = 0.15·(max x − min x), gradattr's default), ``GradientShap`` and ``DeepLiftShap`` (same
  references), ``DeepLift`` (zero baseline), ``GuidedBackprop``, ``Deconvolution``, ``Occlusion`` (same windows and
  strides, ``perturbations_per_eval=--captum-ppe``), ``ShapleyValueSampling`` (same feature mask and
  ``n_samples``; the global RNG seeded like gradattr's orderings), ``LayerGradCam`` + bilinear upsampling;
- Zennit 0.5.1 (``run.zennit_peers``): ``Gradient``, ``IntegratedGradients``, ``SmoothGrad``, the
  ``GuidedBackprop`` / ``DeconvNet`` composites, ``Occlusion``; on torchvision models also the ``EpsilonPlus``
  composite with ``torchvision_zoo.zennit_composite``'s canonizer for eps-LRP (other rules: timed only);
- LXT 2.1 for eps-LRP on ``hf-gpt2-small`` (its AttnLRP map, in a fresh process as ``bench_transformers.py`` does:
  LXT's patches are global); LXT's time ÷ its own floor, measured there before patching.

Per cell: gradattr's seconds, its time ÷ the floor (one forward + backward of the batch's target logits), and per
peer: peer ÷ gradattr (> 1: gradattr faster) and, where both compute the same quantity, max|Δ| / max|R_gradattr|
(``not comparable`` otherwise: different noise or draws, other rules). Timing: rounds of (floor, gradattr, peers),
ratios = medians of per-round ratios; single-pass methods one warm-up call each and ``--repeats`` rounds,
multi-pass ones (IG, SmoothGrad, GradientSHAP, DeepLIFT-SHAP, occlusion, Shapley) one round after a gradattr
saliency call. The cores other processes kept busy during each cell (``run.others_busy``) are recorded, and the
load averages at the start and end of each model.

Resumable: one fresh process per model (``--timeout`` s) appends one JSON line per (model, method) to
``--results`` (``benchmarks/zoo.jsonl``); a later run skips the cells already there (``--retry-errors``,
``--fresh``). ``--report-only`` writes ``--out`` (``benchmarks/ZOO.md``: the full table and PASS/MISS tables for
the issue's targets) and replaces the section between ``<!-- zoo:start -->`` and ``<!-- zoo:end -->`` of
``--results-md`` (``benchmarks/RESULTS.md``; appended if missing). A full run ends with the same report.

Targets: Captum ÷ gradattr ≥ 1.0 for IG, SmoothGrad, GradientSHAP, DeepLIFT, Guided Backprop, occlusion and
Shapley sampling on every model; eps-LRP ≤ 1.3x floor, DeepLIFT ≤ 2x floor, Guided Backprop ≤ 1.3x floor on
ResNet-50, VGG-16, MobileNetV2, EfficientNet-B0, ViT-B/16 and the GPT-2-small-sized config (batch 8).

``--smoke``: a CPU-only check for CI (no torchvision, Zennit or LXT needed; Captum and transformers): a small
hand-written CNN (conv/BN/ReLU/residual/max pool/linear, 3x32x32) and tiny HF GPT-2 / BERT configs (2 layers,
width 32), batch 2, every method once with gradattr and Captum where Captum has it; every map must be finite and,
for saliency, gradient x input, IG (same steps), DeepLIFT (zero baseline, the CNN), Guided Backprop and occlusion,
agree with Captum to 1e-4 relative. Exit status 1 with the failures listed. No timing.

Usage (the peer venv: torch 2.14.1, torchvision 0.29.1, Captum, Zennit, LXT; gradattr from the checkout):
    PYTHONPATH=src /work/peers-venv/bin/python benchmarks/zoo.py --budget-minutes 120
    PYTHONPATH=src /work/peers-venv/bin/python benchmarks/zoo.py --models resnet18,hf-bert-tiny --batch 1 \\
        --ig-steps 2 --samples 2 --results /tmp/zoo-try.jsonl --out /tmp/ZOO-try.md --results-md /tmp/R.md
    PYTHONPATH=src /work/peers-venv/bin/python benchmarks/zoo.py --report-only
    python benchmarks/zoo.py --smoke                                   # any venv with Captum and transformers
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import importlib
import json
import math
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE / "peers")]
import torchvision_zoo as tvz  # noqa: E402
from _common import (  # noqa: E402
    cell_error,
    emit,
    fmt,
    header,
    markdown_table,
    print_table,
    relative_difference,
    run_child,
    timed,
)

DEFAULT_RESULTS = HERE / "zoo.jsonl"
DEFAULT_OUT = HERE / "ZOO.md"
DEFAULT_RESULTS_MD = HERE / "RESULTS.md"
START, END = "<!-- zoo:start -->", "<!-- zoo:end -->"
META, DONE = "_model", "_done"
ITEM3_TV = ("resnet50", "vgg16", "mobilenet_v2", "efficientnet_b0", "vit_b_16")
HF_MODELS = ("hf-gpt2-small", "hf-bert-tiny", "hf-vit-tiny")
TARGET_MODELS = (*ITEM3_TV, "hf-gpt2-small")
METHODS = (
    "saliency",
    "gradient_x_input",
    "integrated_gradients",
    "smoothgrad",
    "gradient_shap",
    "deeplift",
    "deeplift_shap",
    "epsilon_lrp",
    "guided_backprop",
    "deconvnet",
    "occlusion",
    "shapley_sampling",
    "gradcam",
)
MULTI_PASS = ("integrated_gradients", "smoothgrad", "gradient_shap", "deeplift_shap", "occlusion", "shapley_sampling")
CAPTUM_TARGETS = (
    "integrated_gradients",
    "smoothgrad",
    "gradient_shap",
    "deeplift",
    "guided_backprop",
    "occlusion",
    "shapley_sampling",
)
FLOOR_TARGETS = {"epsilon_lrp": 1.3, "deeplift": 2.0, "guided_backprop": 1.3}
PEERS = ("captum", "zennit", "lxt")
SMOOTHGRAD_SIGMA = 0.15  # gradattr's default, relative to each sample's range
SEED = 0
LXT_GPT2 = ("transformers.models.gpt2.modeling_gpt2", "gpt2", "attnLRP")
SHORT = {
    "saliency": "saliency",
    "gradient_x_input": "grad×input",
    "integrated_gradients": "IG",
    "smoothgrad": "SmoothGrad",
    "gradient_shap": "GradientSHAP",
    "deeplift": "DeepLIFT",
    "deeplift_shap": "DeepLIFT-SHAP",
    "epsilon_lrp": "eps-LRP",
    "guided_backprop": "Guided BP",
    "deconvnet": "Deconvnet",
    "occlusion": "occlusion",
    "shapley_sampling": "Shapley",
    "gradcam": "Grad-CAM",
}


# --------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------


class EmbedsToLogits(nn.Module):
    """``e -> model(inputs_embeds=e).logits``: a sequence classifier's logits."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, embeds: Tensor) -> Tensor:
        return self.model(inputs_embeds=embeds).logits


class SmokeCNN(nn.Module):
    """Conv/BN/ReLU stem, max pool, a residual block, a strided conv, global average pool, linear (3x32x32).
    Every ReLU is its own module (Captum's module hooks see each call); the max pool follows the stem, where a
    zero input's activations are constant per channel, so Captum's DeepLift max-pool rule equals routing."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.pool = nn.MaxPool2d(2)
        self.conv1, self.bn1, self.relu1 = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()
        self.conv2, self.bn2, self.relu2 = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()
        self.down = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, classes))

    def forward(self, x: Tensor) -> Tensor:
        h = self.pool(self.stem(x))
        h = self.relu2(h + self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(h))))))
        return self.head(self.down(h))


@dataclass
class Subject:
    """A model as attributed, its batch and targets, and what the methods need to know about it."""

    name: str
    model: nn.Module
    x: Tensor
    target: Tensor
    kind: str  # "cnn", "vit" or "text"
    size: str
    window: tuple[int, ...]  # occlusion window = stride (trailing dimensions)
    groups: Tensor  # feature groups of one sample (Shapley sampling)
    refs: Tensor  # references of GradientSHAP / DeepLIFT-SHAP
    cam_layer: str = ""
    cam_error: str = ""
    lxt: tuple[str, str, str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def frozen(model: nn.Module) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def build_hf(name: str, args: argparse.Namespace, gen: torch.Generator) -> tuple[nn.Module, Tensor, str, Any]:
    """(wrapped model, input, size text, LXT patch) of an HF config ("-smoke" names: the tiny CI sizes)."""
    import transformers

    from bench_transformers import EmbedsToLastLogits, PixelsToLogits

    smoke = name.endswith("-smoke")
    seq = args.seq
    if name.startswith("hf-gpt2"):
        layers, width, heads, vocab = (2, 32, 2, 128) if smoke else (12, 768, 12, 8192)
        config = transformers.GPT2Config(
            n_layer=layers,
            n_embd=width,
            n_head=heads,
            vocab_size=vocab,
            n_positions=max(1024, seq),
            bos_token_id=vocab - 1,
            eos_token_id=vocab - 1,
            attn_implementation=args.attn,
        )
        lm = transformers.GPT2LMHeadModel(config)
        ids = torch.randint(0, vocab, (args.batch, seq), generator=gen)
        with torch.no_grad():
            x = lm.get_input_embeddings()(ids)
        size = f"GPT2LMHeadModel {layers} layers, n_embd {width}, {heads} heads, vocabulary {vocab}, sequence {seq}"
        return EmbedsToLastLogits(lm), x, size, LXT_GPT2
    if name.startswith("hf-bert"):
        layers, width, heads, inner, vocab = (2, 32, 2, 64, 128) if smoke else (2, 128, 2, 512, 8192)
        config = transformers.BertConfig(
            vocab_size=vocab,
            hidden_size=width,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            intermediate_size=inner,
            max_position_embeddings=max(512, seq),
            num_labels=2,
            attn_implementation=args.attn,
        )
        bert = transformers.BertForSequenceClassification(config)
        ids = torch.randint(0, vocab, (args.batch, seq), generator=gen)
        with torch.no_grad():
            x = bert.get_input_embeddings()(ids)
        size = f"BertForSequenceClassification {layers} layers, hidden {width}, {heads} heads, sequence {seq}, 2 labels"
        return EmbedsToLogits(bert), x, size, None
    config = transformers.ViTConfig(
        hidden_size=192,
        num_hidden_layers=12,
        num_attention_heads=3,
        intermediate_size=768,
        image_size=224,
        patch_size=16,
        num_labels=1000,
        attn_implementation=args.attn,
    )
    vit = transformers.ViTForImageClassification(config)
    x = torch.randn(args.batch, 3, 224, 224, generator=gen)
    return PixelsToLogits(vit), x, "ViTForImageClassification 12 layers, hidden 192, 3 heads, 224x224, patch 16", None


def build_subject(name: str, args: argparse.Namespace) -> Subject:
    """The seeded model ``name`` with its batch (the same in every process)."""
    import gradattr

    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    lxt = None
    if name == "cnn-smoke":
        model = SmokeCNN()
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.running_mean.normal_(0.0, 0.1, generator=gen)
                    m.running_var.uniform_(0.5, 1.5, generator=gen)
                    m.weight.copy_(1.0 + 0.1 * torch.randn(m.num_features, generator=gen))
                    m.bias.normal_(0.0, 0.1, generator=gen)
        x = torch.randn(args.batch, 3, 32, 32, generator=gen)
        kind, size = "cnn", "hand-written CNN (conv/BN/ReLU, max pool, residual block, strided conv, linear), 3x32x32"
    elif name.startswith("hf-"):
        model, x, size, lxt = build_hf(name, args, gen)
        kind = "vit" if name.startswith("hf-vit") else "text"
    else:
        side = tvz.image_size(name)
        model = tvz.build(name, gen, side)
        x = torch.randn(args.batch, 3, side, side, generator=gen)
        kind = "vit" if name.startswith(("vit_", "swin_", "maxvit")) else "cnn"
        size = f"torchvision {name}, {side}x{side}, {tvz.gflops(name):.2f} GFLOPs"
    frozen(model)
    with torch.no_grad():
        target = model(x).argmax(1)
    if kind == "text":
        tokens, width = x.shape[1:]
        window: tuple[int, ...] = (1, width)
        groups = torch.arange(tokens)[:, None].expand(tokens, width).contiguous()
    else:
        patch = min(args.patch, x.shape[-1])
        window = (x.shape[1], patch, patch)
        groups = gradattr.patches(tuple(x.shape[1:]), patch)
    refs = torch.cat([torch.zeros(1, *x.shape[1:]), 0.1 * torch.randn(1, *x.shape[1:], generator=gen)])
    subject = Subject(name, model, x, target, kind, f"{size}, batch {args.batch}", window, groups, refs, lxt=lxt)
    if kind == "cnn":
        try:
            subject.cam_layer = tvz.cam_layer(model, x)
        except Exception as exc:
            subject.cam_error = cell_error(exc)
    return subject


def methods_for(subject: Subject, wanted: list[str]) -> list[str]:
    """The methods of ``wanted`` that gradattr has and that apply to ``subject`` (Grad-CAM: CNNs only)."""
    import gradattr

    return [m for m in wanted if m in gradattr.METHODS and (m != "gradcam" or subject.kind == "cnn")]


# --------------------------------------------------------------------------------------------------
# gradattr and the peers' calls
# --------------------------------------------------------------------------------------------------


def gradattr_options(method: str, s: Subject, args: argparse.Namespace) -> dict[str, Any]:
    return {
        "integrated_gradients": {"steps": args.ig_steps},
        "smoothgrad": {"samples": args.samples, "sigma": SMOOTHGRAD_SIGMA, "seed": SEED},
        "gradient_shap": {"samples": args.samples, "baseline": s.refs, "seed": SEED},
        "deeplift_shap": {"baseline": s.refs},
        "occlusion": {"window": s.window, "stride": s.window},
        "shapley_sampling": {"samples": 2, "feature_groups": s.groups, "seed": SEED},
        "gradcam": {"layer": s.cam_layer},
    }.get(method, {})


def gradattr_call(method: str, s: Subject, args: argparse.Namespace, **extra: Any) -> Callable[[], Tensor]:
    import gradattr

    options = {**gradattr_options(method, s, args), **extra}

    def call() -> Tensor:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return gradattr.attribute(s.model, s.x, method=method, target=s.target, **options)

    return call


@dataclass
class PeerCall:
    """A peer's implementation of a method: its call, how its output maps onto gradattr's (None: a different
    quantity, "not comparable" with ``why``), and a note."""

    library: str
    run: Callable[[], Tensor]
    convert: Callable[[Tensor], Tensor] | None = None
    why: str = ""
    note: str = ""


def quiet(fn: Callable[[], Tensor]) -> Callable[[], Tensor]:
    def call() -> Tensor:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn()

    return call


def same(t: Tensor) -> Tensor:
    return t


def captum_call(method: str, s: Subject, args: argparse.Namespace) -> PeerCall | None:
    """Captum 0.9's implementation of ``method`` on ``s`` (None where Captum has none)."""
    from captum import attr

    model, x, target = s.model, s.x, s.target
    zeros = torch.zeros_like(x)
    size = math.prod(s.window)
    if method == "saliency":
        return PeerCall("captum", quiet(lambda: attr.Saliency(model).attribute(x, target=target, abs=True)), same)
    if method == "gradient_x_input":
        return PeerCall("captum", quiet(lambda: attr.InputXGradient(model).attribute(x, target=target)), same)
    if method == "integrated_gradients":
        return PeerCall(
            "captum",
            quiet(
                lambda: attr.IntegratedGradients(model).attribute(
                    x,
                    baselines=zeros,
                    target=target,
                    n_steps=args.ig_steps,
                    method="riemann_right",
                    internal_batch_size=args.captum_ig_batch or None,
                )
            ),
            same,
        )
    if method == "smoothgrad":
        sigma = SMOOTHGRAD_SIGMA * float((x.amax() - x.amin()).item())
        return PeerCall(
            "captum",
            quiet(
                lambda: attr.NoiseTunnel(attr.Saliency(model)).attribute(
                    x, nt_type="smoothgrad", nt_samples=args.samples, stdevs=sigma, target=target, abs=True
                )
            ),
            why="other noise (Captum: global RNG, one σ for the batch)",
        )
    if method == "gradient_shap":
        return PeerCall(
            "captum",
            quiet(
                lambda: attr.GradientShap(model).attribute(x, baselines=s.refs, n_samples=args.samples, target=target)
            ),
            why="other draws (Captum: NumPy's RNG)",
        )
    # Captum's DeepLift rules sit in hooks on nn nonlinearity modules: on a transformer the attention softmax,
    # functional GELUs and LayerNorm get plain gradients, so its map is another quantity there
    deeplift_same = same if s.kind == "cnn" else None
    deeplift_why = "Captum's DeepLift has no rules for softmax, functional GELU, LayerNorm"
    if method == "deeplift":
        return PeerCall(
            "captum",
            quiet(lambda: attr.DeepLift(model).attribute(x, baselines=zeros, target=target)),
            deeplift_same,
            why=deeplift_why,
        )
    if method == "deeplift_shap":
        return PeerCall(
            "captum",
            quiet(lambda: attr.DeepLiftShap(model).attribute(x, baselines=s.refs, target=target)),
            deeplift_same,
            why=deeplift_why,
        )
    if method == "guided_backprop":
        return PeerCall("captum", quiet(lambda: attr.GuidedBackprop(model).attribute(x, target=target)), same)
    if method == "deconvnet":
        return PeerCall("captum", quiet(lambda: attr.Deconvolution(model).attribute(x, target=target)), same)
    if method == "occlusion":
        return PeerCall(
            "captum",
            quiet(
                lambda: attr.Occlusion(model).attribute(
                    x,
                    sliding_window_shapes=s.window,
                    strides=s.window,
                    target=target,
                    perturbations_per_eval=args.captum_ppe,
                )
            ),
            lambda t: t / size,
            note="Captum's per-window drop ÷ |window| = gradattr's",
        )
    if method == "shapley_sampling":
        counts = torch.bincount(s.groups.flatten())[s.groups].to(x.dtype)

        def shapley() -> Tensor:
            torch.manual_seed(SEED)  # Captum's orderings come from the global RNG: gradattr's seed
            return attr.ShapleyValueSampling(model).attribute(
                x,
                target=target,
                n_samples=2,
                feature_mask=s.groups.unsqueeze(0),
                perturbations_per_eval=args.captum_ppe,
            )

        return PeerCall(
            "captum", quiet(shapley), lambda t: t / counts, note="Captum's group value ÷ group size = gradattr's"
        )
    if method == "gradcam" and s.cam_layer:
        layer = dict(model.named_modules())[s.cam_layer]

        def gradcam() -> Tensor:
            cam = attr.LayerGradCam(model, layer).attribute(x, target=target, relu_attributions=True)
            return attr.LayerAttribution.interpolate(cam, tuple(x.shape[2:]), interpolate_mode="bilinear").expand_as(x)

        return PeerCall("captum", quiet(gradcam), same, note="LayerGradCam + bilinear upsampling")
    return None


def zennit_calls(method: str, s: Subject, args: argparse.Namespace) -> list[PeerCall]:
    """Zennit 0.5's implementations of ``method`` (``run.zennit_peers``; EpsilonPlus for eps-LRP)."""
    import run as run_bench

    if run_bench.zennit is None:
        return []
    if method == "epsilon_lrp":
        if s.kind == "text" or s.name.startswith("hf-"):
            return []
        from zennit.attribution import Gradient

        composite, canonizer = tvz.zennit_composite(s.name)
        with torch.no_grad():
            one_hot = torch.zeros_like(s.model(s.x)).scatter_(1, s.target[:, None], 1.0)
        model = copy.deepcopy(s.model)  # Zennit's canonizers edit the model (and leave DenseNet's broken)

        def lrp() -> Tensor:
            with Gradient(model, composite) as attributor:
                return attributor(s.x, one_hot)[1]

        return [PeerCall("zennit", quiet(lrp), why="EpsilonPlus: other rules (timed only)", note=canonizer)]
    params: dict[str, Any] = {
        "integrated_gradients": {"steps": args.ig_steps},
        "smoothgrad": {"samples": args.samples, "sigma": SMOOTHGRAD_SIGMA * float((s.x.amax() - s.x.amin()).item())},
        "occlusion": {"window": s.window},
    }.get(method, {})
    from bench_core import Case, Prepared

    prepared = Prepared(s.model, s.x, s.target, None, None)  # type: ignore[arg-type]  # zennit_peers reads 3 fields
    calls = []
    for peer in run_bench.zennit_peers(prepared, Case(method, method, lambda: s.x, params=params)):
        why = "" if peer.convert is not None else peer.note or "a different quantity"
        calls.append(PeerCall("zennit", quiet(peer.run), peer.convert, why=why, note=peer.note))
    return calls


def agrees(ours: Tensor, theirs: Tensor, tolerance: float = 1e-4) -> tuple[bool, str]:
    """Whether two maps of the same quantity agree to ``tolerance`` relative (max|Δ| / max|R|), and a message."""
    if ours.shape != theirs.shape:
        return False, f"shapes differ: {tuple(ours.shape)} vs {tuple(theirs.shape)}"
    rel = relative_difference(theirs, ours)
    return rel <= tolerance, f"max|Δ|/max|R| = {rel:.2e} (tolerance {tolerance:.0e})"


# --------------------------------------------------------------------------------------------------
# Timing: rounds of (floor, gradattr, peers)
# --------------------------------------------------------------------------------------------------


def in_rounds(
    ours: Callable[[], Tensor], peers: list[PeerCall], floor: Callable[[], Any], rounds: int, warmup: int
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """gradattr's cell and one cell per peer: median seconds, gradattr ÷ floor and peer ÷ gradattr as medians of
    per-round ratios, the peers' max|Δ| / max|R|. A call that raises gets an ``error`` and leaves the rounds."""
    ours_cell: dict[str, Any] = {}
    cells: list[dict[str, Any]] = [{"library": p.library, "note": p.note} for p in peers]
    live = [True] * len(peers)
    last: list[Tensor | None] = [None] * len(peers)
    r_ours: Tensor | None = None
    ours_ok = True

    def attempt(i: int) -> tuple[float, Any]:
        nonlocal ours_ok
        t0 = time.perf_counter()
        try:
            result = ours() if i < 0 else peers[i].run()
        except Exception as exc:
            if i < 0:
                ours_ok = False
                ours_cell["error"] = cell_error(exc, 300)
            else:
                live[i] = False
                cells[i]["error"] = cell_error(exc, 300)
            return math.nan, None
        return time.perf_counter() - t0, result

    for _ in range(warmup):
        floor()
        attempt(-1)
        for i in range(len(peers)):
            if live[i]:
                attempt(i)
    floors, mine, theirs = [], [], [[] for _ in peers]
    for _ in range(max(rounds, 1)):
        t0 = time.perf_counter()
        floor()
        floors.append(time.perf_counter() - t0)
        if ours_ok:
            seconds, r = attempt(-1)
            mine.append(seconds)
            if r is not None:
                r_ours = r
        for i in range(len(peers)):
            if live[i]:
                seconds, r = attempt(i)
                theirs[i].append(seconds)
                if r is not None:
                    last[i] = r
    ours_cell["floor_s"] = statistics.median(floors)
    if ours_ok and r_ours is not None:
        ours_cell.update(
            seconds=statistics.median(mine),
            ratio=statistics.median(m / f for m, f in zip(mine, floors, strict=False)),
            finite=bool(torch.isfinite(r_ours).all()),
        )
    for i, peer in enumerate(peers):
        if not live[i] or last[i] is None:
            continue
        times = theirs[i]
        cells[i]["seconds"] = statistics.median(times)
        cells[i]["over_floor"] = statistics.median(t / f for t, f in zip(times, floors, strict=False))
        if ours_ok and r_ours is not None:
            cells[i]["speedup"] = statistics.median(t / m for t, m in zip(times, mine, strict=False))
            if peer.convert is None:
                cells[i]["rel"] = f"not comparable: {peer.why}"
            else:
                theirs_map = peer.convert(last[i])
                cells[i]["rel"] = (
                    relative_difference(theirs_map, r_ours)
                    if theirs_map.shape == r_ours.shape
                    else f"not comparable: shape {tuple(theirs_map.shape)}"
                )
        cells[i]["finite"] = bool(torch.isfinite(last[i]).all())
    return ours_cell, cells


@contextlib.contextmanager
def busy_cores() -> Any:
    """``run.others_busy`` where benchmarks/run.py imports, else a block that measures nothing."""
    try:
        from run import others_busy
    except Exception:
        yield None
        return
    with others_busy() as busy:
        yield busy


# --------------------------------------------------------------------------------------------------
# One model, in a fresh process
# --------------------------------------------------------------------------------------------------


def loadavg() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else []


def run_model(name: str, methods: list[str], args: argparse.Namespace) -> None:
    """Append one JSON line per method (and ``_model`` / ``_done`` lines) for ``name`` to ``args.results``."""
    torch.set_num_threads(args.threads)
    results: Path = args.results

    def write(method: str, **fields: Any) -> None:
        with results.open("a") as handle:
            handle.write(json.dumps({"model": name, "method": method, **fields}) + "\n")
        if method in (META, DONE):
            return
        status = fields.get("error") or (f"{fields['ratio']:.2f}x floor" if fields.get("ratio") is not None else "")
        peers = ", ".join(
            f"{p['library']} {'✗' if 'error' in p else fmt(p.get('speedup'), '.2f') + 'x'}"
            for p in fields.get("peers", [])
        )
        print(f"    {name} {method}: {status}  {peers}", file=sys.stderr, flush=True)

    load_start = loadavg()
    start = time.perf_counter()
    try:
        s = build_subject(name, args)
    except Exception as exc:
        write(META, skipped=f"cannot build: {cell_error(exc)}", load_start=load_start)
        return
    floor = tvz.floor_fn(s.model, s.x, s.target)
    floor_s, _, _ = timed(floor, 3)
    available = peer_status()
    write(
        META,
        params=sum(p.numel() for p in s.model.parameters()),
        gflops=tvz.gflops(name) if not name.startswith("hf-") else None,
        size=s.size,
        kind=s.kind,
        floor_s=floor_s,
        build_s=time.perf_counter() - start,
        cam_layer=s.cam_layer,
        threads=torch.get_num_threads(),
        batch=args.batch,
        settings={
            "ig_steps": args.ig_steps,
            "samples": args.samples,
            "patch": args.patch,
            "repeats": args.repeats,
            "seq": args.seq,
            "captum_ppe": args.captum_ppe,
            "captum_ig_batch": args.captum_ig_batch or "Captum's default",
        },
        load_start=load_start,
        peers={k: v or "ok" for k, v in available.items()},
    )
    warmed = False
    busy_all: list[float] = []
    ours_eps: Tensor | None = None
    applicable = methods_for(s, methods)
    for method in methods:
        if method not in applicable:
            write(method, na="not applicable" if method == "gradcam" else "not in gradattr.METHODS")
    for method in applicable:
        if method == "gradcam" and not s.cam_layer:
            write(method, error=f"no layer: {s.cam_error}")
            continue
        peers: list[PeerCall] = []
        peer_errors: list[dict[str, Any]] = []
        for library, make in (("captum", captum_call), ("zennit", zennit_calls)):
            if available[library]:
                continue
            try:
                made = make(method, s, args)
            except Exception as exc:
                peer_errors.append({"library": library, "error": f"set-up: {cell_error(exc, 200)}"})
                continue
            peers += [made] if isinstance(made, PeerCall) else (made or [])
        multi = method in MULTI_PASS
        if multi and not warmed:
            with contextlib.suppress(Exception):
                gradattr_call("saliency", s, args)()
        with busy_cores() as busy:
            ours_cell, cells = in_rounds(
                gradattr_call(method, s, args), peers, floor, 1 if multi else args.repeats, 0 if multi else 1
            )
        warmed = True
        fields: dict[str, Any] = {**ours_cell, "peers": cells + peer_errors}
        if busy is not None and busy.cores == busy.cores:
            fields["busy"] = round(busy.cores, 2)
            busy_all.append(busy.cores)
        if method == "epsilon_lrp" and s.lxt is not None and "error" not in ours_cell:
            if available["lxt"]:
                fields["peers"].append({"library": "lxt", "error": available["lxt"]})
            else:
                with contextlib.suppress(Exception):
                    ours_eps = gradattr_call("epsilon_lrp", s, args, epsilon=1e-10)()
                fields["peers"].append(measure_lxt(s, args, ours_eps, ours_cell.get("ratio")))
        write(method, **fields)
    write(
        DONE,
        load_end=loadavg(),
        seconds=time.perf_counter() - start,
        busy_median=statistics.median(busy_all) if busy_all else None,
        busy_max=max(busy_all) if busy_all else None,
    )


def peer_status() -> dict[str, str]:
    """library -> "" where it imports, else why not."""
    status = {}
    for library, module in (("captum", "captum.attr"), ("zennit", "zennit.attribution"), ("lxt", "lxt.efficient")):
        try:
            importlib.import_module(module)
            status[library] = ""
        except Exception as exc:
            status[library] = f"{library} does not import: {cell_error(exc, 120)}"
    if not status["zennit"]:
        try:
            import run  # noqa: F401  # run.zennit_peers
        except Exception as exc:
            status["zennit"] = f"benchmarks/run.py does not import: {cell_error(exc, 120)}"
    return status


def lxt_child(name: str, out: Path, args: argparse.Namespace) -> None:
    """Floor before patching, then LXT's efficient-mode gradient × input (its AttnLRP map); the map to ``out``."""
    torch.set_num_threads(args.threads)
    s = build_subject(name, args)
    assert s.lxt is not None
    floor = tvz.floor_fn(s.model, s.x, s.target)
    floor_s, _, _ = timed(floor, args.repeats)
    from bench_transformers import patch_lxt

    patch_lxt(s.lxt)
    _, models, map_name = s.lxt

    def relevance() -> Tensor:
        e = s.x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(s.model(e).gather(1, s.target[:, None]).sum(), e)
        return e.detach() * g

    seconds, _, r = timed(relevance, args.repeats)
    torch.save(r, out)
    emit({"seconds": seconds, "floor": floor_s, "map": f"{models}.{map_name}"})


def measure_lxt(s: Subject, args: argparse.Namespace, ours: Tensor | None, ours_ratio: float | None) -> dict[str, Any]:
    print(f"    {s.name}: LXT in a fresh process ...", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="zoo-lxt-") as tmp:
        out = Path(tmp) / "lxt.pt"
        result, why = run_child(
            [sys.executable, str(Path(__file__).resolve()), *child_args(args), "--lxt-child", s.name, str(out)],
            timeout=args.timeout,
        )
        if result is None:
            return {"library": "lxt", "error": why}
        cell: dict[str, Any] = {
            "library": "lxt",
            "seconds": result["seconds"],
            "over_floor": result["seconds"] / result["floor"],
            "note": f"{result['map']}; LXT ÷ its own floor (fresh process) over gradattr ÷ floor",
        }
        if ours_ratio:
            cell["speedup"] = cell["over_floor"] / ours_ratio
        if ours is not None:
            cell["rel"] = relative_difference(torch.load(out), ours)
    return cell


def child_args(args: argparse.Namespace) -> list[str]:
    return [
        "--batch",
        str(args.batch),
        "--seq",
        str(args.seq),
        "--attn",
        args.attn,
        "--threads",
        str(args.threads),
        "--repeats",
        str(args.repeats),
        "--ig-steps",
        str(args.ig_steps),
        "--samples",
        str(args.samples),
        "--patch",
        str(args.patch),
        "--captum-ppe",
        str(args.captum_ppe),
        "--captum-ig-batch",
        str(args.captum_ig_batch),
        "--results",
        str(args.results),
        "--timeout",
        str(args.timeout),
    ]


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------


def peer(rec: dict[str, Any], library: str) -> dict[str, Any] | None:
    for p in rec.get("peers", []):
        if p.get("library") == library and ("speedup" in p or "error" in p):
            return p
    for p in rec.get("peers", []):
        if p.get("library") == library:
            return p
    return None


def speed_cell(rec: dict[str, Any], library: str) -> str:
    p = peer(rec, library)
    if p is None:
        return "·"
    if "error" in p:
        return "✗"
    return fmt(p.get("speedup"), ".2f")


def rel_cell(rec: dict[str, Any], library: str) -> str:
    p = peer(rec, library)
    if p is None or "error" in p:
        return "·"
    rel = p.get("rel")
    if isinstance(rel, str):
        return "n/c"
    return fmt(rel, ".1e")


def captum_target(rec: dict[str, Any] | None) -> str:
    """Captum ÷ gradattr ≥ 1.0: "1.23 PASS", "0.80 MISS"; gradattr failing: MISS; Captum failing: "—"."""
    if rec is None:
        return "not run"
    if "error" in rec:
        return "✗ MISS (gradattr failed)"
    p = peer(rec, "captum")
    if p is None:
        return "— (no Captum result)"
    if "error" in p:
        return "— (Captum ✗)"
    value = p.get("speedup")
    if value is None:
        return "—"
    return f"{value:.2f} {'PASS' if value >= 1.0 else 'MISS'}"


def floor_target(rec: dict[str, Any] | None, limit: float) -> str:
    if rec is None:
        return "not run"
    if "error" in rec or rec.get("ratio") is None:
        return "✗ MISS (gradattr failed)"
    return f"{rec['ratio']:.2f} {'PASS' if rec['ratio'] <= limit else 'MISS'}"


def target_tables(
    table: dict[str, dict[str, dict[str, Any]]], models: list[str]
) -> tuple[list[str], list[list[str]], list[str], list[list[str]], dict[str, int]]:
    """(columns, rows) of the floor targets on the item-3 models and of Captum's targets on every model, and
    the tally of PASS / MISS."""
    tally = {"PASS": 0, "MISS": 0}
    floor_cols = ["model", *[f"{SHORT[m]} ÷ floor (≤ {v:g})" for m, v in FLOOR_TARGETS.items()]]
    floor_rows = []
    for name in TARGET_MODELS:
        if name not in table:
            floor_rows.append([name, *["not run"] * len(FLOOR_TARGETS)])
            continue
        floor_rows.append([name, *[floor_target(table[name].get(m), v) for m, v in FLOOR_TARGETS.items()]])
    captum_cols = ["model", *[f"Captum ÷ gradattr {SHORT[m]} (≥ 1)" for m in CAPTUM_TARGETS]]
    captum_rows = []
    for name in models:
        rec = table.get(name, {})
        if "skipped" in rec.get(META, {}):
            continue
        captum_rows.append([name, *[captum_target(rec.get(m)) for m in CAPTUM_TARGETS]])
    for row in floor_rows + captum_rows:
        for cell in row[1:]:
            for word in tally:
                tally[word] += cell.endswith(word) or f" {word} (" in cell
    return floor_cols, floor_rows, captum_cols, captum_rows, tally


def report(table: dict[str, dict[str, dict[str, Any]]], models: list[str], args: argparse.Namespace) -> list[str]:
    columns = [
        "model",
        "method",
        "gradattr s",
        "÷ floor",
        "Captum ÷ gradattr",
        "Captum max|Δ|/max|R|",
        "Zennit ÷ gradattr",
        "Zennit max|Δ|/max|R|",
        "LXT ÷ gradattr",
        "LXT max|Δ|/max|R|",
        "busy cores",
    ]
    rows, notes, skipped, model_rows = [], [], [], []
    loads_start, loads_end = [], []
    for name in models:
        rec = table.get(name, {})
        meta = rec.get(META)
        if meta is None:
            continue
        if "skipped" in meta:
            skipped.append(f"- {name}: {meta['skipped']}")
            continue
        done = rec.get(DONE, {})
        if meta.get("load_start"):
            loads_start.append(meta["load_start"])
        if done.get("load_end"):
            loads_end.append(done["load_end"])
        model_rows.append(
            [
                name,
                meta.get("size", ""),
                fmt(meta.get("floor_s"), ".3f"),
                " ".join(f"{v:.2f}" for v in meta.get("load_start", [])),
                " ".join(f"{v:.2f}" for v in done.get("load_end", [])) or "(unfinished)",
                fmt(done.get("busy_median"), ".2f"),
                fmt(done.get("busy_max"), ".2f"),
            ]
        )
        for method in METHODS:
            r = rec.get(method)
            if r is None or "na" in r:
                continue
            if "error" in r:
                notes.append(f"- {name} / {method}: gradattr `{r['error']}`")
            for p in r.get("peers", []):
                if "error" in p:
                    notes.append(f"- {name} / {method}: {p['library']} `{p['error']}`")
            ratio = "✗" if "error" in r else fmt(r.get("ratio"), ".2f") + ("" if r.get("finite", True) else " (NaN)")
            rows.append(
                [
                    name,
                    SHORT[method],
                    "✗" if "error" in r else fmt(r.get("seconds"), ".3g"),
                    ratio,
                    speed_cell(r, "captum"),
                    rel_cell(r, "captum"),
                    speed_cell(r, "zennit"),
                    rel_cell(r, "zennit"),
                    speed_cell(r, "lxt"),
                    rel_cell(r, "lxt"),
                    fmt(r.get("busy"), ".2f"),
                ]
            )
    print()
    print_table(columns, rows)
    floor_cols, floor_rows, captum_cols, captum_rows, tally = target_tables(table, models)
    print()
    print_table(floor_cols, floor_rows)
    print()
    print_table(captum_cols, captum_rows)
    lines = header("gradattr on the model zoo: time ÷ floor, Captum, Zennit, LXT", zoo_packages())
    first = table.get(next((m for m in models if m in table), ""), {}).get(META, {})
    lines += [
        f"`{' '.join(sys.argv)}`; results file `{args.results.name}`. Random weights, float32, CPU, batch "
        f"{first.get('batch', args.batch)}, {first.get('threads', args.threads)} torch threads; settings of the "
        f"first model's run: {json.dumps(first.get('settings', {}), ensure_ascii=False)} (IG steps, SmoothGrad / "
        "GradientSHAP samples, occlusion and Shapley (2 orderings) patch side (text: tokens), rounds, sequence "
        "length, Captum perturbations_per_eval and IG internal_batch_size). Load averages (1, 5, 15 min) at the "
        f"start of the first model: {' '.join(f'{v:.2f}' for v in (loads_start or [[]])[0]) or 'n/a'}; at the "
        f"end of the last: {' '.join(f'{v:.2f}' for v in (loads_end or [[]])[-1]) or 'n/a'}. `busy cores` = "
        "cores other processes kept busy during the cell (from /proc/stat minus this process's CPU time).",
        "",
        f"Targets: {tally['PASS']} PASS, {tally['MISS']} MISS.",
        "",
        "## Targets: time ÷ floor on the item-3 models (batch 8 in the issue)",
        "",
        *markdown_table(floor_cols, floor_rows),
        "",
        "## Targets: Captum ÷ gradattr ≥ 1.0 on every model (— : Captum failed or has no result)",
        "",
        *markdown_table(captum_cols, captum_rows),
        "",
        "## Every cell",
        "",
        "peer ÷ gradattr > 1: gradattr is faster (medians of per-round ratios). max|Δ|/max|R|: gradattr's map against "
        "the peer's (converted to gradattr's definition) where both compute the same quantity; n/c = not "
        "comparable (different noise or draws, other rules); ✗ = error (listed below); · = no such peer.",
        "",
        *markdown_table(columns, rows),
        "",
        "## Models",
        "",
        *markdown_table(
            ["model", "size", "floor s", "load at start", "load at end", "busy cores (median)", "busy cores (max)"],
            model_rows,
        ),
        "",
    ]
    if notes:
        lines += ["## Errors", "", *notes, ""]
    if skipped:
        lines += ["## Skipped", "", *skipped, ""]
    return lines


def zoo_packages() -> list[str]:
    return ["torch", "torchvision", "transformers", "captum", "zennit", "lxt"]


def results_section(table: dict[str, dict[str, dict[str, Any]]], models: list[str], out: Path) -> str:
    """The RESULTS.md section: the targets on the item-3 models and the tally over every model."""
    floor_cols, floor_rows, captum_cols, captum_rows, tally = target_tables(table, models)
    by_model = {r[0]: r for r in captum_rows}
    item3 = [by_model.get(m, [m, *["not run"] * len(CAPTUM_TARGETS)]) for m in TARGET_MODELS]
    metas = [table[m][META] for m in TARGET_MODELS if m in table and META in table[m]]
    loads = [" ".join(f"{v:.2f}" for v in m.get("load_start", [])) for m in metas]
    lines = [
        START,
        "",
        f"## Model zoo (`benchmarks/zoo.py`, issue 19 item 6; report {datetime.date.today().isoformat()})",
        "",
        f"Full table: `{out.name}` ({len(captum_rows)} models). Targets over every model: {tally['PASS']} PASS, "
        f"{tally['MISS']} MISS. Load averages at the start of the item-3 models: {'; '.join(loads) or 'n/a'}.",
        "",
        *markdown_table(floor_cols, floor_rows),
        "",
        *markdown_table(captum_cols, item3),
        "",
        END,
    ]
    return "\n".join(lines)


def replace_section(path: Path, section: str) -> None:
    """Replace the text between the zoo markers of ``path`` with ``section`` (append it if they are missing)."""
    text = path.read_text() if path.exists() else ""
    if START in text and END in text and text.index(START) < text.index(END):
        head, rest = text.split(START, 1)
        tail = rest.split(END, 1)[1]
        text = head + section + tail
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + section + "\n"
    path.write_text(text)


# --------------------------------------------------------------------------------------------------
# Smoke (CI)
# --------------------------------------------------------------------------------------------------

SMOKE_MODELS = ("cnn-smoke", "hf-gpt2-smoke", "hf-bert-smoke")
SMOKE_AGREE = ("saliency", "gradient_x_input", "integrated_gradients", "deeplift", "guided_backprop", "occlusion")


def smoke(args: argparse.Namespace) -> int:
    """Every method once on tiny models with gradattr and Captum; the failures listed (exit status 1)."""
    start = time.perf_counter()
    args.batch, args.seq, args.patch = 2, 8, 8
    args.ig_steps, args.samples, args.captum_ppe, args.captum_ig_batch = 4, 4, 4, 0
    torch.set_num_threads(args.threads)
    status = peer_status()
    for library, why in status.items():
        if why:
            print(f"skipping {library}: {why}")
    failures: list[str] = []
    for name in SMOKE_MODELS:
        try:
            s = build_subject(name, args)
        except Exception as exc:
            failures.append(f"{name}: cannot build: {cell_error(exc)}")
            continue
        print(f"{name}: {s.size}")
        for method in methods_for(s, list(METHODS)):
            try:
                r = gradattr_call(method, s, args)()
            except Exception as exc:
                failures.append(f"{name} / {method}: gradattr raised {cell_error(exc)}")
                continue
            line = f"  {method:<22} gradattr {tuple(r.shape)}"
            if not bool(torch.isfinite(r).all()):
                failures.append(f"{name} / {method}: gradattr's map is not finite")
            call = None if status["captum"] else captum_call(method, s, args)
            if call is not None:
                try:
                    theirs = call.run()
                except Exception as exc:
                    theirs = None
                    line += f"; Captum raised {cell_error(exc, 80)}"
                if theirs is not None:
                    if not bool(torch.isfinite(theirs).all()):
                        line += "; Captum's map is not finite"
                    if call.convert is None:
                        line += f"; Captum: not comparable ({call.why})"
                    else:
                        ok, message = agrees(r, call.convert(theirs))
                        must = method in SMOKE_AGREE and (method != "deeplift" or s.kind == "cnn")
                        line += f"; Captum {message}" + ("" if must else " (not asserted)")
                        if must and not ok:
                            failures.append(f"{name} / {method}: gradattr and Captum disagree, {message}")
            print(line)
    print(f"smoke: {time.perf_counter() - start:.1f} s")
    if failures:
        print(f"\nSMOKE FAILED ({len(failures)}):", *failures, sep="\n  ", file=sys.stderr)
        return 1
    print("smoke: every map finite; gradattr agrees with Captum where both compute the same quantity")
    return 0


# --------------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------------


def default_models() -> list[str]:
    """The item-3 models, the HF configs, then the rest of the torchvision zoo by GFLOPs."""
    rest = sorted((n for n in tvz.model_names() if n not in ITEM3_TV), key=lambda n: (tvz.gflops(n), n))
    return [*ITEM3_TV, *HF_MODELS, *rest]


def models_in(results: Path) -> list[str]:
    """The models of a results file, in the order they first appear."""
    table = tvz.load_results(results)
    return list(table)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument("--models", default="", help="comma-separated torchvision names and/or " + ", ".join(HF_MODELS))
    parser.add_argument("--methods", default="", help=f"comma-separated, of {', '.join(METHODS)} (default: all)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128, help="sequence length of the text models")
    parser.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"], help="HF attn_implementation")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of single-pass methods")
    parser.add_argument("--ig-steps", type=int, default=16)
    parser.add_argument("--samples", type=int, default=8, help="SmoothGrad / GradientSHAP samples")
    parser.add_argument("--patch", type=int, default=56, help="occlusion / Shapley patch side on images")
    parser.add_argument("--captum-ppe", type=int, default=16, help="Captum perturbations_per_eval")
    parser.add_argument(
        "--captum-ig-batch",
        type=int,
        default=0,
        help="Captum IG internal_batch_size (0: Captum's default, all steps x batch in one pass; set it where that "
        "does not fit in memory)",
    )
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="JSON lines, appended per cell")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the full markdown report")
    parser.add_argument("--results-md", type=Path, default=DEFAULT_RESULTS_MD, help="file with the zoo section")
    parser.add_argument("--budget-minutes", type=float, default=math.inf, help="start no model after this")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per model process")
    parser.add_argument("--retry-errors", action="store_true", help="run failed cells again")
    parser.add_argument("--fresh", action="store_true", help="discard the results file first")
    parser.add_argument("--report-only", action="store_true", help="write the reports from the results file")
    parser.add_argument("--smoke", action="store_true", help="the CPU-only CI check (tiny models, no timing)")
    parser.add_argument("--child", metavar="MODEL", help=argparse.SUPPRESS)
    parser.add_argument("--lxt-child", nargs=2, metavar=("MODEL", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.smoke:
        sys.exit(smoke(args))
    methods = [m for m in args.methods.split(",") if m] or list(METHODS)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown method(s) {', '.join(unknown)}")
    torch.set_num_threads(args.threads)
    if args.lxt_child:
        lxt_child(args.lxt_child[0], Path(args.lxt_child[1]), args)
        return
    if args.child:
        run_model(args.child, methods, args)
        emit({"model": args.child})
        return
    wanted = [m for m in args.models.split(",") if m]
    if args.report_only:
        models = wanted or models_in(args.results)
    else:
        tv = [m for m in wanted if not m.startswith("hf-")]
        if not wanted or tv:
            names = set(tvz.model_names())
            missing = [m for m in tv if m not in names]
            if missing:
                parser.error(f"not a torchvision classification model: {', '.join(missing)}")
        bad = [m for m in wanted if m.startswith("hf-") and m not in HF_MODELS]
        if bad:
            parser.error(f"unknown HF config(s) {', '.join(bad)}; choose of {', '.join(HF_MODELS)}")
        models = wanted or default_models()
        if args.fresh and args.results.exists():
            args.results.unlink()
        for library, why in peer_status().items():
            if why:
                print(f"skipping {library}: {why}", flush=True)
        run_all(models, methods, args)
    table = tvz.load_results(args.results)
    lines = report(table, models, args)
    args.out.write_text("\n".join(lines) + "\n")
    replace_section(args.results_md, results_section(table, models, args.out))
    print(f"\nwrote {args.out} and the zoo section of {args.results_md} ({len(table)} models in {args.results})")


def run_all(models: list[str], methods: list[str], args: argparse.Namespace) -> None:
    def command(name: str, ms: list[str]) -> list[str]:
        return [
            sys.executable,
            str(Path(__file__).resolve()),
            *child_args(args),
            "--child",
            name,
            "--methods",
            ",".join(ms),
        ]

    tvz.run_models(models, methods, command, args)


if __name__ == "__main__":
    main()
