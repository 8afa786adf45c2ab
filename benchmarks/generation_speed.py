"""Explaining generated text: gradattr's ``attribute_generation`` per generated token vs Captum 0.9's
``LLMGradientAttribution`` and inseq, and gradattr's memory and time vs sequence length.

Section ``tools`` (one process, ``--threads`` torch threads, CPU, float32): a GPT-2-small-sized HF
``GPT2LMHeadModel`` (n_embd 768, 12 layers, 12 heads, ``--vocab`` tokens, random weights, seed 0, HF's default
attention), a ``--prompt``-token random prompt continued greedily (HF ``generate``) by ``--tokens`` tokens. Every
tool explains the same tokens (``generated_ids=`` / Captum's and inseq's ``target``) at the token embedding
(``transformer.wte``), summed over the embedding:

- gradattr: one ``attribute_generation(model, prompt, generated_ids=..., method=...)`` call for all rows, for
  saliency, gradient_x_input, deeplift, epsilon_lrp (the generated token's logit) and integrated_gradients
  (``--steps``; the target as Captum's: log p(token) = log_softmax(logits) through ``output=``, baseline = the
  embedding of token 0 at the prompt positions and the tokens' own embeddings at generated positions — Captum's
  ``TextTokenInput(baselines=0)`` path, which only varies the prompt);
- Captum 0.9: ``LLMGradientAttribution(LayerIntegratedGradients(model, wte), tokenizer)`` (``n_steps=--steps``,
  ``method="riemann_right"``, gradattr's sum) and ``LLMGradientAttribution(LayerGradientXActivation(model, wte))``
  (input × gradient of the embedding; Captum's LLM wrapper offers no plain-gradient or DeepLIFT/LRP variant: its
  SUPPORTED_METHODS are LayerGradientShap, LayerGradientXActivation, LayerIntegratedGradients), target log p;
- inseq (``--inseq-python``, a separate venv; its own transformers): ``integrated_gradients`` and
  ``input_x_gradient`` on the same weights and tokens, ``n_steps=--steps`` — timed, not compared (its baseline and
  target differ).

Integrated Gradients is expensive on 2 CPU cores (steps × tokens forward/backward passes of a 160-token GPT-2
small), so IG explains the first ``--ig-tokens`` generated tokens (the same ones for every tool); the other methods
the first ``--explain``. Each tool is warmed up on one token first; then ``--repeats`` rounds, each calling every
tool once in turn (interleaved, so that the load of the shared machine falls on all alike), the median reported;
beside them the floor, one plain forward + backward of one token's log p.
Numbers checked: max |M_gradattr − M_Captum| / max |M_Captum| over the rows (prompt columns: Captum reports those
only). Captum ÷ gradattr > 1: gradattr is faster. Where gradattr is slower than a peer, its call on
``--profile-tokens`` tokens is profiled (cProfile, top entries by own time, and torch.profiler's top ops).

Section ``memory``: gradattr alone on a small GPT-2 (n_embd 128, 4 layers, 4 heads, ``--vocab``), prompt lengths
``--lengths`` + 8 generated (random) tokens, eps-LRP and IG(``--steps``); each (length, method) in a fresh process:
one short warm-up call, then the peak resident memory during the call over the memory before it (Linux VmHWM,
reset just before the call; ``ig_memory.py``'s reader), seconds, the rows per pass (a hook on the embedding) and
gradattr's default memory budget.

Usage (the peer venv; gradattr from the checkout):
    PYTHONPATH=src /work/peers-venv/bin/python benchmarks/generation_speed.py             # both sections
    PYTHONPATH=src /work/peers-venv/bin/python benchmarks/generation_speed.py --sections memory --lengths 256,2048
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import math
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "peers"))
sys.path.insert(0, str(HERE))
from _common import cell_error, emit, fmt, header, markdown_table, print_table, run_child  # noqa: E402

DEFAULT_OUT = HERE / "GENERATION.md"
INSEQ_PYTHON = "/work/inseq-venv/bin/python"
GRADATTR_METHODS = ("saliency", "gradient_x_input", "deeplift", "epsilon_lrp", "integrated_gradients")
IG_VARIANTS = {
    "integrated_gradients/batched": "batch_size = steps × tokens (all path points in one pass)",
    "integrated_gradients/batched-nogap": "the same and gap_tolerance=None (no completeness check: no S(x), S(x̄))",
}
"""Diagnostic gradattr rows (``--methods``): IG with its options changed, to find where its time goes."""
PEER_OF = {"integrated_gradients": "integrated_gradients", "gradient_x_input": "input_x_gradient"}


# --------------------------------------------------------------------------------------------------
# Models, tokens, a tokenizer whose tokens are the ids
# --------------------------------------------------------------------------------------------------


def gpt2(hidden: int, layers: int, heads: int, vocab: int, positions: int = 1024) -> nn.Module:
    import transformers

    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=vocab, n_embd=hidden, n_layer=layers, n_head=heads, n_positions=positions,
        bos_token_id=vocab - 1, eos_token_id=vocab - 1,
    )  # fmt: skip
    return transformers.GPT2LMHeadModel(config).eval()


def id_tokenizer(vocab: int) -> Any:
    """A HF fast tokenizer whose token ``t<i>`` is id i (whitespace-split words): text round-trips to the ids."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel({f"t{i}": i for i in range(vocab)}, unk_token="t0"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="t0", pad_token="t0")


