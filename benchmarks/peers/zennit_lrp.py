"""gradattr's LRP composites beside Zennit 0.5.1's, on torchvision VGG-16, VGG-16-BN, ResNet-18 and DenseNet-121.

Random weights (seeded; every BatchNorm's running mean ~ N(0, 0.1), running var ~ U(0.5, 2), weight ~ U(0.5, 1.5),
bias ~ N(0, 0.1)), eval mode, float64, batch 2 at 224x224, inputs N(0, 1) clamped to [-2, 2.5] (the zB bounds of
``epsilon_gamma_box``, exactly representable in float32 since Zennit's ``ZBox`` stores a float bound as float32).
For each of Zennit's five composites:

- gradattr: ``attribute(model, x, method="lrp", target=t, composite=NAME)`` (``low=-2.0, high=2.5`` for the box);
- Zennit: ``Gradient(model, COMPOSITES[NAME](canonizers=...))(x, lambda o: eye(1000)[t] * o)`` — the output
  relevance is the target logit, gradattr's convention. Canonizers: none for VGG-16 (no batch norm),
  ``VGGCanonizer`` for VGG-16-BN, ``ResNetCanonizer`` for ResNet-18, and for DenseNet-121 a ``NamedMergeBatchNorm``
  with the pairs that are really conv → BN (``features.conv0 → features.norm0`` and each dense layer's
  ``conv1 → norm2``; ``SequentialMergeBatchNorm`` would also pair a dense layer's ``conv2`` with the next layer's
  ``norm1``, which normalises the concatenation, not conv2's output). The other BNs get Zennit's ``Pass``.
- DenseNet-121 ends in ``F.relu`` + ``F.adaptive_avg_pool2d``, functional calls that Zennit's module hooks cannot
  see (it back-propagates the plain gradient there, gradattr applies pass / Norm at the op call). The rows
  ``densenet121`` use a copy whose forward calls ``nn.ReLU`` + ``nn.AdaptiveAvgPool2d`` modules (same maths);
  ``densenet121 (as shipped)`` is the unmodified model.

Columns: max|Δ| ÷ max|R_zennit| over the batch, and the largest per-sample |Σ R_gradattr − Σ R_zennit| ÷ |Σ R_zennit|,
once with the BN eps as shipped (1e-5) and once with every BN's eps set to 0 before either side runs. Zennit's
``MergeBatchNorm`` leaves each merged BN in the model with mean 0, var 1, weight 1, bias 0 but its ``eps``, so the
canonized model computes x / sqrt(1 + eps) at every merged BN (its logits differ from the model's: column
"Zennit logit rel. off"); gradattr folds the BN exactly. With eps = 0 that difference vanishes.

Known remaining difference: a BN that merges into nothing gets Zennit's ``Pass``. gradattr carries relevance in
gradient × input form (g_x = g_y ⊙ y / x), so relevance at a position whose BN input is exactly 0 is lost
(DenseNet: the 0s of ``pool0``'s max-pooled ReLU output enter the first block's and transition1's BNs). The section
"DenseNet: BN inputs = 0" measures the share of Zennit's relevance at those positions and re-runs Zennit with the
relevance there zeroed (a tensor hook on each Pass BN's output), which should reproduce gradattr's map.

"Functional twins": VGG-16 re-written as a module that calls ``F.conv2d``/``F.linear``/``F.max_pool2d``/
``F.adaptive_avg_pool2d`` with the VGG's own parameters and one reused ``nn.ReLU``. gradattr's rules sit at the op
call, so its map on the twin equals its map on the module VGG; Zennit sees only the ReLU module and back-propagates
the plain gradient through every layer.

Usage (the peer venv, gradattr from the checkout):
    PYTHONPATH=src /work/peers-venv/bin/python benchmarks/peers/zennit_lrp.py
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn
from zennit.attribution import Gradient
from zennit.canonizers import NamedMergeBatchNorm
from zennit.composites import COMPOSITES as ZENNIT_COMPOSITES
from zennit.torchvision import ResNetCanonizer, VGGCanonizer

import gradattr
from gradattr.composites import COMPOSITES

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fmt, header, markdown_table, print_table

OUT = Path(__file__).resolve().parent / "LRP_ZENNIT.md"
COMMAND = "PYTHONPATH=src /work/peers-venv/bin/python benchmarks/peers/zennit_lrp.py"
LOW, HIGH = -2.0, 2.5
TARGETS = [1, 207]
SPEED_START, SPEED_END = "<!-- speed:start -->", "<!-- speed:end -->"


def randomise_bn(model: nn.Module) -> nn.Module:
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_(0.0, 0.1)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.1)
    return model


def build(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = getattr(torchvision.models, name)(weights=None)
    return randomise_bn(model).double().eval()


class DenseNetModuleTail(torchvision.models.DenseNet):
    """DenseNet whose final ReLU and average pooling are the modules ``tail_relu``/``tail_pool`` (same maths)."""

    def forward(self, x: Tensor) -> Tensor:
        out = self.tail_pool(self.tail_relu(self.features(x)))
        return self.classifier(torch.flatten(out, 1))


def with_module_tail(model: nn.Module) -> nn.Module:
    """DenseNet whose final F.relu + F.adaptive_avg_pool2d are modules (same maths), so Zennit can hook them.
    A subclass, not an instance attribute ``forward``: gradattr runs a view of the model (``model_view``), which
    copies ``__dict__``, so a bound method there would run the user's model instead of the view."""
    model.tail_relu = nn.ReLU()
    model.tail_pool = nn.AdaptiveAvgPool2d((1, 1))
    model.__class__ = DenseNetModuleTail
    return model


