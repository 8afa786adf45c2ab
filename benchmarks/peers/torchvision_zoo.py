"""Every gradattr method on every torchvision classification model, beside Captum's DeepLift and Zennit's EpsilonPlus.

For each model of ``torchvision.models.list_models(module=torchvision.models)`` (random weights — torchvision's
initialisation, BatchNorm running statistics calibrated on two random batches and affine parameters randomised,
all-zero classifier weights such as ViT's head re-drawn — eval mode, batch 2 of N(0, 1) images at 224x224,
299x299 for inception_v3, target = argmax):

- every method of ``gradattr.METHODS`` with ``strict=True`` where it has the option: whether it runs, its time ÷ the
  floor (one forward + backward of the same batch), the error per cell otherwise. Bounded settings:
  IG ``steps=--ig-steps`` (8), SmoothGrad ``samples=--smoothgrad-samples`` (4), occlusion and Shapley sampling over
  56x56 patches of all channels (16 at 224, 36 at 299) with ``samples=2`` orderings; Grad-CAM / Guided Grad-CAM at
  the last module (in call order) whose output is (B, C, H, W) with H, W > 1 (printed);
- DeepLIFT's completeness error |ΣR − (f(x) − f(x̄))| / |f(x) − f(x̄)| (x̄ = 0, worst sample), also with
  ``max_pooling="exact"`` (``deeplift_exact_max``: max pooling as a tree of ReLUs), and eps-LRP's conservation
  |ΣR − f(x)| / |f(x)| (not expected to be 0: biases absorb relevance);
- Captum 0.9 ``DeepLift`` (zero baseline): time ÷ floor and the same completeness error; Zennit 0.5.1
  ``EpsilonPlus`` (``ResNetCanonizer`` / ``VGGCanonizer`` where Zennit has one, else ``SequentialMergeBatchNorm``):
  time ÷ floor and conservation |ΣR − f(x)| / |f(x)|.

Timing: in rounds of (floor, method), the ratio the median of per-round ratios (so load from other processes hits
both): single-pass methods (and the peers) one warm-up call and ``--repeats`` rounds; multi-pass ones (IG,
SmoothGrad, occlusion, Shapley) one round, after a saliency call that warms gradattr's per-model set-up.

Resumable: each model runs in a fresh process (``--timeout`` s) that appends one JSON line per (model, method) to
``--results`` as soon as it is known; a later run skips every (model, method) already there (``--retry-errors`` runs
the failed ones again, ``--fresh`` starts over). Models are taken in order of GFLOPs (torchvision's weight metadata;
``--order name`` alphabetical) until ``--budget-minutes`` have passed. ``--report-only`` writes the markdown from the
results file without running anything.

Usage (the peer venv, gradattr from the checkout):
    PYTHONPATH=src /work/peers-venv/bin/python benchmarks/peers/torchvision_zoo.py --budget-minutes 40
    PYTHONPATH=src /work/peers-venv/bin/python benchmarks/peers/torchvision_zoo.py --models resnet18,vit_b_16 \\
        --methods deeplift,epsilon_lrp
    PYTHONPATH=src /work/peers-venv/bin/python benchmarks/peers/torchvision_zoo.py --report-only
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
import warnings
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cell_error, emit, fmt, header, markdown_table, print_table, run_child, timed

HERE = Path(__file__).resolve().parent
DEFAULT_RESULTS = HERE / "torchvision_zoo.jsonl"
DEFAULT_OUT = HERE / "TORCHVISION_ZOO.md"
BATCH = 2
PATCH = 56
MULTI_PASS = ("integrated_gradients", "smoothgrad", "occlusion", "shapley_sampling")
PEERS = ("captum_deeplift", "zennit_epsilon_plus")
VARIANTS = {"deeplift_exact_max": ("deeplift", {"max_pooling": "exact"})}
"""Further gradattr rows: (method, options); DeepLIFT with max pooling as a tree of ReLUs (exact completeness)."""
META = "_model"


# --------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------


def model_names() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def gflops(name: str) -> float:
    """GFLOPs of the model from torchvision's weight metadata (inf where unknown)."""
    import torchvision

    try:
        weights = list(torchvision.models.get_model_weights(name))
        return float(weights[0].meta.get("_ops", math.inf))
    except Exception:
        return math.inf


