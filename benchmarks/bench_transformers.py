"""gradattr's eps-LRP (AttnLRP), DeepLIFT and IG on ViT-B/16- and GPT-2-small-sized transformers, beside the floor and
LXT 2.1, and the peak memory of IG under memory budgets.

Models (random weights, CPU, float32, eval; ``--batch``/``--seq``/``--layers`` shrink them, and the sizes used are
printed and written):

- ``vit``: HF ``ViTForImageClassification(ViTConfig())`` — hidden 768, 12 layers, 12 heads, 224x224, patch 16 —
  attributed to the pixels;
- ``gpt2``: HF ``GPT2LMHeadModel(GPT2Config())`` — hidden 768, 12 layers, vocabulary 50257 — at sequence ``--seq``
  (128), attributed to the input embeddings (``inputs_embeds``), target = the next-token logit at the last position;
- ``vit-tv``: torchvision's ``vit_b_16`` architecture (the ViT that LXT 2.1 patches; peer venv only), pixels;
  gradattr here with ``rules="cp"``, the rules of LXT's map for it (CP-LRP inside attention).

Per model: the floor = one forward + backward of the target logits w.r.t. the input; eps-LRP ÷ floor (target
≤ 1.3), DeepLIFT ÷ floor (target ≤ 2.2; zero baseline) with its completeness error, IG(``--ig-steps``) ÷
(steps × floor) (target ≤ 1.1), each timed in rounds with the floor (floor, method, ..., floor; each call's ratio to
the mean of the floors on either side, the median of those ratios). LXT's time for the same eps-LRP map
(``lxt.efficient.monkey_patch`` with the family's AttnLRP map; torchvision ViT: its CP-LRP map) runs in a fresh
process (LXT's patches are global and never undone): its floor before patching, then LXT's gradient × input; LXT ÷
its floor and gradattr ÷ LXT (each side's ratio to its own floor), and max|R_gradattr − R_LXT| / max|R_LXT| on the
same inputs (gradattr at ``--epsilon`` 1e-10, LXT's ε).
Where LXT does not import (the test venv), or has no patch map for the model (HF ViT), the column says so.
Memory: IG(``--ig-steps``) in fresh processes at ``gradattr.set_max_memory(budget)`` for each of ``--budgets`` (and
the default budget): peak resident memory during the call over the memory before it (VmHWM reset), the rows per
pass, and whether the peak stayed within the budget.

Usage:
    python benchmarks/bench_transformers.py                                   # full size: long on 2 cores
    python benchmarks/bench_transformers.py --batch 2 --seq 64 --layers 4     # a quick run
    PYTHONPATH=src /work/peers-venv/bin/python benchmarks/bench_transformers.py --models vit,gpt2,vit-tv  # with LXT
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import math
import statistics
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "peers"))
from _common import cell_error, emit, fmt, header, markdown_table, print_table, run_child  # noqa: E402

DEFAULT_OUT = HERE / "TRANSFORMERS.md"
MODELS = ("vit", "gpt2", "vit-tv")
TARGETS = {"eps": 1.3, "deeplift": 2.2, "ig": 1.1}


# --------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------


class EmbedsToLastLogits(nn.Module):
    """``e -> model(inputs_embeds=e).logits[:, -1]``: the next-token logits of a causal LM."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, embeds: Tensor) -> Tensor:
        return self.model(inputs_embeds=embeds, use_cache=False).logits[:, -1]