def densenet_bn_pairs(model: nn.Module) -> list[tuple[list[str], str]]:
    names = dict(model.named_modules())
    pairs = [(["features.conv0"], "features.norm0")]
    pairs += [([n[: -len("norm2")] + "conv1"], n) for n in names if re.search(r"denselayer\d+\.norm2$", n)]
    return pairs


def canonizers_for(net: str, model: nn.Module) -> list[Any]:
    if net.startswith("vgg16_bn"):
        return [VGGCanonizer()]
    if net.startswith("resnet"):
        return [ResNetCanonizer()]
    if net.startswith("densenet"):
        return [NamedMergeBatchNorm(densenet_bn_pairs(model))]
    return []


def zennit_composite(name: str, canonizers: list[Any], x: Tensor) -> Any:
    kwargs: dict[str, Any] = {"canonizers": canonizers}
    if name == "epsilon_gamma_box":
        kwargs.update(low=torch.full_like(x, LOW), high=torch.full_like(x, HIGH))
    return ZENNIT_COMPOSITES[name](**kwargs)


def output_relevance(target: Tensor) -> Callable[[Tensor], Tensor]:
    def fn(out: Tensor) -> Tensor:
        return torch.eye(out.shape[1], dtype=out.dtype)[target] * out.detach()

    return fn


def zennit_map(
    net: str,
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    name: str,
    extra: Callable[[nn.Module], list[Any]] | None = None,
) -> tuple[Tensor, Tensor]:
    """(Zennit's relevance at the input, the canonized model's output); ``extra(model)`` registers hooks after the
    composite (and returns their handles)."""
    composite = zennit_composite(name, canonizers_for(net, model), x)
    with Gradient(model, composite) as attributor:
        handles = extra(model) if extra else []
        try:
            out, rel = attributor(x.clone(), output_relevance(target))
        finally:
            for h in handles:
                h.remove()
    return rel.detach(), out.detach()


def gradattr_map(model: nn.Module, x: Tensor, target: Tensor, name: str) -> Tensor:
    kwargs: dict[str, Any] = {"low": LOW, "high": HIGH} if name == "epsilon_gamma_box" else {}
    return gradattr.attribute(model, x.clone(), method="lrp", target=target, composite=name, **kwargs).detach()


def compare(ours: Tensor, theirs: Tensor) -> tuple[float, float]:
    """(max|Δ| ÷ max|theirs|, max over samples of |ΣΔ| ÷ |Σ theirs|)."""
    rel = ((ours - theirs).abs().max() / theirs.abs().max()).item()
    s_o, s_t = ours.flatten(1).sum(1), theirs.flatten(1).sum(1)
    return rel, ((s_o - s_t).abs() / s_t.abs()).max().item()


