"""gradattr's eps-LRP against LXT 2.1's ``efficient`` mode (AttnLRP, Achtibat et al., ICML 2024) on the models LXT
supports: the same weights, the same input embeddings, relevance = embeddings ⊙ (modified) gradient of the target
logit on both sides. SPEC "Modern ops": on LXT's models gradattr's eps-LRP with the AttnLRP rules must equal LXT.

Models (random weights, float64 by default, eager attention), tiny and mid-size configs of each family LXT 2.1
patches: HF BERT (``BertForSequenceClassification``, with padding and an attention mask), GPT-2 (``GPT2LMHeadModel``),
Llama (``LlamaForCausalLM``, grouped-query attention), Qwen2 and Gemma3 (text) — target: the argmax logit (the
next-token logit at the last position for causal LMs) — and torchvision's ``VisionTransformer``, the only ViT LXT 2.1
patches (``lxt.efficient.models.vit_torch``: CP-LRP inside attention, AttnLRP outside; HF ``ViTModel`` has no LXT
patch map), attributed to the pixels. ``/cp`` cases use LXT's ``cp_LRP`` maps and gradattr's ``rules="cp"``;
``llama-tiny/cp-gate`` adds, through a gradattr ``RuleSet`` override, the one rule in which LXT's Llama CP map
differs from gradattr's ``"cp"``: the SwiGLU gate held constant (all relevance of ``act(gate) * up`` to ``up``).

LXT side (its documented usage): ``lxt.efficient.monkey_patch(modeling_module, patch_map)``, then the model built
and loaded with the weights, the embeddings a leaf requiring grad, ``model(inputs_embeds=...)``, the gradient of the
target logit (``torch.autograd.grad``, seeded with 1, parameters frozen), relevance = embeddings ⊙ grad.
gradattr side: ``gradattr.attribute(wrapper, embeddings, method="epsilon_lrp", target=..., epsilon=...)`` on an
unpatched model with the same weights, where ``wrapper(e) = model(inputs_embeds=e, attention_mask=...).logits`` (last
position for causal LMs); and, where gradattr has it, the HuggingFace form ``attribute(model, input_ids,
layer=<word embedding>, forward_kwargs={"attention_mask": ...}, position=-1)`` ("HF API" column).
LXT's patches are global and never undone (it replaces ``torch.nn.LayerNorm.forward``, ``nn.Dropout.forward``, the
BERT module's classes, ...), so each side of each case runs in its own fresh process; the parent builds the model
once (seeded), saves weights and embeddings, and compares what the two children return.

The identity rule: LXT uses f(z)/(z + 1e-10), gradattr f(z)/(z + ε·sign z); ``--epsilon`` (default 1e-10) matches
them (gradattr's default ε = 1e-4 moves relevance by ~1e-4 relative). Reported per case: max|R_gradattr − R_LXT| /
max|R_LXT| (target ≤ 1e-5), the same for per-token sums, ΣR ÷ the target logit on each side, the time of each
(fastest of ``--repeats``).
Where the maps differ, the relevance out ⊙ grad at every module output (hooks on both sides) is compared, and the
first module in backward order where they part is named, with the modules around it.

Usage (the peer venv, gradattr from the checkout):
    PYTHONPATH=src /work/peers-venv/bin/python benchmarks/peers/lxt_agreement.py            # all cases
    PYTHONPATH=src /work/peers-venv/bin/python benchmarks/peers/lxt_agreement.py --cases gpt2-tiny,llama-tiny
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    Probe,
    cell_error,
    compare_probes,
    emit,
    fmt,
    header,
    markdown_table,
    print_table,
    relative_difference,
    run_child,
    timed,
)

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "LXT_AGREEMENT.md"
TOLERANCE = 1e-5
VOCAB = 1000


@dataclass(frozen=True)
class Family:
    """A model family: its HF modelling module (what LXT patches), class, config and LXT patch-map module."""

    module: str  # the module LXT's monkey_patch takes
    cls: str
    config: str
    lxt_models: str  # lxt.efficient.models.<...>
    embedding: str  # dotted name of the word embedding (HF API column)
    causal: bool


FAMILIES = {
    "bert": Family(
        "transformers.models.bert.modeling_bert",
        "BertForSequenceClassification",
        "BertConfig",
        "bert",
        "bert.embeddings.word_embeddings",
        causal=False,
    ),
    "gpt2": Family(
        "transformers.models.gpt2.modeling_gpt2",
        "GPT2LMHeadModel",
        "GPT2Config",
        "gpt2",
        "transformer.wte",
        causal=True,
    ),
    "llama": Family(
        "transformers.models.llama.modeling_llama",
        "LlamaForCausalLM",
        "LlamaConfig",
        "llama",
        "model.embed_tokens",
        causal=True,
    ),
    "qwen2": Family(
        "transformers.models.qwen2.modeling_qwen2",
        "Qwen2ForCausalLM",
        "Qwen2Config",
        "qwen2",
        "model.embed_tokens",
        causal=True,
    ),
    "gemma3": Family(
        "transformers.models.gemma3.modeling_gemma3",
        "Gemma3ForCausalLM",
        "Gemma3TextConfig",
        "gemma3",
        "model.embed_tokens",
        causal=True,
    ),
    "vit": Family("torchvision.models.vision_transformer", "VisionTransformer", "", "vit_torch", "", causal=False),
}


@dataclass(frozen=True)
class Case:
    """One comparison: a family at a size, the batch, and which rules each side uses."""

    name: str
    family: str
    hidden: int
    layers: int
    heads: int
    seq: int  # tokens (image side for ViT)
    batch: int = 2
    lxt_map: str = "attnLRP"
    rules: str | None = None  # gradattr's rules= option (None: its default, AttnLRP)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def fam(self) -> Family:
        return FAMILIES[self.family]

    def describe(self) -> str:
        what = f"{self.image}px, patch {self.extra['patch']}" if self.family == "vit" else f"seq {self.seq}"
        return f"{self.layers}L, d={self.hidden}, {self.heads} heads, batch {self.batch}, {what}"

    @property
    def image(self) -> int:
        return self.seq


CASES = {
    c.name: c
    for c in [
        Case("bert-tiny", "bert", 64, 2, 4, 16),
        Case("bert-mid", "bert", 384, 6, 6, 64),
        Case("gpt2-tiny", "gpt2", 64, 2, 4, 16),
        Case("gpt2-mid", "gpt2", 384, 6, 6, 64),
        Case("gpt2-tiny/cp", "gpt2", 64, 2, 4, 16, lxt_map="cp_LRP", rules="cp"),
        Case("llama-tiny", "llama", 64, 2, 4, 16, extra={"kv_heads": 2, "intermediate": 172}),
        Case("llama-mid", "llama", 384, 6, 6, 64, extra={"kv_heads": 2, "intermediate": 1024}),
        Case(
            "llama-tiny/cp",
            "llama",
            64,
            2,
            4,
            16,
            lxt_map="cp_LRP",
            rules="cp",
            extra={"kv_heads": 2, "intermediate": 172},
        ),
        Case(
            "llama-tiny/cp-gate",
            "llama",
            64,
            2,
            4,
            16,
            lxt_map="cp_LRP",
            rules="cp-gate",
            extra={"kv_heads": 2, "intermediate": 172},
        ),
        Case("qwen2-tiny", "qwen2", 64, 2, 4, 16, extra={"kv_heads": 2, "intermediate": 172}),
        Case("gemma3-tiny", "gemma3", 64, 2, 4, 16, extra={"kv_heads": 2, "intermediate": 172}),
        Case("vit-tiny", "vit", 64, 2, 4, 32, lxt_map="cp_LRP", rules="cp", extra={"patch": 8}),
        Case("vit-mid", "vit", 384, 6, 6, 224, lxt_map="cp_LRP", rules="cp", extra={"patch": 16}),
    ]
}


# --------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------


ATTN = "eager"  # HF attn_implementation of every case (``--attn``)


def build(case: Case) -> nn.Module:
    """The case's model with freshly initialised weights (class looked up now: after LXT's patch, LXT's)."""
    fam = case.fam
    module = importlib.import_module(fam.module)
    if case.family == "vit":
        return module.VisionTransformer(
            image_size=case.image,
            patch_size=case.extra["patch"],
            num_layers=case.layers,
            num_heads=case.heads,
            hidden_dim=case.hidden,
            mlp_dim=4 * case.hidden,
            num_classes=10,
        )
    import transformers

    std = 1 / math.sqrt(case.hidden)  # attention neither uniform nor one-hot at random init
    common: dict[str, Any] = {"vocab_size": VOCAB, "initializer_range": std, "attn_implementation": ATTN}
    if case.family == "bert":
        config = transformers.BertConfig(
            hidden_size=case.hidden,
            num_hidden_layers=case.layers,
            num_attention_heads=case.heads,
            intermediate_size=4 * case.hidden,
            max_position_embeddings=512,
            num_labels=3,
            **common,
        )
    elif case.family == "gpt2":
        config = transformers.GPT2Config(
            n_embd=case.hidden, n_layer=case.layers, n_head=case.heads, n_positions=512, **common
        )
    else:
        config = getattr(transformers, fam.config)(
            hidden_size=case.hidden,
            num_hidden_layers=case.layers,
            num_attention_heads=case.heads,
            num_key_value_heads=case.extra["kv_heads"],
            intermediate_size=case.extra["intermediate"],
            max_position_embeddings=512,
            head_dim=case.hidden // case.heads,
            **common,
        )
    return getattr(module, fam.cls)(config)