class PixelsToLogits(nn.Module):
    """``x -> model(pixel_values=x).logits``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixels: Tensor) -> Tensor:
        return self.model(pixel_values=pixels).logits


@dataclass
class Built:
    """A model as attributed (``wrapped``), the module LXT patches, the input and the targets."""

    name: str
    wrapped: nn.Module
    x: Tensor
    target: Tensor
    size: str
    lxt: tuple[str, str, str] | None  # (module LXT patches, lxt.efficient.models.<m>, map name) or None
    lxt_missing: str = ""
    rules: str | None = None  # gradattr's rules= for eps-LRP (None: default AttnLRP)


def build(name: str, args: argparse.Namespace) -> Built:
    """The seeded model ``name`` at the sizes of ``args`` (the same in every process)."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    if name == "vit-tv":
        from torchvision.models import VisionTransformer

        layers = args.layers or 12
        model: nn.Module = VisionTransformer(
            image_size=224,
            patch_size=16,
            num_layers=layers,
            num_heads=12,
            hidden_dim=768,
            mlp_dim=3072,
            num_classes=1000,
        )
        with torch.no_grad():  # torchvision's head starts at zero: every logit would be 0
            model.heads.head.weight.normal_(0.0, 768**-0.5, generator=gen)
        wrapped, x = model, torch.randn(args.batch, 3, 224, 224, generator=gen)
        size = f"torchvision VisionTransformer: {layers} layers, hidden 768, 224x224, patch 16, batch {args.batch}"
        lxt: tuple[str, str, str] | None = ("torchvision.models.vision_transformer", "vit_torch", "cp_LRP")
        missing, rules = "", "cp"
    else:
        import transformers

        if name == "vit":
            config = transformers.ViTConfig(attn_implementation=args.attn)
            if args.layers:
                config.num_hidden_layers = args.layers
            wrapped = PixelsToLogits(transformers.ViTForImageClassification(config))
            x = torch.randn(args.batch, 3, config.image_size, config.image_size, generator=gen)
            size = (
                f"HF ViTForImageClassification: {config.num_hidden_layers} layers, hidden {config.hidden_size}, "
                f"{config.image_size}x{config.image_size}, patch {config.patch_size}, batch {args.batch}, "
                f"{args.attn} attention"
            )
            lxt, missing, rules = (
                None,
                "LXT 2.1 has no patch map for HF ViT (only torchvision's VisionTransformer)",
                None,
            )
        else:
            config = transformers.GPT2Config(attn_implementation=args.attn)
            if args.layers:
                config.n_layer = args.layers
            model = transformers.GPT2LMHeadModel(config)
            wrapped = EmbedsToLastLogits(model)
            ids = torch.randint(0, config.vocab_size, (args.batch, args.seq), generator=gen)
            with torch.no_grad():
                x = model.get_input_embeddings()(ids)
            size = (
                f"HF GPT2LMHeadModel: {config.n_layer} layers, hidden {config.n_embd}, vocabulary "
                f"{config.vocab_size}, sequence {args.seq}, batch {args.batch}, {args.attn} attention"
            )
            lxt, missing, rules = ("transformers.models.gpt2.modeling_gpt2", "gpt2", "attnLRP"), "", None
    wrapped.eval()
    for p in wrapped.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        target = wrapped(x).argmax(1)
    return Built(name, wrapped, x, target, size, lxt, missing, rules)


def floor_fn(b: Built) -> Callable[[], Tensor]:
    def floor() -> Tensor:
        xg = b.x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(b.wrapped(xg).gather(1, b.target[:, None]).sum(), xg)
        return g

    return floor


def rounds(
    call: Callable[[], Any], floor: Callable[[], Any], n: int, warmup: int = 1
) -> tuple[float, float, float, Any]:
    """(median seconds of ``call``, of the floor, median per-round ratio call ÷ floor, last result): a floor call
    before every ``call`` and one after the last, each call's ratio taken to the mean of the floors on either side
    of it (a long call, IG's, sees the load of its whole duration on both sides of its ratio)."""
    result = None
    for _ in range(warmup):
        floor()
        result = call()
    calls, floors = [], []
    for _ in range(max(n, 1)):
        t0 = time.perf_counter()
        floor()
        t1 = time.perf_counter()
        result = call()
        calls.append(time.perf_counter() - t1)
        floors.append(t1 - t0)
    t0 = time.perf_counter()
    floor()
    floors.append(time.perf_counter() - t0)
    ratio = statistics.median(c / ((a + b) / 2) for c, a, b in zip(calls, floors, floors[1:], strict=False))
    return statistics.median(calls), statistics.median(floors), ratio, result


# --------------------------------------------------------------------------------------------------
# gradattr (this process)
# --------------------------------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    size: str
    floor: float = math.nan
    cells: dict[str, dict[str, Any]] = field(default_factory=dict)  # eps / deeplift / ig / lxt -> fields
    memory: list[dict[str, Any]] = field(default_factory=list)