def image_size(name: str) -> int:
    return 299 if name == "inception_v3" else 224


def build(name: str, gen: torch.Generator, size: int) -> nn.Module:
    """torchvision's model with its own random initialisation, made healthy and non-degenerate: all-zero
    linear/conv weights (ViT's head, zero-initialised residual branches) re-drawn from N(0, 1/fan_in); BatchNorm
    running statistics calibrated on two random batches in training mode (without it, eval-mode BatchNorm with
    statistics that do not match the activations saturates ReLU6/hardswish nets: a constant output, zero
    gradient), then affine parameters 1 + 0.1·N(0, 1) and 0.1·N(0, 1); eval mode, parameters frozen."""
    import torchvision

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = torchvision.models.get_model(name, weights=None)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)) and not m.weight.any():
                fan_in = m.weight[0].numel()
                m.weight.normal_(0.0, 1 / math.sqrt(fan_in), generator=gen)
        if norms:
            for m in norms:
                m.reset_running_stats()
                m.momentum = None  # cumulative average over the calibration batches
            model.train()
            for _ in range(2):
                model(torch.randn(4, 3, size, size, generator=gen))
            for m in norms:
                if m.affine:
                    m.weight.copy_(1.0 + 0.1 * torch.randn(m.num_features, generator=gen))
                    m.bias.copy_(0.1 * torch.randn(m.num_features, generator=gen))
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def cam_layer(model: nn.Module, x: Tensor) -> str:
    """The last module, in the order its forward returns, whose output is (B, C, H, W) with H, W > 1."""
    found: list[str] = []
    handles = []
    for name, module in model.named_modules():
        if name:
            handles.append(
                module.register_forward_hook(
                    lambda _m, _a, out, name=name: (
                        found.append(name)
                        if isinstance(out, Tensor) and out.dim() == 4 and out.shape[-1] > 1 and out.shape[-2] > 1
                        else None
                    )
                )
            )
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    if not found:
        raise ValueError("no module with a (B, C, H, W) output")
    return found[-1]


# --------------------------------------------------------------------------------------------------
# One model, in a fresh process
# --------------------------------------------------------------------------------------------------


def floor_fn(model: nn.Module, x: Tensor, target: Tensor) -> Any:
    def floor() -> Tensor:
        xg = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(model(xg).gather(1, target[:, None]).sum(), xg)
        return g

    return floor


def paired(call: Any, floor: Any, rounds: int, warmup: int = 1) -> tuple[float, float, Any]:
    """(median seconds of ``call``, median over rounds of its time ÷ the floor's time in the same round, the last
    result): every round times one floor call and then one ``call``, so load from other processes hits both."""
    result = None
    for _ in range(warmup):
        result = call()
    seconds, ratios = [], []
    for _ in range(max(rounds, 1)):
        t0 = time.perf_counter()
        floor()
        t1 = time.perf_counter()
        result = call()
        t2 = time.perf_counter()
        seconds.append(t2 - t1)
        ratios.append((t2 - t1) / (t1 - t0))
    return statistics.median(seconds), statistics.median(ratios), result


def gradattr_options(method: str, name: str, layer: str, args: argparse.Namespace) -> dict[str, Any]:
    import gradattr

    size = image_size(name)
    options: dict[str, Any] = {
        "integrated_gradients": {"steps": args.ig_steps},
        "smoothgrad": {"samples": args.smoothgrad_samples},
        "occlusion": {"window": (3, PATCH, PATCH), "stride": (3, PATCH, PATCH)},
        "shapley_sampling": {"samples": 2, "feature_groups": gradattr.patches((3, size, size), PATCH)},
        "gradcam": {"layer": layer},
        "guided_gradcam": {"layer": layer},
        "epsilon_lrp": {"strict": True},
        "deeplift": {"strict": True},
    }.get(method, {})
    return options