def text_of(ids: Tensor) -> str:
    return " ".join(f"t{int(i)}" for i in ids)


def log_probs(out: Any) -> Tensor:
    """gradattr's ``output=``: the next-token log-probabilities (Captum's LLM target)."""
    return torch.log_softmax(out.logits, dim=-1)


def timed_once(fn: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


# --------------------------------------------------------------------------------------------------
# The tools
# --------------------------------------------------------------------------------------------------


def gradattr_call(model: nn.Module, ids: Tensor, prompt: int, count: int, method: str, steps: int) -> Tensor:
    """attribute_generation's matrix (1, count, prompt + count) for the first ``count`` generated tokens."""
    from gradattr.generation import attribute_generation

    options: dict[str, Any] = {}
    if method.startswith("integrated_gradients"):
        embeddings = model.get_input_embeddings().weight.detach()
        baseline = embeddings[ids[0, : prompt + count]].clone()
        baseline[:prompt] = embeddings[0]
        options = {"steps": steps, "output": log_probs, "baseline": baseline}
        if method != "integrated_gradients":
            options["batch_size"] = steps * count
        if method.endswith("-nogap"):
            options["gap_tolerance"] = None
        method = "integrated_gradients"
    elif method == "gradient_x_input":
        options = {"output": log_probs}
    result = attribute_generation(
        model, ids[:, :prompt], method=method, generated_ids=ids[:, prompt : prompt + count], **options
    )
    return result.matrix


def captum_call(
    model: nn.Module, tokenizer: Any, ids: Tensor, prompt: int, count: int, method: str, steps: int
) -> Tensor:
    """Captum's LLMGradientAttribution token_attr (count, prompt)."""
    from captum.attr import LayerGradientXActivation, LayerIntegratedGradients, LLMGradientAttribution, TextTokenInput

    wte = model.get_input_embeddings()
    if method == "integrated_gradients":
        attr, kwargs = LayerIntegratedGradients(model, wte), {"n_steps": steps, "method": "riemann_right"}
    else:
        attr, kwargs = LayerGradientXActivation(model, wte), {}
    llm = LLMGradientAttribution(attr, tokenizer)
    inp = TextTokenInput(text_of(ids[0, :prompt]), tokenizer)
    result = llm.attribute(inp, target=ids[0, prompt : prompt + count], **kwargs)
    return result.token_attr


def profile_gradattr(model: nn.Module, ids: Tensor, prompt: int, count: int, method: str, steps: int) -> list[str]:
    """cProfile's top entries (own time) and torch.profiler's top ops (self CPU) of one gradattr call."""
    profiler = cProfile.Profile()
    profiler.enable()
    gradattr_call(model, ids, prompt, count, method, steps)
    profiler.disable()
    stream = io.StringIO()
    pstats.Stats(profiler, stream=stream).sort_stats("tottime").print_stats(18)
    text = stream.getvalue()
    cprofile = text[text.index("ncalls") :] if "ncalls" in text else text
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        gradattr_call(model, ids, prompt, count, method, steps)
    ops = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=14)
    return [
        f"#### gradattr {method}, {count} generated tokens: cProfile, top 18 by own time",
        "",
        "```",
        *[line.rstrip() for line in cprofile.strip().splitlines()],
        "```",
        "",
        f"#### gradattr {method}, {count} generated tokens: torch.profiler, top 14 ops by self CPU time",
        "",
        "```",
        *[line.rstrip() for line in ops.strip().splitlines()],
        "```",
        "",
    ]


