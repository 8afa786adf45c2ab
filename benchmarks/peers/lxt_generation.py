"""gradattr's ``attribute_generation(..., method="epsilon_lrp")`` (AttnLRP rules) against LXT 2.1, token by token.

For each causal LM LXT 2.1 patches (the tiny GPT-2, Llama, Qwen2 and Gemma3 cases of ``lxt_agreement.py``: random
weights, init std 1/sqrt(d), norm weights perturbed, eager attention, float64), a prompt of ``--prompt`` random
tokens is continued greedily by ``--new`` tokens (argmax of the full forward pass, no cache). Then, for every
generated token i (sequence position P + i, predicted from position P + i − 1):

- LXT (its documented usage, in a fresh process since its patches are global): ``monkey_patch`` the family's
  modelling module with ``attnLRP``, build the model and load the weights, embeddings of x_0..x_{P+i-1} a leaf that
  requires grad, ``model(inputs_embeds=e)``, backward of the logit of x_{P+i} at the last position,
  relevance row = (e ⊙ grad).sum(-1);
- gradattr: one call of ``gradattr.generation.attribute_generation(model, prompt, generated_ids=...,
  method="epsilon_lrp")`` on the unpatched model, row i of ``.matrix`` (its NaN entries j ≥ P + i left out).

Reported per model: max_i max_j |M_gradattr[i, j] − M_LXT[i, j]| / max |M_LXT| at gradattr's default ε (1e-4) and
at ε = 1e-10 (LXT's identity-rule stabiliser; see LXT_AGREEMENT.md), the worst row, each row's ΣR ÷ its logit on
both sides, whether ``attribute_generation`` without ``generated_ids`` generates the same tokens, and the times.
Where rows differ beyond 1e-5 at ε = 1e-10, the module outputs' relevance (``_common.Probe``) of the worst row is
compared as in ``lxt_agreement.py`` and the first module where the two part is named.

Usage (the peer venv):
    PYTHONPATH=src /work/peers-venv/bin/python benchmarks/peers/lxt_generation.py [--cases llama-tiny,qwen2-tiny]
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Probe, compare_probes, emit, fmt, header, markdown_table, print_table, run_child
from lxt_agreement import CASES, TOLERANCE, VOCAB, Case, build, divergence, load_model, perturb_norms

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "LXT_GENERATION.md"
DEFAULT_CASES = ("gpt2-tiny", "llama-tiny", "qwen2-tiny", "gemma3-tiny")


def prepare(case: Case, prompt: int, new: int, path: Path) -> dict[str, Any]:
    """The seeded model (``lxt_agreement``'s recipe), a random prompt and its greedy continuation (no cache)."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    model = build(case)
    perturb_norms(model, gen)
    model = model.double().eval()
    ids = torch.randint(0, VOCAB, (1, prompt), generator=gen)
    with torch.no_grad():
        for _ in range(new):
            logits = model(ids, use_cache=False).logits[:, -1]
            ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=1)
        logits = model(ids, use_cache=False).logits[0, prompt - 1 : -1]
    target_logits = logits.gather(-1, ids[0, prompt:, None])[:, 0]
    data = {"state": model.state_dict(), "ids": ids, "prompt": prompt, "logits": target_logits}
    torch.save(data, path)
    return data


def lxt_rows(case: Case, data: dict[str, Any], probe_row: int | None) -> dict[str, Any]:
    """LXT's AttnLRP relevance of every generated token's logit: one forward/backward on the truncated sequence per
    row. ``probe_row``: also record the module-output relevance of that row."""
    import lxt.efficient

    patch_map = importlib.import_module(f"lxt.efficient.models.{case.fam.lxt_models}").attnLRP
    lxt.efficient.monkey_patch(importlib.import_module(case.fam.module), patch_map)
    model = load_model(case, data, torch.float64)
    ids, prompt = data["ids"], data["prompt"]
    rows, seconds, probes = [], 0.0, {}
    for i in range(ids.shape[1] - prompt):
        probe = Probe(model) if i == probe_row else None
        start = time.perf_counter()
        e = model.get_input_embeddings()(ids[:, : prompt + i]).detach().requires_grad_(True)
        logit = model(inputs_embeds=e, use_cache=False).logits[0, -1, ids[0, prompt + i]]
        (grad,) = torch.autograd.grad(logit, e)
        rows.append((e.detach() * grad).sum(-1)[0])
        seconds += time.perf_counter() - start
        if probe is not None:
            probes = probe.relevance()
            probe.close()
    return {"rows": rows, "seconds": seconds, "probes": probes}


def gradattr_matrix(case: Case, data: dict[str, Any], epsilon: float | None, given: bool = True) -> Any:
    """``attribute_generation`` on the unpatched model (``epsilon=None``: gradattr's default)."""
    from gradattr.generation import attribute_generation

    model = load_model(case, data, torch.float64)
    ids, prompt = data["ids"], data["prompt"]
    options: dict[str, Any] = {} if epsilon is None else {"epsilon": epsilon}
    generated = {"generated_ids": ids[:, prompt:]} if given else {"max_new_tokens": ids.shape[1] - prompt}
    return attribute_generation(model, ids[:, :prompt], method="epsilon_lrp", **generated, **options)