def quantile_rel(ours: Tensor, theirs: Tensor, q: float = 0.999) -> float:
    """The q-quantile of |Δ| ÷ max|theirs| (robust to a handful of unstable pixels)."""
    return (torch.quantile((ours - theirs).abs().flatten().float(), q) / theirs.abs().max()).item()


def set_bn_eps(model: nn.Module, eps: float) -> None:
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eps = eps


# --------------------------------------------------------------------------------------------------------------------


# net -> (builder, image size, BN eps variants): VGG-16 has no BN (eps cannot matter), VGG-16-BN (optional) at 112,
# the shipped DenseNet only with eps as shipped (its difference is the tail).
NETS: dict[str, tuple[Callable[[], nn.Module], int, tuple[float | None, ...]]] = {
    "vgg16": (lambda: build("vgg16"), 224, (None,)),
    "vgg16_bn": (lambda: build("vgg16_bn"), 112, (None, 0.0)),
    "resnet18": (lambda: build("resnet18"), 224, (None, 0.0)),
    "densenet121": (lambda: with_module_tail(build("densenet121")), 224, (None, 0.0)),
    "densenet121 (as shipped)": (lambda: build("densenet121"), 224, (None,)),
}


def inputs(size: int) -> Tensor:
    torch.manual_seed(1234)
    return torch.randn(2, 3, size, size, dtype=torch.float64).clamp(LOW, HIGH)


def agreement(target: Tensor) -> tuple[list[list[Any]], dict[Any, Any]]:
    rows: list[list[Any]] = []
    saved: dict[Any, Any] = {}
    for net, (make, size, variants) in NETS.items():
        model, x = make(), inputs(size)
        for eps in variants:
            if eps is not None:
                set_bn_eps(model, eps)
            with torch.no_grad():
                logits = model(x)
            eps_label = "as shipped (1e-5)" if eps is None else "0"
            for name in COMPOSITES:
                t0 = time.perf_counter()
                ours = gradattr_map(model, x, target, name)
                t1 = time.perf_counter()
                theirs, zout = zennit_map(net, model, x, target, name)
                t2 = time.perf_counter()
                rel, rel_sum = compare(ours, theirs)
                logit = logits.gather(1, target[:, None]).squeeze(1)
                zlogit = zout.gather(1, target[:, None]).squeeze(1)
                logit_off = ((zlogit - logit).abs() / logit.abs()).max().item()
                row = [
                    net,
                    size,
                    eps_label,
                    name,
                    fmt(rel, ".2e"),
                    fmt(quantile_rel(ours, theirs), ".1e"),
                    fmt(rel_sum, ".2e"),
                    fmt(logit_off, ".1e"),
                    fmt(theirs.flatten(1).sum(1)[0].item(), ".4g"),
                    fmt(logit[0].item(), ".4g"),
                    f"{t1 - t0:.1f} / {t2 - t1:.1f}",
                ]
                rows.append(row)
                print("  ".join(str(v) for v in row), flush=True)
                saved[(net, eps_label, name)] = (ours, theirs)
        del model
    return rows, saved


def conditioning(target: Tensor, saved: dict[Any, Any]) -> list[list[Any]]:
    """gradattr against itself with the input scaled by 1 + 1e-7 (LRP maps are scale-equivariant up to biases):
    how far a tiny perturbation (such as Zennit's x / sqrt(1 + eps) at each merged BN) moves the map."""
    rows = []
    for net in ("resnet18", "densenet121"):
        make, size, _ = NETS[net]
        model, x = make(), inputs(size)
        for name in ("epsilon_plus", "epsilon_gamma_box"):
            scaled = gradattr_map(model, x * (1 + 1e-7), target, name) / (1 + 1e-7)
            base = saved[(net, "as shipped (1e-5)", name)][0]
            rel, rel_sum = compare(scaled, base)
            rows.append([net, name, fmt(rel, ".2e"), fmt(quantile_rel(scaled, base), ".1e"), fmt(rel_sum, ".1e")])
            print(rows[-1], flush=True)
    return rows