def inseq_child(workdir: Path, steps: int, ig_tokens: int, tokens: int, threads: int) -> None:
    """inseq in its own venv: IG and input × gradient on the saved model and tokens; seconds per call."""
    import importlib.metadata

    import inseq
    import transformers

    torch.set_num_threads(threads)
    saved = torch.load(workdir / "tools.pt", weights_only=False)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**saved["config"])).eval()
    model.load_state_dict(saved["state"])
    ids, prompt = saved["ids"], saved["prompt"]
    tokenizer = id_tokenizer(saved["config"]["vocab_size"])
    out: dict[str, Any] = {"versions": {p: importlib.metadata.version(p) for p in ("inseq", "transformers")}}
    for method, count in (("integrated_gradients", ig_tokens), ("input_x_gradient", tokens)):
        try:
            explainer = inseq.load_model(model, method, tokenizer=tokenizer)
            options = {"n_steps": steps} if method == "integrated_gradients" else {}

            def run(n: int, explainer: Any = explainer, options: dict[str, Any] = options) -> Any:
                return explainer.attribute(
                    text_of(ids[0, :prompt]), text_of(ids[0, : prompt + n]), show_progress=False, **options
                )

            run(1)  # warm-up
            seconds, res = timed_once(lambda count=count, run=run: run(count))
            seq = res.sequence_attributions[0]
            out[method] = {"seconds": seconds, "tokens": count, "targets": len(seq.target),
                           "shape": list(seq.target_attributions.shape)}  # fmt: skip
        except Exception as exc:
            out[method] = {"error": cell_error(exc, 300)}
    emit(out)