def completeness(r: Tensor, delta: Tensor) -> float:
    """max over samples of |ΣR − delta| / |delta|."""
    sums = r.detach().double().flatten(1).sum(1)
    d = delta.double()
    return max((abs(s - v) / abs(v)) if v != 0 else math.inf for s, v in zip(sums.tolist(), d.tolist(), strict=True))


def zennit_composite(name: str) -> Any:
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.composites import EpsilonPlus
    from zennit.torchvision import ResNetCanonizer, VGGCanonizer

    if name.startswith(("resnet", "wide_resnet", "resnext")):
        canonizer: Any = ResNetCanonizer()
    elif name.startswith("vgg"):
        canonizer = VGGCanonizer()
    else:
        canonizer = SequentialMergeBatchNorm()
    return EpsilonPlus(canonizers=[canonizer]), type(canonizer).__name__


def run_model(name: str, methods: list[str], args: argparse.Namespace, results: Path) -> None:
    """Append one JSON line per method (and a ``_model`` line) for ``name`` to ``results``."""
    import gradattr

    torch.set_num_threads(args.threads)

    def write(method: str, **fields: Any) -> None:
        with results.open("a") as handle:
            handle.write(json.dumps({"model": name, "method": method, **fields}) + "\n")
        status = fields.get("error") or (f"{fields['ratio']:.2f}x floor" if fields.get("ratio") is not None else "ok")
        print(f"    {name} {method}: {status}", file=sys.stderr, flush=True)

    gen = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    size = image_size(name)
    try:
        model = build(name, gen, size)
    except Exception as exc:
        write(META, skipped=f"cannot build: {cell_error(exc)}")
        return
    x = torch.randn(BATCH, 3, size, size, generator=gen)
    with torch.no_grad():
        out = model(x)
        target = out.argmax(1)
        f_x = out.gather(1, target[:, None])[:, 0]
        f_0 = model(torch.zeros_like(x)).gather(1, target[:, None])[:, 0]
    build_s = time.perf_counter() - start
    floor = floor_fn(model, x, target)
    floor_s, _, _ = timed(floor, 3)
    try:
        layer = cam_layer(model, x)
    except Exception as exc:
        layer = ""
        layer_error = cell_error(exc)
    write(
        META,
        params=sum(p.numel() for p in model.parameters()),
        gflops=gflops(name),
        size=size,
        floor_s=floor_s,
        build_s=build_s,
        cam_layer=layer,
        threads=torch.get_num_threads(),
    )
    warmed = False
    for method in methods:
        if method in PEERS:
            run_peer(name, method, model, x, target, f_x, f_0, floor, args, write)
            continue
        if method in ("gradcam", "guided_gradcam") and not layer:
            write(method, error=f"no layer: {layer_error}")
            continue
        base, extra = VARIANTS.get(method, (method, {}))
        options = {**gradattr_options(base, name, layer, args), **extra}

        def call(method: str = base, options: dict[str, Any] = options) -> Tensor:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return gradattr.attribute(model, x, method=method, target=target, **options)

        try:
            if method in MULTI_PASS:
                if not warmed:
                    gradattr.attribute(model, x, method="saliency", target=target)
                    warmed = True
                seconds, ratio, r = paired(call, floor, 1, warmup=0)
            else:
                seconds, ratio, r = paired(call, floor, args.repeats)
        except Exception as exc:
            write(method, error=cell_error(exc, 300))
            continue
        warmed = True
        fields: dict[str, Any] = {"seconds": seconds, "ratio": ratio, "finite": bool(torch.isfinite(r).all())}
        if base == "deeplift":
            fields["completeness"] = completeness(r, f_x - f_0)
        if method == "epsilon_lrp":
            fields["conservation"] = completeness(r, f_x)
        if method in ("gradcam", "guided_gradcam"):
            fields["layer"] = layer
        write(method, **fields)