def resnet_sum_stabilizer(target: Tensor, saved: dict[Any, Any]) -> list[list[Any]]:
    """ResNet-18, every BN eps 0: gradattr against Zennit with its residual ``Sum``'s ``Norm`` stabilised by 1e-30
    instead of 1e-6 (gradattr splits a residual add in proportion, x_i / (x_1 + x_2), with no stabiliser)."""
    from zennit.layer import Sum
    from zennit.rules import Norm

    make, size, _ = NETS["resnet18"]
    model, x = make(), inputs(size)
    set_bn_eps(model, 0.0)
    rows = []
    for name in COMPOSITES:
        kwargs: dict[str, Any] = {"canonizers": [ResNetCanonizer()], "layer_map": [(Sum, Norm(stabilizer=1e-30))]}
        if name == "epsilon_gamma_box":
            kwargs.update(low=torch.full_like(x, LOW), high=torch.full_like(x, HIGH))
        with Gradient(model, ZENNIT_COMPOSITES[name](**kwargs)) as attributor:
            _, theirs = attributor(x.clone(), output_relevance(target))
        rel, rel_sum = compare(saved[("resnet18", "0", name)][0], theirs)
        rows.append([name, fmt(rel, ".2e"), fmt(rel_sum, ".2e")])
        print(rows[-1], flush=True)
    return rows


def densenet_zero_inputs(target: Tensor, saved: dict[Any, Any]) -> list[list[Any]]:
    """Relevance that Zennit's Pass carries through BN positions whose input is exactly 0 (lost in gradattr's
    gradient × input form), and Zennit re-run with the relevance at those positions zeroed."""
    make, size, _ = NETS["densenet121"]
    model, x = make(), inputs(size)
    set_bn_eps(model, 0.0)
    merged = {bn for _, bn in densenet_bn_pairs(model)}
    pass_bns = [n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d) and n not in merged]
    rows = []
    for name in COMPOSITES:
        stats: dict[str, list[float]] = {}

        def extra(root: nn.Module, mask: bool, stats: dict[str, list[float]] = stats) -> list[Any]:
            handles = []
            mods = dict(root.named_modules())
            for bn_name in pass_bns:

                def hook(_m: nn.Module, args: Any, out: Tensor, bn_name: str = bn_name) -> None:
                    zero = args[0] == 0

                    def grad_hook(g: Tensor) -> Tensor:
                        lost = (g * zero).abs().sum().item()
                        stats.setdefault(bn_name, [0.0, 0.0])
                        stats[bn_name][0] += lost
                        stats[bn_name][1] += g.abs().sum().item()
                        return g * ~zero if mask else g

                    out.register_hook(grad_hook)

                handles.append(mods[bn_name].register_forward_hook(hook))
            return handles

        ours = saved[("densenet121", "0", name)][0]
        theirs, _ = zennit_map("densenet121", model, x, target, name, lambda m: extra(m, False))
        share = {k: v[0] / v[1] for k, v in stats.items() if v[1] > 0}
        worst = max(share, key=share.get)
        stats.clear()
        masked, _ = zennit_map("densenet121", model, x, target, name, lambda m: extra(m, True))
        rel, rel_sum = compare(ours, theirs)
        rel_m, rel_sum_m = compare(ours, masked)
        total_lost = sum(v[0] for v in stats.values()) / sum(v[1] for v in stats.values())
        rows.append(
            [
                name,
                len(pass_bns),
                sum(1 for v in share.values() if v > 0),
                f"{worst} {share[worst]:.2e}",
                fmt(total_lost, ".2e"),
                fmt(rel, ".2e"),
                fmt(rel_sum, ".2e"),
                fmt(rel_m, ".2e"),
                fmt(rel_sum_m, ".2e"),
            ]
        )
        print(rows[-1], flush=True)
    return rows