def measure_tools(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    model = gpt2(768, 12, 12, args.vocab)
    for p in model.parameters():
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(1)
    prompt_ids = torch.randint(0, args.vocab - 1, (1, args.prompt), generator=gen)
    with torch.no_grad():
        ids = model.generate(
            prompt_ids, attention_mask=torch.ones_like(prompt_ids), max_new_tokens=args.tokens,
            min_new_tokens=args.tokens, do_sample=False, pad_token_id=args.vocab - 1,
        )  # fmt: skip
    prompt = args.prompt
    config = model.config.to_diff_dict()
    config = {k: v for k, v in config.items() if k in ("vocab_size", "n_embd", "n_layer", "n_head", "n_positions")}
    torch.save({"state": model.state_dict(), "config": config, "ids": ids, "prompt": prompt}, workdir / "tools.pt")
    tokenizer = id_tokenizer(args.vocab)
    rows: list[dict[str, Any]] = []
    matrices: dict[tuple[str, str], Tensor] = {}
    calls: dict[tuple[str, str], tuple[int, Any]] = {}
    for method in args.methods:
        count = args.ig_tokens if method.startswith("integrated_gradients") else args.explain

        def ours(c: int, m: str = method) -> Tensor:
            return gradattr_call(model, ids, prompt, c, m, args.steps)[0, :, :prompt]

        calls["gradattr", method] = (count, ours)
        if method in PEER_OF:

            def theirs(c: int, m: str = method) -> Tensor:
                return captum_call(model, tokenizer, ids, prompt, c, m, args.steps)

            calls["captum", method] = (count, theirs)

    def floor(c: int) -> Tensor:
        """One plain forward + backward of one generated token's log p on the explained sequence, 1 row."""
        e = model.get_input_embeddings()(ids[:, : prompt + c]).detach().requires_grad_(True)
        out = log_probs(model(inputs_embeds=e))[0, -2, ids[0, prompt + c - 1]]
        (grad,) = torch.autograd.grad(out, e)
        return grad

    calls["floor", "fwd+bwd"] = (args.explain, floor)
    for _, fn in calls.values():  # warm-up: one token each
        fn(1)
    seconds: dict[tuple[str, str], list[float]] = {key: [] for key in calls}
    for round_ in range(args.repeats):  # interleaved rounds: every tool sees the same load
        for key, (count, fn) in calls.items():
            elapsed, result = timed_once(lambda fn=fn, count=count: fn(count))
            seconds[key].append(elapsed)
            if key[0] != "floor":
                matrices[key] = result.detach()
            print(f"  round {round_ + 1}: {key[0]} {key[1]}, {count} tokens: {elapsed:.2f} s", flush=True)
    for (tool, method), (count, _) in calls.items():
        median = statistics.median(seconds[tool, method])
        tokens = 1 if tool == "floor" else count  # the floor is one token's gradient
        rows.append({"tool": tool, "method": method, "tokens": tokens, "seconds": median, "all": seconds[tool, method]})
    checks = {}
    for method in PEER_OF:
        if ("captum", method) in matrices:
            ours, theirs = matrices["gradattr", method].double(), matrices["captum", method].double()
            checks[method] = {
                "rel": float((ours - theirs).abs().max() / theirs.abs().max()),
                "shape": list(theirs.shape),
                "row0": (theirs[0, -6:].tolist(), ours[0, -6:].tolist()),
            }
    inseq: dict[str, Any] = {}
    if args.inseq_python and Path(args.inseq_python).exists():
        print("  inseq ...", flush=True)
        command = [args.inseq_python, str(Path(__file__).resolve()), "--child", "inseq", str(workdir)]
        command += ["--steps", str(args.steps), "--ig-tokens", str(args.ig_tokens), "--explain", str(args.explain)]
        command += ["--threads", str(args.threads)]
        result, why = run_child(command, timeout=args.timeout)
        inseq = result if result is not None else {"error": why}
        for method, peer in PEER_OF.items():
            cell = inseq.get(peer, {})
            if "seconds" in cell:
                rows.append({"tool": "inseq", "method": method, "tokens": cell["tokens"], "seconds": cell["seconds"]})
    else:
        inseq = {"error": f"no inseq venv at {args.inseq_python}"}
    profiles: list[str] = []
    per_token = {(r["tool"], r["method"]): r["seconds"] / r["tokens"] for r in rows}
    for method in PEER_OF:
        ours = per_token.get(("gradattr", method))
        peers = [per_token[t, method] for t in ("captum", "inseq") if (t, method) in per_token]
        if ours is not None and peers and ours > min(peers):
            print(f"  profiling gradattr {method} (slower than a peer) ...", flush=True)
            profiles += profile_gradattr(model, ids, prompt, args.profile_tokens, method, args.steps)
    return {"rows": rows, "checks": checks, "inseq": inseq, "profiles": profiles, "ids": ids[0].tolist()}


# --------------------------------------------------------------------------------------------------
# Memory and time vs sequence length
# --------------------------------------------------------------------------------------------------


def memory_child(length: int, method: str, args: argparse.Namespace) -> None:
    from gradattr.generation import attribute_generation
    from ig_memory import _reset_peak, _status_mib, budget_bytes

    torch.set_num_threads(args.threads)
    model = gpt2(128, 4, 4, args.vocab, positions=4096)
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, args.vocab - 1, (1, length + 8), generator=gen)
    options: dict[str, Any] = {"steps": args.mem_steps} if method == "integrated_gradients" else {}

    def call(prompt: Tensor, generated: Tensor) -> Any:
        return attribute_generation(model, prompt, method=method, generated_ids=generated, **options)

    call(ids[:, :16], ids[:, 16:17])  # warm-up, outside the measurement
    passes: list[int] = []
    model.get_input_embeddings().register_forward_pre_hook(lambda _m, a: passes.append(int(a[0].shape[0])))
    if not _reset_peak():
        raise RuntimeError("needs Linux /proc/self/clear_refs to reset the peak RSS")
    before = _status_mib("VmRSS") or math.nan
    seconds, result = timed_once(lambda: call(ids[:, :length], ids[:, length:]))
    peak = (_status_mib("VmHWM") or math.nan) - before
    emit(
        {
            "length": length,
            "method": method,
            "seconds": seconds,
            "before_mib": before,
            "peak_mib": peak,
            "budget_bytes": budget_bytes("default"),
            "passes": dict(Counter(passes)),
            "finite_rows": int(torch.isfinite(result.matrix[0, :, 0]).sum()),
        }
    )