def gradattr_probes(case: Case, data: dict[str, Any], row: int, epsilon: float) -> dict[str, Tensor]:
    """The module-output relevance of gradattr's row ``row`` (the same call, one generated token explained)."""
    from gradattr.generation import attribute_generation

    model = load_model(case, data, torch.float64)
    ids, prompt = data["ids"], data["prompt"]
    probe = Probe(model)
    try:
        attribute_generation(
            model, ids[:, : prompt + row], method="epsilon_lrp", generated_ids=ids[:, prompt + row : prompt + row + 1],
            epsilon=epsilon,
        )  # fmt: skip
        return probe.relevance()
    finally:
        probe.close()


def child(name: str, workdir: Path, probe_row: int) -> None:
    case = CASES[name]
    data = torch.load(workdir / f"{slug(name)}.pt", weights_only=False)
    out = lxt_rows(case, data, probe_row if probe_row >= 0 else None)
    torch.save(out, workdir / f"{slug(name)}.lxt.pt")
    emit({"case": name, "seconds": out["seconds"]})


def slug(name: str) -> str:
    return name.replace("/", "_")


def lxt_child(name: str, workdir: Path, probe_row: int, timeout: float) -> tuple[dict[str, Any] | None, str]:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", name, str(workdir), str(probe_row)]
    result, why = run_child(command, timeout=timeout)
    return (torch.load(workdir / f"{slug(name)}.lxt.pt", weights_only=False), "") if result else (None, why)


def row_diffs(matrix: Tensor, lxt: list[Tensor], prompt: int) -> tuple[list[float], float]:
    """Per row max|Δ| / max|M_LXT| (the scale: the whole LXT matrix), and the scale."""
    scale = max(float(r.abs().max()) for r in lxt)
    diffs = [float((matrix[0, i, : prompt + i] - r).abs().max()) / scale for i, r in enumerate(lxt)]
    return diffs, scale