def densenet_tail(target: Tensor) -> list[str]:
    """On the shipped DenseNet, the relevance Zennit hands to ``features``' output against the hand-derived plain
    gradient of F.adaptive_avg_pool2d ∘ F.relu applied to the classifier-input relevance R_p: R_p / (H·W) · 1[f > 0]."""
    model, x = build("densenet121"), inputs(NETS["densenet121"][1])
    rec: dict[str, Tensor] = {}

    def feat(_m: nn.Module, _a: Any, out: Tensor) -> None:
        rec["f"] = out.detach()
        out.register_hook(lambda g: rec.__setitem__("R_f", g.detach()))

    def cls(_m: nn.Module, args: Any) -> None:  # registered before Zennit's: sees the tensor before its Identity
        args[0].register_hook(lambda g: rec.__setitem__("R_p", g.detach()))

    handles = [model.features.register_forward_hook(feat), model.classifier.register_forward_pre_hook(cls)]
    zennit_map("densenet121 (as shipped)", model, x, target, "epsilon_plus")
    for h in handles:
        h.remove()
    f, r_f, r_p = rec["f"], rec["R_f"], rec["R_p"]
    hw = f.shape[2] * f.shape[3]
    hand = r_p[:, :, None, None] / hw * (f > 0)
    rel = ((r_f - hand).abs().max() / r_f.abs().max()).item()
    norm = r_p[:, :, None, None] * F.relu(f) / (F.relu(f).sum((2, 3), keepdim=True) + 1e-6)
    lines = [
        f"- shipped DenseNet-121, epsilon_plus, eps 1e-5: Zennit's relevance at ``features``' output equals the "
        f"hand-derived R_p / {hw} · 1[f > 0] to {rel:.1e} of its maximum (plain gradient of the functional tail); "
        f"Σ of it = {r_f.flatten(1).sum(1)[0].item():.4g} of Σ R_p = {r_p.flatten(1).sum(1)[0].item():.4g} "
        f"(share of positive positions {(f > 0).double().mean().item():.3f}), whereas pass + Norm (gradattr, and "
        f"Zennit on the module tail) hand on Σ = {norm.flatten(1).sum(1)[0].item():.4g} (sample 0).",
    ]
    print(lines[0], flush=True)
    return lines


# --------------------------------------------------------------------------------------------------------------------


class FunctionalVGG(nn.Module):
    """VGG-16 calling functional ops with the module VGG's parameters and one reused nn.ReLU."""

    def __init__(self, vgg: nn.Module) -> None:
        super().__init__()
        self.relu = nn.ReLU()
        self.plan: list[tuple[str, int]] = []
        self.params = nn.ParameterList()
        for part in (vgg.features, vgg.classifier):
            for m in part:
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    self.plan.append(("conv" if isinstance(m, nn.Conv2d) else "linear", len(self.params)))
                    self.params.append(m.weight)
                    self.params.append(m.bias)
                elif isinstance(m, nn.ReLU):
                    self.plan.append(("relu", -1))
                elif isinstance(m, nn.MaxPool2d):
                    self.plan.append(("maxpool", -1))
            if part is vgg.features:
                self.plan.append(("avgpool", -1))

    def forward(self, x: Tensor) -> Tensor:
        for op, i in self.plan:
            if op == "conv":
                x = F.conv2d(x, self.params[i], self.params[i + 1], padding=1)
            elif op == "linear":
                x = F.linear(x, self.params[i], self.params[i + 1])
            elif op == "relu":
                x = self.relu(x)
            elif op == "maxpool":
                x = F.max_pool2d(x, 2, 2)
            else:
                x = torch.flatten(F.adaptive_avg_pool2d(x, (7, 7)), 1)
        return x


def twins(target: Tensor, saved: dict[Any, Any]) -> list[list[Any]]:
    vgg, x = build("vgg16"), inputs(NETS["vgg16"][1])
    twin = FunctionalVGG(vgg).double().eval()
    with torch.no_grad():
        same = (twin(x) - vgg(x)).abs().max().item()
    print("twin forward max|Δ logits|", same, flush=True)
    rows = []
    for name in COMPOSITES:
        ours_module, theirs_module = saved[("vgg16", "as shipped (1e-5)", name)]
        ours_twin = gradattr_map(twin, x, target, name)
        theirs_twin, _ = zennit_map("vgg16", twin, x, target, name)
        rows.append(
            [
                name,
                fmt(same, ".1e"),
                fmt(compare(ours_twin, ours_module)[0], ".1e"),
                fmt(compare(theirs_twin, theirs_module)[0], ".2e"),
                fmt(compare(theirs_twin, theirs_module)[1], ".2e"),
            ]
        )
        print(rows[-1], flush=True)
    return rows