def measure_gradattr(b: Built, args: argparse.Namespace) -> Row:
    import gradattr

    row = Row(b.name, b.size)
    floor = floor_fn(b)
    _, row.floor, _, _ = rounds(floor, floor, args.repeats)
    eps_options: dict[str, Any] = (
        {"epsilon": args.epsilon} if b.rules is None else {"rules": b.rules, "epsilon": args.epsilon}
    )
    with torch.no_grad():
        f_x = b.wrapped(b.x).gather(1, b.target[:, None])[:, 0]
        f_0 = b.wrapped(torch.zeros_like(b.x)).gather(1, b.target[:, None])[:, 0]
    calls: dict[str, tuple[Callable[[], Tensor], int, int]] = {
        "eps": (lambda: gradattr.attribute(b.wrapped, b.x, "epsilon_lrp", b.target, **eps_options), args.repeats, 1),
        "deeplift": (lambda: gradattr.attribute(b.wrapped, b.x, "deeplift", b.target), args.repeats, 1),
        "ig": (
            lambda: gradattr.attribute(b.wrapped, b.x, "integrated_gradients", b.target, steps=args.ig_steps),
            args.ig_repeats,
            0,
        ),
    }
    for key, (call, n, warmup) in calls.items():
        if key not in args.methods:
            continue
        print(f"  {b.name}: {key} ...", flush=True)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                seconds, floor_s, ratio, r = rounds(call, floor, n, warmup)
        except Exception as exc:
            row.cells[key] = {"error": cell_error(exc, 200)}
            continue
        cell: dict[str, Any] = {"seconds": seconds, "floor": floor_s, "ratio": ratio}
        if key == "ig":
            cell["ratio"] = ratio / args.ig_steps
        if key == "deeplift":
            sums = r.double().flatten(1).sum(1)
            delta = (f_x - f_0).double()
            cell["completeness"] = ((sums - delta).abs() / delta.abs()).max().item()
        if key == "eps":
            cell["R"] = r
        row.cells[key] = cell
    return row


# --------------------------------------------------------------------------------------------------
# LXT and memory: fresh processes
# --------------------------------------------------------------------------------------------------