def perturb_norms(model: nn.Module, gen: torch.Generator) -> None:
    """Every norm layer (a class named ``*Norm*``) made non-trivial: weight 1 + 0.1·N(0, 1) (Gemma's (1 + w) form:
    0.1·N(0, 1)), bias 0.1·N(0, 1)."""
    with torch.no_grad():
        for module in model.modules():
            kind = type(module).__name__
            if "Norm" not in kind:
                continue
            for name, p in module.named_parameters(recurse=False):
                noise = 0.1 * torch.randn(p.shape, generator=gen, dtype=p.dtype)
                p.copy_(1.0 + noise if name == "weight" and not kind.startswith("Gemma") else noise)


class EmbedsToLogits(nn.Module):
    """``e -> model(inputs_embeds=e, attention_mask=mask).logits``; causal LMs: the last position's logits."""

    def __init__(self, model: nn.Module, mask: Tensor | None, causal: bool) -> None:
        super().__init__()
        self.model, self.mask, self.causal = model, mask, causal

    def forward(self, embeds: Tensor) -> Tensor:
        mask = self.mask
        if mask is not None and mask.shape[0] != embeds.shape[0]:  # a pass over other rows: tile or drop the mask
            rows = embeds.shape[0]
            mask = mask.repeat(rows // mask.shape[0], 1) if rows % mask.shape[0] == 0 else None
        if self.causal:
            return self.model(inputs_embeds=embeds, attention_mask=mask, use_cache=False).logits[:, -1]
        return self.model(inputs_embeds=embeds, attention_mask=mask).logits


def logits_of(case: Case, model: nn.Module, x: Tensor, mask: Tensor | None) -> Tensor:
    """(B, C) target-space logits of ``model`` on embeddings (or pixels for ViT) ``x``."""
    return model(x) if case.family == "vit" else EmbedsToLogits(model, mask, case.fam.causal)(x)


def prepare(case: Case, dtype: torch.dtype, path: Path) -> dict[str, Any]:
    """Build the seeded model, its inputs, embeddings and targets; save what the children need to ``path``."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    model = build(case)
    perturb_norms(model, gen)
    if case.family == "vit":  # torchvision initialises the classification head to zero: every logit 0
        with torch.no_grad():
            model.heads.head.weight.normal_(0.0, 1 / math.sqrt(case.hidden), generator=gen)
    model = model.to(dtype).eval()
    ids = mask = None
    if case.family == "vit":
        x = torch.randn(case.batch, 3, case.image, case.image, generator=gen, dtype=dtype)
    else:
        ids = torch.randint(0, VOCAB, (case.batch, case.seq), generator=gen)
        mask = torch.ones(case.batch, case.seq, dtype=torch.long)
        if not case.fam.causal and case.batch > 1:
            mask[1, -max(case.seq // 4, 1) :] = 0  # padding at the end of the second sample
        with torch.no_grad():
            x = model.get_input_embeddings()(ids)
    with torch.no_grad():
        logits = logits_of(case, model, x, mask)
    target = logits.argmax(1)
    data = {
        "state": model.state_dict(),
        "x": x,
        "ids": ids,
        "mask": mask,
        "target": target,
        "logit": logits.gather(1, target[:, None])[:, 0],
    }
    torch.save(data, path)
    return data


# --------------------------------------------------------------------------------------------------
# The two sides, each in a fresh process
# --------------------------------------------------------------------------------------------------


def load_model(case: Case, data: dict[str, Any], dtype: torch.dtype) -> nn.Module:
    model = build(case).to(dtype)
    model.load_state_dict(data["state"])
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def lxt_side(case: Case, data: dict[str, Any], dtype: torch.dtype, repeats: int) -> dict[str, Any]:
    """LXT's efficient mode: patch the family's module with the case's map, build, gradient × input."""
    import lxt.efficient

    patch_map = getattr(importlib.import_module(f"lxt.efficient.models.{case.fam.lxt_models}"), case.lxt_map)
    lxt.efficient.monkey_patch(importlib.import_module(case.fam.module), patch_map)
    model = load_model(case, data, dtype)
    x, mask, target = data["x"], data["mask"], data["target"]

    def relevance() -> Tensor:
        e = x.clone().requires_grad_(True)
        out = logits_of(case, model, e, mask)
        (g,) = torch.autograd.grad(out.gather(1, target[:, None]).sum(), e)
        return e.detach() * g

    _, all_seconds, _ = timed(relevance, repeats)
    seconds = min(all_seconds)
    probe = Probe(model)
    rel = relevance()
    probes = probe.relevance()
    probe.close()
    return {"R": rel, "probes": probes, "seconds": seconds}


class HoldGate:
    """Product rule: the first factor (``act(gate_proj(x))`` in ``act(gate) * up``) is a constant in the backward
    pass, so all relevance of the product goes to the second (``up_proj(x)``) — LXT's ``cp_gated_mlp_forward``."""

    needs_reference = False

    def apply(self, product: Any, a: Tensor, b: Tensor, references: Any, constant: int | None) -> Tensor:
        return product(a.detach(), b)


def cp_gate_rules(epsilon: float) -> Any:
    """gradattr's ``"cp"`` rule set with :class:`HoldGate` at products inside ``*.mlp``: LXT's CP-LRP map for
    gated MLPs (``lxt.efficient.models.llama.cp_LRP``), through gradattr's public rule-set overrides."""
    import dataclasses

    from gradattr import rulesets

    base = rulesets.epsilon_lrp("cp", epsilon)
    return dataclasses.replace(base, overrides=(rulesets.Override("product", HoldGate(), "*.mlp"),))


def gradattr_side(case: Case, data: dict[str, Any], dtype: torch.dtype, repeats: int, epsilon: float) -> dict[str, Any]:
    """gradattr's eps-LRP on the unpatched model: embeddings through a wrapper; then the HF form where it exists."""
    import gradattr

    model = load_model(case, data, dtype)
    x, mask, target = data["x"], data["mask"], data["target"]
    options: dict[str, Any] = {"epsilon": epsilon}
    if case.rules == "cp-gate":  # a RuleSet object: its own ε
        options = {"rules": cp_gate_rules(epsilon)}
    elif case.rules is not None:
        options["rules"] = case.rules
    wrapped = model if case.family == "vit" else EmbedsToLogits(model, mask, case.fam.causal)
    out: dict[str, Any] = {}

    def relevance() -> Tensor:
        return gradattr.attribute(wrapped, x, method="epsilon_lrp", target=target, **options)

    try:
        out["seconds"] = min(timed(relevance, repeats)[1])
        probe = Probe(model)
        try:
            out["R"] = relevance()
            out["probes"] = probe.relevance()
        finally:
            probe.close()
    except Exception as exc:
        out["error"] = cell_error(exc, 300)
    if case.family != "vit":  # the HuggingFace form of the same call
        hf: dict[str, Any] = {"layer": case.fam.embedding, "forward_kwargs": {"attention_mask": mask}}
        if case.fam.causal:
            hf["position"] = -1
        try:
            out["R_hf"] = gradattr.attribute(model, data["ids"], method="epsilon_lrp", target=target, **hf, **options)
        except Exception as exc:
            out["hf_error"] = cell_error(exc, 300)
    return out


def child(side: str, name: str, workdir: Path, dtype_name: str, repeats: int, epsilon: float) -> None:
    case, dtype = CASES[name], getattr(torch, dtype_name)
    data = torch.load(workdir / f"{slug(name)}.pt", weights_only=False)
    start = time.perf_counter()
    out = lxt_side(case, data, dtype, repeats) if side == "lxt" else gradattr_side(case, data, dtype, repeats, epsilon)
    torch.save(out, workdir / f"{slug(name)}.{side}.pt")
    emit({"side": side, "case": name, "wall": time.perf_counter() - start, "error": out.get("error", "")})


def slug(name: str) -> str:
    return name.replace("/", "_")


# --------------------------------------------------------------------------------------------------
# Comparison
# --------------------------------------------------------------------------------------------------


def token_sums(case: Case, r: Tensor) -> Tensor:
    """(B, tokens): relevance summed over the embedding dimension, or over channels and each patch (ViT)."""
    if case.family != "vit":
        return r.sum(-1)
    p, b = case.extra["patch"], r.shape[0]
    n = case.image // p
    return r.sum(1).reshape(b, n, p, n, p).sum((2, 4)).reshape(b, -1)


@dataclass
class Outcome:
    case: Case
    rel: float = math.nan
    rel_tokens: float = math.nan
    rel_hf: float = math.nan
    conservation_lxt: float = math.nan  # ΣR / logit, worst sample
    conservation_ours: float = math.nan
    lxt_s: float = math.nan
    ours_s: float = math.nan
    hf_s: float = math.nan
    error: str = ""
    hf_error: str = ""
    tokens: tuple[list[float], list[float]] | None = None
    divergence: list[dict[str, Any]] = field(default_factory=list)
    first_diff: str = ""

    @property
    def verdict(self) -> str:
        if self.error or math.isnan(self.rel):
            return "ERROR"
        return "PASS" if self.rel <= TOLERANCE else "MISS"


def divergence(probes: list[dict[str, Any]], tol: float) -> tuple[str, list[dict[str, Any]]]:
    """The first module call in backward order whose relevance differs (> tol), the one before it, and the rows
    around both, in backward order."""
    backward = list(reversed(probes))
    first = next((i for i, row in enumerate(backward) if row["rel"] > tol), None)
    if first is None:
        return "", backward[:6]
    text = f"first difference (backward order) at `{backward[first]['module']}` (rel {backward[first]['rel']:.2e})"
    if first > 0:
        text += f"; still equal at `{backward[first - 1]['module']}` (rel {backward[first - 1]['rel']:.1e})"
    return text, backward[max(first - 4, 0) : first + 8]


def compare(
    case: Case, data: dict[str, Any], lxt: dict[str, Any] | None, ours: dict[str, Any] | None, errors: list[str]
) -> Outcome:
    out = Outcome(case, error="; ".join(errors))
    logit = data["logit"].double()

    def conservation(r: Tensor) -> float:
        sums = r.double().flatten(1).sum(1)
        return max(abs(s / v) if v != 0 else math.inf for s, v in zip(sums.tolist(), logit.tolist(), strict=True))

    if lxt is not None:
        out.lxt_s = lxt["seconds"]
        out.conservation_lxt = conservation(lxt["R"])
    if ours is not None:
        out.ours_s = ours.get("seconds", math.nan)
        out.hf_s = ours.get("hf_seconds", math.nan)
        out.error = out.error or ours.get("error", "")
        out.hf_error = ours.get("hf_error", "")
        if "R" in ours:
            out.conservation_ours = conservation(ours["R"])
    if lxt is None or ours is None or "R" not in ours:
        return out
    out.rel = relative_difference(ours["R"], lxt["R"])
    t_ours, t_lxt = token_sums(case, ours["R"]), token_sums(case, lxt["R"])
    out.rel_tokens = relative_difference(t_ours, t_lxt)
    out.tokens = (t_lxt[0, :12].tolist(), t_ours[0, :12].tolist())
    if "R_hf" in ours:
        out.rel_hf = relative_difference(ours["R_hf"], lxt["R"])
    if out.rel > TOLERANCE:
        rows = compare_probes(ours.get("probes", {}), lxt.get("probes", {}))
        out.first_diff, out.divergence = divergence(rows, TOLERANCE)
    return out


def run_case(case: Case, args: argparse.Namespace, workdir: Path) -> Outcome:
    data = prepare(case, getattr(torch, args.dtype), workdir / f"{slug(case.name)}.pt")
    results: dict[str, dict[str, Any] | None] = {}
    errors = []
    for side in ("lxt", "gradattr"):
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            side,
            case.name,
            str(workdir),
            "--dtype",
            args.dtype,
            "--attn",
            args.attn,
            "--threads",
            str(args.threads),
            "--repeats",
            str(args.repeats),
            "--epsilon",
            repr(args.epsilon),
        ]
        result, why = run_child(command, timeout=args.timeout)
        if result is None:
            errors.append(f"{side}: {why}")
            results[side] = None
        else:
            results[side] = torch.load(workdir / f"{slug(case.name)}.{side}.pt", weights_only=False)
    return compare(case, data, results["lxt"], results["gradattr"], errors)