def write(lines: list[str], start: float) -> None:
    """The .md so far (the speed section of lrp_speed.py kept)."""
    old = OUT.read_text() if OUT.exists() else ""
    speed = old[old.index(SPEED_START) : old.index(SPEED_END) + len(SPEED_END)] if SPEED_END in old else ""
    tail = [f"run time so far {time.perf_counter() - start:.0f} s", "", speed or f"{SPEED_START}\n{SPEED_END}", ""]
    OUT.write_text("\n".join(lines + tail))


def section(title: str, measure: Callable[..., Any], cols: list[str], rows: list[list[str]]) -> list[str]:
    """A markdown section: the title, the measuring function's docstring as its text, the table."""
    text = (measure.__doc__ or "").replace("\n    ", " ").strip()
    return [f"## {title}", "", text, "", *markdown_table(cols, rows), ""]


def main() -> None:
    torch.set_num_threads(2)
    target = torch.tensor(TARGETS)
    start = time.perf_counter()
    lines = header("gradattr's LRP composites beside Zennit", ["torch", "torchvision", "zennit"])
    lines += [f"`{COMMAND}`", "", (__doc__ or "").split("\n\nUsage")[0], ""]

    rows, saved = agreement(target)
    cols = [
        "net",
        "size",
        "BN eps",
        "composite",
        "max|Δ| ÷ max|R_zennit|",
        "99.9 % |Δ| ÷ max",
        "ΣR rel. diff",
        "Zennit logit rel. off",
        "Σ R_zennit (sample 0)",
        "logit (sample 0)",
        "s gradattr / Zennit",
    ]
    print_table(cols, rows)
    lines += ["## Agreement", "", *markdown_table(cols, rows), ""]
    write(lines, start)

    srows = resnet_sum_stabilizer(target, saved)
    scols = ["composite", "max|Δ| ÷ max|R_zennit|", "ΣR rel. diff"]
    print_table(scols, srows)
    lines += section("ResNet-18 (every BN eps 0): the residual add's stabiliser", resnet_sum_stabilizer, scols, srows)
    crows = conditioning(target, saved)
    ccols = ["net", "composite", "max|Δ| ÷ max", "99.9 % |Δ| ÷ max", "ΣR rel."]
    print_table(ccols, crows)
    lines += section("Conditioning: gradattr against itself, input × (1 + 1e-7)", conditioning, ccols, crows)
    write(lines, start)

    zrows = densenet_zero_inputs(target, saved)
    zcols = [
        "composite",
        "Pass BNs",
        "with relevance at 0-inputs",
        "worst BN: share of its Σ|R|",
        "all Pass BNs: share",
        "Zennit: max|Δ| ÷ max",
        "ΣR rel.",
        "Zennit, 0-inputs masked: max|Δ| ÷ max",
        "ΣR rel.",
    ]
    print_table(zcols, zrows)
    lines += [
        "## DenseNet-121: BN inputs = 0 (module tail, every BN eps = 0)",
        "",
        "Share of Zennit's Σ|R| at a Pass BN's output that sits where the BN's input is exactly 0 (what gradattr's",
        "gradient × input form cannot pass on), and gradattr against Zennit as is / with that relevance zeroed.",
        "",
        *markdown_table(zcols, zrows),
        "",
    ]
    lines += ["## DenseNet-121 as shipped: the functional tail", "", *densenet_tail(target), ""]
    write(lines, start)

    trows = twins(target, saved)
    tcols = [
        "composite",
        "twin logits max|Δ|",
        "gradattr twin vs module: max|Δ| ÷ max",
        "Zennit twin vs module: max|Δ| ÷ max",
        "Zennit ΣR rel.",
    ]
    print_table(tcols, trows)
    lines += ["## Functional twin of VGG-16", "", *markdown_table(tcols, trows), ""]
    write(lines, start)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