def patch_lxt(spec: tuple[str, str, str]) -> None:
    """Apply LXT's efficient-mode patch map ``spec`` = (module patched, LXT models module, map name); LXT's
    patches are global and never undone, so only in a process of its own."""
    import lxt.efficient

    module, models, map_name = spec
    patch_map = getattr(importlib.import_module(f"lxt.efficient.models.{models}"), map_name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lxt.efficient.monkey_patch(importlib.import_module(module), patch_map)


def lxt_child(name: str, args: argparse.Namespace, out: Path) -> None:
    """Floor before patching, then LXT's efficient-mode gradient × input; the map saved to ``out``."""
    b = build(name, args)
    assert b.lxt is not None
    floor = floor_fn(b)
    _, floor_s, _, _ = rounds(floor, floor, args.repeats)
    patch_lxt(b.lxt)
    _, models, map_name = b.lxt

    def relevance() -> Tensor:
        e = b.x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(b.wrapped(e).gather(1, b.target[:, None]).sum(), e)
        return e.detach() * g

    relevance()
    times = []
    for _ in range(max(args.repeats, 1)):
        t0 = time.perf_counter()
        r = relevance()
        times.append(time.perf_counter() - t0)
    torch.save(r, out)
    emit({"seconds": statistics.median(times), "floor": floor_s, "map": f"{models}.{map_name}"})


def measure_lxt(b: Built, args: argparse.Namespace, row: Row, tmp: Path) -> None:
    if b.lxt is None:
        row.cells["lxt"] = {"error": b.lxt_missing}
        return
    if importlib.util.find_spec("lxt") is None:
        row.cells["lxt"] = {"error": "lxt not installed here (peer venv: /work/shared/peers/make-venv.sh)"}
        return
    print(f"  {b.name}: LXT ...", flush=True)
    out = tmp / f"{b.name}.lxt.pt"
    result, why = run_child(
        [sys.executable, str(Path(__file__).resolve()), *child_args(args), "--child", "lxt", b.name, str(out)],
        timeout=args.timeout,
    )
    if result is None:
        row.cells["lxt"] = {"error": why}
        return
    cell = {
        "seconds": result["seconds"],
        "floor": result["floor"],
        "ratio": result["seconds"] / result["floor"],
        "map": result["map"],
    }
    ours = row.cells.get("eps", {})
    if "R" in ours:
        theirs = torch.load(out)
        cell["rel"] = ((ours["R"] - theirs).abs().max() / theirs.abs().max()).item()
        cell["ours_over_lxt"] = ours["ratio"] / cell["ratio"]
    row.cells["lxt"] = cell


def status_mib(field_name: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def memory_child(name: str, budget: str, args: argparse.Namespace) -> None:
    """IG(steps) at ``budget`` in this fresh process: peak RSS during the call over RSS before it."""
    import gradattr
    from gradattr.memory import budget as default_budget
    from gradattr.memory import parse_memory

    b = build(name, args)
    gradattr.set_max_memory(None if budget == "default" else budget)
    limit = default_budget(torch.device("cpu")) if budget == "default" else parse_memory(budget)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gradattr.attribute(b.wrapped, b.x[:1], "integrated_gradients", b.target[:1], steps=1)  # set-up, measured once
    passes: list[int] = []
    b.wrapped.register_forward_pre_hook(lambda _m, a: passes.append(int(a[0].shape[0])))
    Path("/proc/self/clear_refs").write_text("5")
    before = status_mib("VmRSS")
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gradattr.attribute(b.wrapped, b.x, "integrated_gradients", b.target, steps=args.ig_steps)
    seconds = time.perf_counter() - t0
    peak = status_mib("VmHWM")
    emit(
        {
            "budget": budget,
            "budget_bytes": limit,
            "peak_mib": (peak or math.nan) - (before or math.nan),
            "before_mib": before,
            "seconds": seconds,
            "passes": dict(Counter(passes)),
        }
    )


def measure_memory(b: Built, args: argparse.Namespace, row: Row) -> None:
    for budget in ["default", *[v for v in args.budgets.split(",") if v]]:
        print(f"  {b.name}: IG({args.ig_steps}) memory at {budget} ...", flush=True)
        result, why = run_child(
            [sys.executable, str(Path(__file__).resolve()), *child_args(args), "--child", "memory", b.name, budget],
            timeout=args.timeout,
        )
        row.memory.append(result if result is not None else {"budget": budget, "error": why})


def child_args(args: argparse.Namespace) -> list[str]:
    return [
        "--batch",
        str(args.batch),
        "--seq",
        str(args.seq),
        "--layers",
        str(args.layers),
        "--attn",
        args.attn,
        "--repeats",
        str(args.repeats),
        "--ig-steps",
        str(args.ig_steps),
        "--threads",
        str(args.threads),
    ]


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------


def verdict(value: float | None, target: float) -> str:
    if value is None or value != value:
        return ""
    return " PASS" if value <= target else " MISS"


def report(rows: list[Row], args: argparse.Namespace, errors: dict[str, str]) -> list[str]:
    columns = [
        "model",
        "floor s",
        "eps-LRP s",
        "eps-LRP ÷ floor (≤ 1.3)",
        "DeepLIFT s",
        "DeepLIFT ÷ floor (≤ 2.2)",
        "DeepLIFT compl. err",
        f"IG({args.ig_steps}) s",
        f"IG ÷ ({args.ig_steps} × floor) (≤ 1.1)",
        "LXT s",
        "LXT ÷ its floor",
        "gradattr ÷ LXT",
        "max rel. diff vs LXT",
    ]
    table, notes = [], []
    for r in rows:

        def cell(key: str, field_name: str, spec: str, target: float | None = None, r: Row = r) -> str:
            c = r.cells.get(key)
            if c is None:
                return "·"
            if "error" in c:
                notes.append(f"- {r.name} {key}: `{c['error']}`")
                return "✗"
            value = c.get(field_name)
            return fmt(value, spec) + (verdict(value, target) if target is not None else "")

        before = len(notes)
        table.append(
            [
                r.name,
                fmt(r.floor, ".2f"),
                cell("eps", "seconds", ".2f"),
                cell("eps", "ratio", ".2f", 1.3),
                cell("deeplift", "seconds", ".2f"),
                cell("deeplift", "ratio", ".2f", 2.2),
                cell("deeplift", "completeness", ".1e"),
                cell("ig", "seconds", ".1f"),
                cell("ig", "ratio", ".2f", 1.1),
                cell("lxt", "seconds", ".2f"),
                cell("lxt", "ratio", ".2f"),
                cell("lxt", "ours_over_lxt", ".2f"),
                cell("lxt", "rel", ".1e"),
            ]
        )
        notes[before:] = list(dict.fromkeys(notes[before:]))
    print()
    print_table(columns, table)
    mem_columns = ["model", "budget", "budget MiB", "peak MiB", "within", "IG s", "rows per pass × passes"]
    mem_rows = []
    for r in rows:
        for m in r.memory:
            if "error" in m:
                mem_rows.append([r.name, m["budget"], "-", "-", "✗", "-", m["error"][:100]])
                continue
            limit = m.get("budget_bytes")
            within = "-" if not limit else ("yes" if m["peak_mib"] * 2**20 <= limit else "NO")
            passes = ", ".join(
                f"{k}×{v}" for k, v in sorted(((int(k), v) for k, v in m["passes"].items()), reverse=True)
            )
            mem_rows.append(
                [
                    r.name,
                    m["budget"],
                    fmt(limit / 2**20 if limit else None, ".0f"),
                    fmt(m["peak_mib"], ".0f"),
                    within,
                    fmt(m["seconds"], ".1f"),
                    passes,
                ]
            )
    if mem_rows:
        print()
        print_table(mem_columns, mem_rows)
    lines = header("Transformers: gradattr vs the floor and LXT", ["torch", "transformers", "lxt", "torchvision"])
    lines += [
        f"`{' '.join(sys.argv)}`; CPU float32, {torch.get_num_threads()} threads, random weights; timings: "
        f"rounds of (floor, method), {args.repeats} rounds after a warm-up (IG: {args.ig_repeats} round(s), no "
        "warm-up); ratios are medians of per-round ratios. LXT in a fresh process, its ratio to the floor "
        "measured there before patching; gradattr ÷ LXT = the two ratios' quotient.",
        "",
        "Sizes used:",
        "",
    ]
    lines += [f"- {r.name}: {r.size}" for r in rows] + [""]
    lines += [*markdown_table(columns, table), ""]
    if mem_rows:
        lines += [
            f"Peak memory of IG({args.ig_steps}) (fresh process per budget; `gradattr.set_max_memory`; peak "
            "RSS during the call over RSS before it):",
            "",
        ]
        lines += [*markdown_table(mem_columns, mem_rows), ""]
    if notes or errors:
        lines += ["Errors:", "", *notes, *[f"- {k}: `{v}`" for k, v in errors.items()], ""]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument("--models", default="vit,gpt2,vit-tv", help=f"comma-separated, of {', '.join(MODELS)}")
    parser.add_argument(
        "--methods", default="eps,deeplift,ig,lxt,memory", help="comma-separated, of eps, deeplift, ig, lxt, memory"
    )
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128, help="GPT-2 sequence length")
    parser.add_argument("--layers", type=int, default=0, help="transformer layers (0: the config default, 12)")
    parser.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"], help="HF attn_implementation")
    parser.add_argument("--repeats", type=int, default=3, help="rounds for eps-LRP, DeepLIFT and LXT")
    parser.add_argument("--epsilon", type=float, default=1e-10, help="eps-LRP's ε (1e-10: LXT's; no effect on time)")
    parser.add_argument("--ig-steps", type=int, default=32)
    parser.add_argument("--ig-repeats", type=int, default=1)
    parser.add_argument("--budgets", default="512MB,2GB", help="set_max_memory budgets besides the default")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (0: torch's default; 1 is robust on a "
        "shared machine: OpenMP threads stall when another process holds a core)",
    )
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per child process")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        kind, name, *rest = args.child
        if kind == "lxt":
            lxt_child(name, args, Path(rest[0]))
        else:
            memory_child(name, rest[0], args)
        return
    args.methods = [m for m in args.methods.split(",") if m]
    rows: list[Row] = []
    errors: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="bench-transformers-") as tmp:
        for name in [m for m in args.models.split(",") if m]:
            if name not in MODELS:
                parser.error(f"unknown model {name!r}; choose of {', '.join(MODELS)}")
            print(f"{name}: building", flush=True)
            try:
                b = build(name, args)
            except Exception as exc:
                errors[name] = f"cannot build: {cell_error(exc)}"
                print(f"  {errors[name]}", flush=True)
                continue
            row = measure_gradattr(b, args)
            if "lxt" in args.methods:
                measure_lxt(b, args, row, Path(tmp))
            if "memory" in args.methods:
                measure_memory(b, args, row)
            rows.append(row)
            del b
    lines = report(rows, args, errors)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