def run_peer(
    name: str,
    method: str,
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    f_x: Tensor,
    f_0: Tensor,
    floor: Any,
    args: argparse.Namespace,
    write: Any,
) -> None:
    try:
        if method == "captum_deeplift":
            from captum.attr import DeepLift

            def call() -> Tensor:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    return DeepLift(model).attribute(x, baselines=torch.zeros_like(x), target=target)

            seconds, ratio, r = paired(call, floor, args.repeats)
            write(
                method,
                seconds=seconds,
                ratio=ratio,
                completeness=completeness(r, f_x - f_0),
                finite=bool(torch.isfinite(r).all()),
            )
        else:
            from zennit.attribution import Gradient

            composite, canonizer = zennit_composite(name)
            one_hot = torch.zeros_like(model(x)).scatter_(1, target[:, None], 1.0)

            def call() -> Tensor:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    with Gradient(model, composite) as attributor:
                        _, relevance = attributor(x, one_hot)
                return relevance

            seconds, ratio, r = paired(call, floor, args.repeats)
            write(
                method,
                seconds=seconds,
                ratio=ratio,
                conservation=completeness(r, f_x),
                canonizer=canonizer,
                finite=bool(torch.isfinite(r).all()),
            )
    except Exception as exc:
        write(method, error=cell_error(exc, 300))


# --------------------------------------------------------------------------------------------------
# Driver and report
# --------------------------------------------------------------------------------------------------