def run_case(name: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    case = CASES[name]
    data = prepare(case, args.prompt, args.new, workdir / f"{slug(name)}.pt")
    prompt, logits = data["prompt"], data["logits"]
    out: dict[str, Any] = {"case": case, "error": ""}
    lxt, why = lxt_child(name, workdir, -1, args.timeout)
    if lxt is None:
        out["error"] = f"LXT: {why}"
        return out
    out["lxt_s"] = lxt["seconds"]
    out["lxt_conservation"] = [float(r.sum() / v) for r, v in zip(lxt["rows"], logits, strict=True)]
    for label, epsilon in (("default", None), ("mid", 1e-6), ("tiny", args.epsilon)):
        start = time.perf_counter()
        result = gradattr_matrix(case, data, epsilon)
        out[f"{label}_s"] = time.perf_counter() - start
        diffs, out["scale"] = row_diffs(result.matrix, lxt["rows"], prompt)
        out[f"{label}_rows"] = diffs
        if label == "tiny":
            out["ours_conservation"] = (result.matrix[0].nansum(-1) / logits).tolist()
            out["first_row"] = (lxt["rows"][-1][:8].tolist(), result.matrix[0, -1, :8].tolist())
    regenerated = gradattr_matrix(case, data, args.epsilon, given=False)
    out["same_tokens"] = bool(torch.equal(regenerated.ids, data["ids"]))
    worst = max(range(len(out["tiny_rows"])), key=out["tiny_rows"].__getitem__)
    out["worst"] = worst
    if out["tiny_rows"][worst] > TOLERANCE:  # where the worst row parts: module outputs on both sides
        lxt_probe, _ = lxt_child(name, workdir, worst, args.timeout)
        ours = gradattr_probes(case, data, worst, args.epsilon)
        if lxt_probe is not None:
            out["first_diff"], out["divergence"] = divergence(compare_probes(ours, lxt_probe["probes"]), TOLERANCE)
    return out


def verdict(o: dict[str, Any]) -> str:
    if o["error"]:
        return "ERROR"
    return "PASS" if max(o["tiny_rows"]) <= TOLERANCE else "MISS"


def report(outcomes: list[dict[str, Any]], args: argparse.Namespace) -> list[str]:
    columns = [
        "case",
        "model",
        "rows",
        "max rel. diff, ε=1e-4 (default)",
        "ε=1e-6",
        f"max rel. diff, ε={args.epsilon:g}",
        "worst row",
        "ΣR/logit LXT (min–max)",
        "ΣR/logit gradattr (min–max)",
        "same greedy tokens",
        "LXT ms (all rows)",
        "gradattr ms (one call)",
        "verdict",
    ]
    rows = []
    for o in outcomes:
        case = o["case"]
        if o["error"]:
            rows.append([case.name, case.describe(), *["-"] * 10, f"ERROR: {o['error']}"])
            continue
        lc, oc = o["lxt_conservation"], o["ours_conservation"]
        rows.append(
            [
                case.name,
                f"{case.layers}L, d={case.hidden}, {case.heads} heads",
                f"{args.new} (prompt {args.prompt})",
                fmt(max(o["default_rows"]), ".1e"),
                fmt(max(o["mid_rows"]), ".1e"),
                fmt(max(o["tiny_rows"]), ".1e"),
                str(o["worst"]),
                f"{min(lc):.4f}–{max(lc):.4f}",
                f"{min(oc):.4f}–{max(oc):.4f}",
                "yes" if o["same_tokens"] else "NO",
                fmt(o["lxt_s"] * 1e3, ".1f"),
                fmt(o["tiny_s"] * 1e3, ".1f"),
                verdict(o),
            ]
        )
    print()
    print_table(columns, rows)
    lines = header(
        "gradattr attribute_generation (eps-LRP, AttnLRP) vs LXT 2.1, token by token", ["torch", "transformers", "lxt"]
    )
    lines += [
        f"`{' '.join(sys.argv)}`; float64, eager attention, random weights (lxt_agreement.py's recipe), batch 1; "
        f"a {args.prompt}-token random prompt continued greedily by {args.new} tokens. LXT: one forward/backward per "
        "generated token on the truncated sequence (its documented usage, in its own process); gradattr: one "
        '`attribute_generation(..., method="epsilon_lrp")` call for all rows. max rel. diff = max over rows and '
        "tokens of |M_gradattr − M_LXT| / max|M_LXT| (the whole matrix's largest LXT relevance), at gradattr's "
        "default ε, 1e-6 and LXT's. ΣR/logit: each row's relevance sum over its generated token's logit, "
        "smallest and largest row. Same greedy tokens: "
        "`attribute_generation` without `generated_ids` (HF `generate`, key/value cache) continues with the tokens "
        f"of the no-cache argmax loop. Target: ≤ {TOLERANCE:g} at ε = {args.epsilon:g} (LXT's identity rule "
        "f(z)/(z + 1e-10)). At gradattr's default ε = 1e-4 the rows differ by the identity rule's ε alone: the "
        "difference shrinks in proportion to ε (1e-4 → 1e-6: ~1/100; 1e-10: rounding), as in LXT_AGREEMENT.md. "
        "Times: one unwarmed call per side, 1 thread, on a shared machine (indicative only).",
        "",
        *markdown_table(columns, rows),
        "",
    ]
    for o in outcomes:
        if o["error"]:
            continue
        notes = [
            f"- per-row rel. diff, ε={args.epsilon:g}: " + ", ".join(f"{v:.1e}" for v in o["tiny_rows"]),
            "- per-row rel. diff, default ε: " + ", ".join(f"{v:.1e}" for v in o["default_rows"]),
            "- last row, first 8 tokens: LXT " + ", ".join(f"{v:.4g}" for v in o["first_row"][0]),
            "  gradattr " + ", ".join(f"{v:.4g}" for v in o["first_row"][1]),
        ]
        if o.get("first_diff"):
            notes.append(f"- row {o['worst']}: {o['first_diff']}; module outputs around it, backward order:")
            notes += [
                "",
                *markdown_table(
                    ["module call", "rel. diff", "ΣR LXT", "ΣR gradattr"],
                    [
                        [r["module"], f"{r['rel']:.2e}", f"{r['sum_theirs']:.6g}", f"{r['sum_ours']:.6g}"]
                        for r in o["divergence"]
                    ],
                ),
            ]
        lines += [f"### {o['case'].name}", "", *notes, ""]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument("--cases", default=",".join(DEFAULT_CASES), help="comma-separated lxt_agreement cases")
    parser.add_argument("--prompt", type=int, default=10, help="prompt tokens")
    parser.add_argument("--new", type=int, default=6, help="greedily generated tokens")
    parser.add_argument("--epsilon", type=float, default=1e-10, help="gradattr's ε of the second comparison")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=600, help="seconds per LXT child")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--child", nargs=3, metavar=("CASE", "DIR", "PROBE_ROW"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        child(args.child[0], Path(args.child[1]), int(args.child[2]))
        return
    names = [n for n in args.cases.split(",") if n]
    unknown = [n for n in names if n not in CASES or not CASES[n].fam.causal]
    if unknown:
        parser.error(f"not a causal lxt_agreement case: {', '.join(unknown)}")
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="lxt-generation-") as tmp:
        for name in names:
            start = time.perf_counter()
            outcome = run_case(name, args, Path(tmp))
            rel = fmt(max(outcome.get("tiny_rows", [math.nan])), ".1e")
            print(f"{name}: {verdict(outcome)} rel {rel} ({time.perf_counter() - start:.0f} s) {outcome['error']}")
            outcomes.append(outcome)
    args.out.write_text("\n".join(report(outcomes, args)) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
