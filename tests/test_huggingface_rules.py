"""DeepLIFT and eps-LRP (AttnLRP) on HuggingFace models as users call them (tiny configs, random weights):
DeepLIFT's completeness holds to float precision, both attention implementations ("eager" and "sdpa") give
the same maps, and nothing is refused — no ``strict=False`` anywhere.

"Float precision" is the model's: HF computes eager softmax and Llama/Qwen2/Gemma RMS norms in float32 even
in a float64 model (``softmax(..., dtype=torch.float32)``, ``hidden_states.to(torch.float32)``), so maps and
sums agree to float32 rounding there (1e-5 relative), to 1e-9 elsewhere."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from torch import Tensor, nn

import gradattr
from hf_zoo import CAUSAL_LMS, NAMES, HFCase, hf_model, last_token

F64 = torch.float64
TARGET = 1


@contextmanager
def replaced(module: nn.Module, value: Tensor) -> Iterator[None]:
    handle = module.register_forward_hook(lambda *_: value)
    try:
        yield
    finally:
        handle.remove()


def baseline_of(case: HFCase) -> Tensor:
    """A random reference for the attributed tensor (the token embeddings' output, or the pixels), one row."""
    generator = torch.Generator().manual_seed(3)
    if case.embedding is None:
        return 0.5 * torch.randn((1, *case.inputs.shape[1:]), generator=generator, dtype=F64)
    width = dict(case.model.named_modules())[case.embedding].weight.shape[1]
    return 0.02 * torch.randn((1, case.inputs.shape[1], width), generator=generator, dtype=F64)


def explain(case: HFCase, method: str) -> tuple[Tensor, dict]:
    model = case.model.to(F64)
    extra: dict = {"forward_kwargs": case.forward_kwargs}
    if method == "deeplift":
        extra["baseline"] = baseline_of(case)
    if case.embedding is not None:
        extra["layer"] = case.embedding
    if case.name.split("-")[0] in CAUSAL_LMS:
        extra["position"] = last_token(case)
    inputs = case.inputs if case.embedding is not None else case.inputs.to(F64)
    return gradattr.attribute(model, inputs, method=method, target=TARGET, **extra), extra


def score(case: HFCase, at_baseline: bool) -> Tensor:
    """S_c at the inputs, or at the baseline of the attributed tensor (the embedding's output)."""
    model = case.model
    inputs = case.inputs if case.embedding is not None else case.inputs.to(F64)
    baseline = baseline_of(case)
    with torch.no_grad():
        if at_baseline and case.embedding is not None:
            embedding = dict(model.named_modules())[case.embedding]
            with replaced(embedding, baseline.expand(*case.inputs.shape, -1)):
                logits = model(inputs, **case.forward_kwargs).logits
        else:
            rows = baseline.expand_as(inputs) if at_baseline else inputs
            logits = model(rows, **case.forward_kwargs).logits
    if logits.dim() == 3:
        logits = logits[torch.arange(logits.shape[0]), last_token(case)]
    return logits[:, TARGET]


FLOAT32_INSIDE = ("llama", "qwen2", "gemma")
"""Families whose norms compute in float32 whatever the model's dtype."""


def tolerance(case: HFCase) -> float:
    return 1e-5 if case.name.split("-")[0] in FLOAT32_INSIDE else 1e-6


def assert_same_map(eager: Tensor, sdpa: Tensor, name: str) -> None:
    """Eager and SDPA attention give one map (eager's softmax runs in float32: agreement to its rounding)."""
    scale = float(eager.abs().max())
    assert float((eager - sdpa).abs().max()) <= 1e-5 * scale, name


@pytest.mark.parametrize("name", NAMES)
def test_deeplift_is_complete_and_attention_implementations_agree(name: str) -> None:
    maps = {}
    for attention in ("eager", "sdpa"):
        case = hf_model(name, attention)
        r, _ = explain(case, "deeplift")
        delta = score(case, False) - score(case, True)
        total = r.flatten(1).sum(1)
        assert float(((total - delta).abs() / delta.abs().clamp_min(1e-9)).max()) < tolerance(case), attention
        maps[attention] = r
    assert_same_map(maps["eager"], maps["sdpa"], name)


@pytest.mark.parametrize("name", NAMES)
def test_attnlrp_runs_is_finite_and_is_not_gradient_x_input(name: str) -> None:
    maps = {}
    for attention in ("eager", "sdpa"):
        case = hf_model(name, attention)
        lrp, _ = explain(case, "epsilon_lrp")
        assert torch.isfinite(lrp).all()
        maps[attention] = lrp
        plain, _ = explain(case, "gradient_x_input")
        assert (lrp - plain).abs().max() > 1e-6 * plain.abs().max()
    assert_same_map(maps["eager"], maps["sdpa"], name)


def test_token_relevance_of_padding_is_zero() -> None:
    case = hf_model("bert")
    r, _ = explain(case, "epsilon_lrp")
    tokens = gradattr.token_attributions(r, case.forward_kwargs["attention_mask"])
    assert torch.equal(tokens[1, -2:], torch.zeros(2, dtype=tokens.dtype))
    assert tokens[0].abs().min() > 0