def load_results(path: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """model -> method -> the latest record (later lines win)."""
    table: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill: recomputed
            table[record["model"]][record["method"]] = record
    return table


def todo(done: dict[str, dict[str, Any]], methods: list[str], retry_errors: bool) -> list[str]:
    if "skipped" in done.get(META, {}):
        return []
    return [m for m in methods if m not in done or (retry_errors and "error" in done[m])]


def report(
    table: dict[str, dict[str, dict[str, Any]]], models: list[str], methods: list[str], args: argparse.Namespace
) -> list[str]:
    ours = [m for m in methods if m not in PEERS and m not in VARIANTS]
    short = {
        "saliency": "sal",
        "gradient_x_input": "g*x",
        "integrated_gradients": f"IG({args.ig_steps})",
        "epsilon_lrp": "eps-LRP",
        "deeplift": "DeepLIFT",
        "occlusion": "occl",
        "shapley_sampling": "Shapley",
        "smoothgrad": f"SG({args.smoothgrad_samples})",
        "guided_backprop": "GBP",
        "deconvnet": "deconv",
        "gradcam": "Grad-CAM",
        "guided_gradcam": "GGCAM",
    }
    rows, comp_rows, skipped = [], [], []
    errors: dict[str, list[str]] = defaultdict(list)
    for name in models:
        rec = table.get(name, {})
        meta = rec.get(META)
        if meta is None:
            continue
        if "skipped" in meta:
            skipped.append([name, meta["skipped"]])
            continue
        for m in methods:
            if "error" in rec.get(m, {}):
                errors[rec[m]["error"]].append(f"{name}/{short.get(m, m)}")
        cells = []
        for m in ours:
            r = rec.get(m)
            if r is None:
                cells.append("·")
            elif "error" in r:
                cells.append("✗")
            else:
                cells.append(f"{r['ratio']:.2f}" + ("" if r.get("finite", True) else " (non-finite)"))
        ok = sum(1 for m in ours if m in rec and "error" not in rec[m])
        rows.append([name, f"{meta['gflops']:.2f}", f"{meta['floor_s'] * 1e3:.0f}", *cells, f"{ok}/{len(ours)}"])

        def get(method: str, key: str, spec: str, rec: dict[str, Any] = rec) -> str:
            r = rec.get(method)
            if r is None:
                return "·"
            if "error" in r:
                return "✗"
            return fmt(r.get(key), spec)

        if any(m in methods for m in ("deeplift", "epsilon_lrp", *VARIANTS, *PEERS)):
            comp_rows.append(
                [
                    name,
                    get("deeplift", "completeness", ".1e"),
                    get("deeplift", "ratio", ".2f"),
                    get("deeplift_exact_max", "completeness", ".1e"),
                    get("captum_deeplift", "completeness", ".1e"),
                    get("captum_deeplift", "ratio", ".2f"),
                    get("epsilon_lrp", "conservation", ".2e"),
                    get("epsilon_lrp", "ratio", ".2f"),
                    get("zennit_epsilon_plus", "conservation", ".2e"),
                    get("zennit_epsilon_plus", "ratio", ".2f"),
                    meta.get("cam_layer", ""),
                ]
            )
    columns = ["model", "GFLOPs", "floor ms", *[short.get(m, m) for m in ours], "runs"]
    comp_columns = [
        "model",
        "DeepLIFT compl. err",
        "DeepLIFT ×floor",
        "DeepLIFT max_pooling=exact compl. err",
        "Captum DeepLift compl. err",
        "Captum ×floor",
        "eps-LRP |ΣR−f|/|f|",
        "eps-LRP ×floor",
        "Zennit EpsilonPlus |ΣR−f|/|f|",
        "Zennit ×floor",
        "Grad-CAM layer",
    ]
    print()
    print_table(columns, rows)
    if comp_rows:
        print()
        print_table(comp_columns, comp_rows)
    n_ok = sum(1 for r in rows if r[-1] == f"{len(ours)}/{len(ours)}")
    lines = header("gradattr on the torchvision classification zoo", ["torch", "torchvision", "captum", "zennit"])
    lines += [
        f"`{' '.join(sys.argv)}`; results file `{args.results.name}`. Random weights (BatchNorm statistics "
        f"calibrated on random batches, affine parameters randomised), batch {BATCH}, 224x224 (inception_v3 "
        f"299x299), float32, {args.threads} threads. "
        f"{len(rows)} models measured, {len(skipped)} skipped, {n_ok} with every gradattr method running.",
        "",
        "## Time ÷ floor (floor = one forward + backward of the batch); ✗ = error (below), · = not run",
        "",
        f"IG({args.ig_steps}) and SmoothGrad({args.smoothgrad_samples}) are that many passes; occlusion and "
        f"Shapley ({PATCH}x{PATCH} patches, 2 orderings) are forward passes only.",
        "",
    ]
    lines += [*markdown_table(columns, rows), ""]
    if comp_rows:
        lines += [
            "## Completeness: DeepLIFT |ΣR − (f(x) − f(0))| / |f(x) − f(0)| (worst of the batch), LRP "
            "conservation |ΣR − f(x)| / |f(x)|, and the peers",
            "",
        ]
        lines += [*markdown_table(comp_columns, comp_rows), ""]
    if errors:
        lines += ["## Errors (one line each, with the cells that raised it)", ""]
        for message, cells in sorted(errors.items(), key=lambda kv: -len(kv[1])):
            lines.append(f"- `{message}` — {len(cells)}: {', '.join(cells[:12])}{' …' if len(cells) > 12 else ''}")
        lines.append("")
    if skipped:
        lines += ["## Skipped", ""] + [f"- {n}: {why}" for n, why in skipped] + [""]
    return lines


def run_models(
    models: list[str],
    methods: list[str],
    command: Callable[[str, list[str]], list[str]],
    args: argparse.Namespace,
    describe: Callable[[str], str] = str,
) -> None:
    """Each model's pending methods (not yet in ``args.results``; failed ones again with ``args.retry_errors``)
    in a child process ``command(model, methods)`` that appends to ``args.results``, one model after the
    other until ``args.budget_minutes`` have passed. The cells a failed child did not get to are marked as
    errors, so that a resumed run goes on after them."""
    start = time.perf_counter()
    table = load_results(args.results)
    pending = [(n, todo(table.get(n, {}), methods, args.retry_errors)) for n in models]
    pending = [(n, ms) for n, ms in pending if ms]
    print(f"{len(models)} models, {len(models) - len(pending)} done already, {len(pending)} to run", flush=True)
    for i, (name, ms) in enumerate(pending, 1):
        elapsed = (time.perf_counter() - start) / 60
        if elapsed > args.budget_minutes:
            print(f"budget of {args.budget_minutes:g} min spent; {len(pending) - i + 1} models left (rerun to go on)")
            break
        print(f"[{i}/{len(pending)}] {describe(name)}: {', '.join(ms)} — {elapsed:.1f} min in", flush=True)
        t0 = time.perf_counter()
        _, why = run_child(command(name, ms), timeout=args.timeout)
        if why:
            done = load_results(args.results).get(name, {})
            with args.results.open("a") as handle:
                if META not in done:
                    handle.write(json.dumps({"model": name, "method": META, "skipped": f"process: {why}"}) + "\n")
                for m in ms:
                    if m not in done:
                        handle.write(json.dumps({"model": name, "method": m, "error": f"not run: {why}"}) + "\n")
        print(f"    done in {time.perf_counter() - t0:.0f} s{'  (' + why + ')' if why else ''}", flush=True)


def main() -> None:
    import gradattr

    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument("--models", default="", help="comma-separated torchvision names (default: all)")
    parser.add_argument(
        "--methods",
        default="",
        help="comma-separated gradattr methods and/or peers "
        f"({', '.join(PEERS)}) and variants ({', '.join(VARIANTS)}); default: all",
    )
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="JSON lines, appended per result")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="markdown report")
    parser.add_argument("--budget-minutes", type=float, default=math.inf, help="start no model after this")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per model")
    parser.add_argument("--order", choices=["flops", "name"], default="flops")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls of single-pass methods (median)")
    parser.add_argument("--ig-steps", type=int, default=8)
    parser.add_argument("--smoothgrad-samples", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: robust on a shared machine)")
    parser.add_argument("--retry-errors", action="store_true", help="run (model, method) cells that failed again")
    parser.add_argument("--fresh", action="store_true", help="discard the results file first")
    parser.add_argument("--report-only", action="store_true", help="write the report from the results file")
    parser.add_argument("--child", metavar="MODEL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    methods = [m for m in args.methods.split(",") if m] or [*gradattr.METHODS, *VARIANTS, *PEERS]
    unknown = [m for m in methods if m not in gradattr.METHODS and m not in PEERS and m not in VARIANTS]
    if unknown:
        parser.error(f"unknown method(s) {', '.join(unknown)}")
    torch.set_num_threads(args.threads)
    if args.child:
        run_model(args.child, methods, args, args.results)
        emit({"model": args.child})
        return
    names = model_names()
    wanted = [m for m in args.models.split(",") if m]
    missing = [m for m in wanted if m not in names]
    if missing:
        parser.error(f"not a torchvision classification model: {', '.join(missing)}")
    models = wanted or names
    if args.order == "flops":
        models = sorted(models, key=lambda n: (gflops(n), n))
    if args.fresh and args.results.exists():
        args.results.unlink()
    if not args.report_only:

        def command(name: str, ms: list[str]) -> list[str]:
            return [
                sys.executable,
                str(Path(__file__).resolve()),
                "--child",
                name,
                "--methods",
                ",".join(ms),
                "--results",
                str(args.results),
                "--repeats",
                str(args.repeats),
                "--ig-steps",
                str(args.ig_steps),
                "--smoothgrad-samples",
                str(args.smoothgrad_samples),
                "--threads",
                str(args.threads),
            ]

        run_models(
            models,
            methods,
            command,
            args,
            describe=lambda name: f"{name} ({gflops(name):.2f} GFLOPs)",
        )
    table = load_results(args.results)
    lines = report(table, models, methods, args)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"\nwrote {args.out} ({len(table)} models in {args.results})")


if __name__ == "__main__":
    main()