def measure_memory(args: argparse.Namespace) -> list[dict[str, Any]]:
    out = []
    for method in ("epsilon_lrp", "integrated_gradients"):
        for length in args.lengths:
            print(f"  memory: {method}, prompt {length} + 8 ...", flush=True)
            command = [sys.executable, str(Path(__file__).resolve()), "--child", "memory", str(length), method]
            command += ["--mem-steps", str(args.mem_steps), "--threads", str(args.threads), "--vocab", str(args.vocab)]
            result, why = run_child(command, timeout=args.timeout)
            out.append(result if result is not None else {"length": length, "method": method, "error": why})
            print(f"    {json.dumps(out[-1])}", flush=True)
    return out


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------


def tools_lines(tools: dict[str, Any], args: argparse.Namespace) -> list[str]:
    per_token = {(r["tool"], r["method"]): r["seconds"] / r["tokens"] for r in tools["rows"]}
    count = {(r["tool"], r["method"]): r["tokens"] for r in tools["rows"]}
    rounds = {(r["tool"], r["method"]): r["all"] for r in tools["rows"] if "all" in r}

    def round_ratio(peer: str, method: str) -> float | None:
        """Median over the rounds of peer seconds ÷ gradattr seconds in the same round (same tokens)."""
        theirs, ours = rounds.get((peer, method.split("/")[0])), rounds.get(("gradattr", method))
        if not theirs or not ours or len(theirs) != len(ours):
            return None
        return statistics.median(t / o for t, o in zip(theirs, ours, strict=True))

    columns = ["method", "tokens explained", "gradattr s/token", "Captum s/token", "inseq s/token",
               "Captum ÷ gradattr", "inseq ÷ gradattr", "gradattr ÷ floor", "Captum ÷ floor",
               "max rel. diff vs Captum"]  # fmt: skip
    rows = []
    base = per_token.get(("floor", "fwd+bwd"))
    for method in args.methods:
        ours = per_token.get(("gradattr", method))
        if ours is None:
            continue
        peer = method.split("/")[0]  # a diagnostic IG variant: against the peers' IG
        captum, inseq = per_token.get(("captum", peer)), per_token.get(("inseq", peer))
        check = tools["checks"].get(method)
        label = f"{method} ({args.steps} steps)" if method.startswith("integrated_gradients") else method
        rows.append(
            [
                label,
                count["gradattr", method],
                fmt(ours, ".2f"),
                fmt(captum, ".2f") if captum else "none in Captum's LLM wrapper",
                fmt(inseq, ".2f") if inseq else "-",
                fmt(round_ratio("captum", method), ".2f") if captum else "-",
                fmt(inseq / ours, ".2f") if inseq else "-",
                fmt(ours / base, ".2f") if base else "-",
                fmt(captum / base, ".2f") if captum and base else "-",
                fmt(check["rel"], ".1e") if check else "-",
            ]
        )
    print()
    print_table(columns, rows)
    lines = [
        "## Per generated token: gradattr vs Captum 0.9 and inseq",
        "",
        f"GPT-2-small-sized `GPT2LMHeadModel` (n_embd 768, 12 layers, 12 heads, vocabulary {args.vocab}, random "
        f"weights, float32, CPU, {args.threads} torch threads); a {args.prompt}-token random prompt, {args.tokens} "
        f"tokens generated greedily; integrated gradients explains the first {args.ig_tokens} of them, the other "
        f"methods the first {args.explain} (the same tokens in every tool). Seconds per generated token = one "
        "call's seconds ÷ tokens explained (median of interleaved rounds after a one-token warm-up). Captum ÷ "
        "gradattr: the median of the per-round ratios (> 1: gradattr is faster). "
        "max rel. diff = max|M_gradattr − M_Captum| / max|M_Captum| over the rows' prompt tokens (target log p, "
        "Captum's; IG: right Riemann sum, baseline token 0 on the prompt).",
        "",
        *markdown_table(columns, rows),
        "",
        *[f"- {m}: {IG_VARIANTS[m]}" for m in args.methods if m in IG_VARIANTS],
        f"- floor: one plain forward + backward of one token's log p (1 row, {args.prompt + args.explain} tokens), "
        f"{fmt(base, '.3f')} s; ÷ floor columns: seconds per generated token ÷ floor (1 = one gradient per token).",
        "- all timed calls (s), in interleaved rounds: "
        + "; ".join(
            f"{r['tool']} {r['method']}: " + ", ".join(f"{v:.2f}" for v in r["all"])
            for r in tools["rows"]
            if "all" in r
        ),
    ]
    for method, check in tools["checks"].items():
        lines.append(
            f"- {method}, row 0, last 6 prompt tokens: Captum "
            + ", ".join(f"{v:.4g}" for v in check["row0"][0])
            + "; gradattr "
            + ", ".join(f"{v:.4g}" for v in check["row0"][1])
        )
    inseq = tools["inseq"]
    if inseq.get("error"):
        lines.append(f"- inseq: `{inseq['error']}`")
    else:
        lines.append(f"- inseq: {inseq.get('versions')} in {args.inseq_python} (its own transformers)")
        for peer in PEER_OF.values():
            cell = inseq.get(peer, {})
            if cell.get("error"):
                lines.append(f"- inseq {peer}: `{cell['error']}`")
            else:
                lines.append(
                    f"- inseq {peer}: {cell.get('targets')} target tokens, target_attributions {cell.get('shape')}"
                )
    lines.append("")
    if tools["profiles"]:
        lines += ["### Where gradattr's time goes (methods where a peer is faster)", "", *tools["profiles"]]
    return lines