def report(outcomes: list[Outcome], args: argparse.Namespace) -> list[str]:
    columns = [
        "case",
        "model",
        "LXT map / gradattr rules",
        "max rel. diff",
        "token sums rel.",
        "HF API rel.",
        "ΣR/logit LXT",
        "ΣR/logit gradattr",
        "LXT ms",
        "gradattr ms",
        "gradattr / LXT",
        "verdict",
    ]
    rows = []
    for o in outcomes:
        ratio = o.ours_s / o.lxt_s if o.lxt_s and not math.isnan(o.ours_s) else math.nan
        hf = fmt(o.rel_hf, ".1e") if not o.hf_error else "error"
        rows.append(
            [
                o.case.name,
                o.case.describe(),
                f"{o.case.lxt_map} / {o.case.rules or 'default'}",
                fmt(o.rel, ".1e"),
                fmt(o.rel_tokens, ".1e"),
                hf,
                fmt(o.conservation_lxt, ".4f"),
                fmt(o.conservation_ours, ".4f"),
                fmt(o.lxt_s * 1e3, ".1f"),
                fmt(o.ours_s * 1e3, ".1f"),
                fmt(ratio, ".2f"),
                o.verdict,
            ]
        )
    print()
    print_table(columns, rows)
    lines = header("gradattr eps-LRP vs LXT 2.1 efficient mode", ["torch", "transformers", "lxt", "torchvision"])
    lines += [
        f"`{' '.join(sys.argv)}`; {args.dtype}; gradattr epsilon={args.epsilon:g}; {args.attn} attention; "
        "random weights (init std 1/sqrt(d), norm weights perturbed). Times: the fastest of "
        f"{args.repeats} calls after a warm-up, {args.dtype}, {torch.get_num_threads()} threads, each side in its "
        "own process (tiny models: per-op overhead, not arithmetic, decides; bench_transformers.py times them at "
        f"scale). Target: max rel. diff ≤ {TOLERANCE:g}. max rel. diff = max|R_gradattr − R_LXT| / max|R_LXT| over "
        "the batch; ΣR/logit: the worst sample's relevance sum over its target logit (1 = conservative).",
        "",
    ]
    lines += [*markdown_table(columns, rows), ""]
    for o in outcomes:
        notes = []
        if o.error:
            notes.append(f"- error: `{o.error}`")
        if o.hf_error:
            notes.append(f"- HF API: `{o.hf_error}`")
        if o.tokens is not None:
            lxt_t, ours_t = o.tokens
            notes.append("- token sums, sample 0 (first 12): LXT " + ", ".join(f"{v:.4g}" for v in lxt_t))
            notes.append("  gradattr " + ", ".join(f"{v:.4g}" for v in ours_t))
        if o.first_diff:
            notes.append(f"- {o.first_diff}; module outputs around it, backward order:")
            notes += [
                "",
                *markdown_table(
                    ["module call", "rel. diff", "ΣR LXT", "ΣR gradattr", "shape"],
                    [
                        [
                            r["module"],
                            f"{r['rel']:.2e}",
                            f"{r['sum_theirs']:.6g}",
                            f"{r['sum_ours']:.6g}",
                            "x".join(map(str, r["shape"])),
                        ]
                        for r in o.divergence
                    ],
                ),
            ]
            print(f"\n{o.case.name}: {o.first_diff}")
            for r in o.divergence:
                print(
                    f"    {r['module']:45} rel {r['rel']:.2e}  ΣR LXT {r['sum_theirs']:.6g}  "
                    f"gradattr {r['sum_ours']:.6g}"
                )
        if notes:
            lines += [f"### {o.case.name}", "", *notes, ""]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of: {', '.join(CASES)}")
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    parser.add_argument("--epsilon", type=float, default=1e-10, help="gradattr's epsilon (LXT's is 1e-10)")
    parser.add_argument("--attn", default="eager", choices=["eager", "sdpa"], help="HF attn_implementation")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per side (the fastest is reported)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: robust on a shared machine)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per side and case")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="markdown results file")
    parser.add_argument("--child", nargs=3, metavar=("SIDE", "CASE", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    global ATTN
    ATTN = args.attn
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        child(args.child[0], args.child[1], Path(args.child[2]), args.dtype, args.repeats, args.epsilon)
        return
    names = [n for n in args.cases.split(",") if n]
    unknown = [n for n in names if n not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(CASES)}")
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="lxt-agreement-") as tmp:
        for name in names:
            start = time.perf_counter()
            outcome = run_case(CASES[name], args, Path(tmp))
            print(
                f"[{len(outcomes) + 1}/{len(names)}] {name}: {outcome.verdict} rel {fmt(outcome.rel, '.1e')} "
                f"({time.perf_counter() - start:.0f} s){'  ' + outcome.error if outcome.error else ''}",
                flush=True,
            )
            outcomes.append(outcome)
    lines = report(outcomes, args)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