def memory_lines(memory: list[dict[str, Any]], args: argparse.Namespace) -> list[str]:
    columns = ["method", "prompt + generated", "seconds", "s / generated token", "peak RSS growth MiB",
               "× previous length's", "budget MiB", "RSS before MiB", "rows per pass (passes)",
               "rows explained"]  # fmt: skip
    rows = []
    previous: dict[str, float] = {}
    for r in memory:
        label = f"{r['method']} ({args.mem_steps} steps)" if r["method"] == "integrated_gradients" else r["method"]
        if "error" in r:
            rows.append([label, f"{r['length']} + 8", *["-"] * 7, f"ERROR: {r['error']}"])
            continue
        growth = r["peak_mib"] / previous[r["method"]] if r["method"] in previous else math.nan
        previous[r["method"]] = r["peak_mib"]
        passes = ", ".join(f"{k} ({v})" for k, v in sorted(r["passes"].items(), key=lambda kv: int(kv[0])))
        rows.append(
            [
                label,
                f"{r['length']} + 8",
                fmt(r["seconds"], ".1f"),
                fmt(r["seconds"] / 8, ".2f"),
                fmt(r["peak_mib"], ".0f"),
                fmt(growth, ".2f"),
                fmt(r["budget_bytes"] / 2**20 if r["budget_bytes"] else None, ".0f"),
                fmt(r["before_mib"], ".0f"),
                passes,
                f"{r['finite_rows']}/8",
            ]
        )
    print()
    print_table(columns, rows)
    return [
        "## gradattr: memory and time vs sequence length",
        "",
        f"`GPT2LMHeadModel` n_embd 128, 4 layers, 4 heads, vocabulary {args.vocab}, random weights, float32, CPU, "
        f"{args.threads} torch threads; a random prompt of each length + 8 given (random) generated tokens, all 8 "
        "explained in one `attribute_generation` call; each row a fresh process. Peak RSS growth = Linux VmHWM "
        "(reset just before the call via /proc/self/clear_refs) − VmRSS before the call (after the model, a "
        "warm-up call on 16 tokens). Rows per pass: batch rows of each forward pass (a hook on the embedding; the "
        "2- and 4-row passes are the memory budget's measuring passes). Budget: gradattr's default memory budget in "
        "that process (it follows the RAM available at the time). × previous length's: the peak over the peak at "
        "half the length (2 = linear growth, 4 = quadratic).",
        "",
        *markdown_table(columns, rows),
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument("--sections", default="tools,memory")
    parser.add_argument("--methods", default=",".join(GRADATTR_METHODS))
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--tokens", type=int, default=32, help="generated tokens")
    parser.add_argument("--explain", type=int, default=8, help="generated tokens explained (all methods but IG)")
    parser.add_argument("--ig-tokens", type=int, default=2, help="generated tokens explained by IG")
    parser.add_argument("--mem-steps", type=int, default=4, help="IG steps of the memory section")
    parser.add_argument("--steps", type=int, default=16, help="IG steps (every tool)")
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lengths", default="256,512,1024,2048")
    parser.add_argument("--profile-tokens", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2, help="interleaved timing rounds (median)")
    parser.add_argument("--inseq-python", default=INSEQ_PYTHON)
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.methods = args.methods.split(",")
    unknown = [m for m in args.methods if m not in GRADATTR_METHODS and m not in IG_VARIANTS]
    if unknown:
        parser.error(f"unknown method(s) {', '.join(unknown)}")
    args.lengths = [int(v) for v in args.lengths.split(",") if v]
    if args.child:
        if args.child[0] == "memory":
            memory_child(int(args.child[1]), args.child[2], args)
        else:
            inseq_child(Path(args.child[1]), args.steps, args.ig_tokens, args.explain, args.threads)
        return
    torch.set_num_threads(args.threads)
    sections = args.sections.split(",")
    uptime_before = os.getloadavg()
    lines = header("Explaining generated text: gradattr vs Captum and inseq", ["torch", "transformers", "captum"])
    lines += [f"`{' '.join(sys.argv)}`", ""]
    with tempfile.TemporaryDirectory(prefix="generation-speed-") as tmp:
        if "tools" in sections:
            lines += tools_lines(measure_tools(args, Path(tmp)), args)
        if "memory" in sections:
            lines += memory_lines(measure_memory(args), args)
    after = os.getloadavg()
    lines += [
        f"Load average (1, 5, 15 min) before: {' '.join(f'{v:.2f}' for v in uptime_before)}; after: "
        f"{' '.join(f'{v:.2f}' for v in after)} (2 cores; other sessions share the machine).",
        "",
    ]
    args.out.write_text("\n".join(lines) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
