"""HuggingFace models as users call them: ModelOutput, attention masks with padding, token attribution through
the embedding, next-token logits of causal LMs, eager and SDPA attention (tests/hf_zoo.py, random weights).

Every number is checked against a direct torch computation: saliency against ``torch.autograd.grad`` of the
selected logit, occlusion against the output drops computed by hand, integrated gradients against the same
Riemann sum written out and against completeness, Σ R = S_c(x) - S_c(x̄) up to the Riemann error.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from torch import Tensor

import gradattr
from hf_zoo import CAUSAL_LMS, LABELS, VOCAB, HFCase, hf_model, hf_models, last_token

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

CASES = hf_models()
STEPS = 32


@pytest.fixture(scope="module", params=CASES, ids=[c.name for c in CASES])
def case(request: pytest.FixtureRequest) -> HFCase:
    """The model in float64 (so that the comparisons see the methods, not float32 rounding)."""
    c = request.param
    model = c.model.double()
    inputs = c.inputs.double() if c.inputs.is_floating_point() else c.inputs
    return HFCase(c.name, model, inputs, c.forward_kwargs, c.embedding)


def _is_lm(case: HFCase) -> bool:
    return case.name.rsplit("-", 1)[0] in CAUSAL_LMS


def _target(case: HFCase) -> Tensor:
    """Fixed classes (token ids for the language models), one per sample."""
    return torch.tensor([7, 42]) if _is_lm(case) else torch.tensor([0, LABELS - 1])


def _score(case: HFCase, logits: Tensor, rows: int) -> Tensor:
    """S_c per row: the target logit, at each sample's last real token for a language model."""
    copies = rows // len(_target(case))
    target, index = _target(case).repeat(copies), torch.arange(rows)
    return logits[index, last_token(case).repeat(copies), target] if logits.dim() == 3 else logits[index, target]


@contextmanager
def _embedding_replaced(case: HFCase, value: Tensor) -> Iterator[None]:
    """The token embedding returns ``value`` (an independent forward hook, for the reference computations)."""
    module = case.model.get_submodule(case.embedding)
    handle = module.register_forward_hook(lambda m, args, out: value)
    try:
        yield
    finally:
        handle.remove()


def _embedded(case: HFCase) -> Tensor:
    with torch.no_grad():
        return case.model.get_submodule(case.embedding)(case.inputs)


def _reference_score(case: HFCase, point: Tensor, repeat: int = 1) -> Tensor:
    """S_c at ``repeat`` stacked copies of the batch, with the attributed tensor (pixels or embedding) = point."""
    kwargs = {k: v.repeat(repeat, 1) for k, v in case.forward_kwargs.items()}
    if case.embedding is None:
        return _score(case, case.model(point, **kwargs).logits, point.shape[0])
    ids = case.inputs.repeat(repeat, 1)
    with _embedding_replaced(case, point):
        return _score(case, case.model(ids, **kwargs).logits, ids.shape[0])


def _attribute(case: HFCase, method: str, **options: object) -> Tensor:
    position = last_token(case) if _is_lm(case) else None
    return gradattr.attribute(
        case.model, case.inputs, method, target=_target(case), layer=case.embedding,
        forward_kwargs=case.forward_kwargs, position=position, **options,
    )  # fmt: skip


def _point(case: HFCase) -> Tensor:
    return case.inputs if case.embedding is None else _embedded(case)


def _gradient(case: HFCase, point: Tensor) -> Tensor:
    leaf = point.detach().clone().requires_grad_()
    (gradient,) = torch.autograd.grad(_reference_score(case, leaf).sum(), leaf)
    return gradient


def test_saliency_and_gradient_x_input_equal_autograd(case: HFCase) -> None:
    x = _point(case)
    gradient = _gradient(case, x)
    assert gradient.abs().max() > 0
    torch.testing.assert_close(_attribute(case, "saliency", abs=False), gradient, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(_attribute(case, "gradient_x_input"), gradient * x, rtol=1e-9, atol=1e-12)


def test_padding_gets_no_attribution(case: HFCase) -> None:
    """The mask reaches the model in every pass: padding tokens do not influence the explained logit (their
    gradient is 0 up to rounding), and token_attributions sets them to exactly 0."""
    if case.embedding is None:
        pytest.skip("vision model: no padding")
    mask = case.forward_kwargs["attention_mask"]
    saliency = _attribute(case, "saliency")
    per_token = gradattr.token_attributions(saliency, mask)
    assert per_token.shape == mask.shape
    assert bool((per_token[mask == 0] == 0).all()) and bool((per_token[mask == 1] > 0).all())
    torch.testing.assert_close(per_token[mask == 1], saliency.sum(-1)[mask == 1], rtol=0, atol=0)
    assert saliency.sum(-1)[mask == 0].abs().max() <= 1e-12 * saliency.abs().max()


def test_integrated_gradients_riemann_sum_and_completeness(case: HFCase) -> None:
    """IG equals its Riemann sum written out, and Σ R approaches S_c(x) - S_c(x̄) as 1/m (the Riemann error).
    The baseline is the embedding of token 1 at every position (pixels: 0.5): a zero embedding (also the
    padding token's, in Gemma) puts the path's start on the singular point of RMS norms, where a Riemann sum
    does not converge in hundreds of steps."""
    x = _point(case)
    if case.embedding is None:
        baseline = torch.full_like(x[:1], 0.5)
    else:
        baseline = case.model.get_submodule(case.embedding)(torch.ones_like(case.inputs[:1])).detach()
    r = _attribute(case, "integrated_gradients", steps=STEPS, baseline=baseline)
    alphas = torch.arange(1, STEPS + 1, dtype=x.dtype) / STEPS
    path = (baseline + alphas.view(-1, *[1] * x.dim()) * (x - baseline)).reshape(-1, *x.shape[1:])
    gradients = _gradient_stacked(case, path, STEPS).view(STEPS, *x.shape).mean(0)
    torch.testing.assert_close(r, (x - baseline) * gradients, rtol=1e-8, atol=1e-12)
    with torch.no_grad():
        delta = _reference_score(case, x) - _reference_score(case, baseline.expand_as(x))
    gap = r.reshape(len(x), -1).sum(1) - delta
    finer = _attribute(case, "integrated_gradients", steps=4 * STEPS, baseline=baseline)
    finer_gap = finer.reshape(len(x), -1).sum(1) - delta
    scale = r.reshape(len(x), -1).abs().sum(1)  # Σ|R|: a small Δ can be the sum of large opposite parts
    assert (gap.abs() <= 0.05 * scale).all(), (gap, scale)
    assert (finer_gap.abs() <= 0.8 * gap.abs() + 1e-10).all(), (finer_gap, gap)  # shrinks with m: Riemann error


def _gradient_stacked(case: HFCase, points: Tensor, repeat: int) -> Tensor:
    leaf = points.detach().clone().requires_grad_()
    (gradient,) = torch.autograd.grad(_reference_score(case, leaf, repeat).sum(), leaf)
    return gradient


def test_occlusion_equals_drops_by_hand(case: HFCase) -> None:
    x = _point(case)
    with torch.no_grad():
        reference = _reference_score(case, x)
        if case.embedding is not None:  # each token's embedding set to 0: drop per token
            r = gradattr.token_attributions(_attribute(case, "occlusion", window=(1, x.shape[-1])))
            expected = torch.empty(x.shape[:2], dtype=x.dtype)
            for t in range(x.shape[1]):
                occluded = x.clone()
                occluded[:, t] = 0
                expected[:, t] = reference - _reference_score(case, occluded)
        else:  # 4x4 patches over all channels, spread evenly over their 48 pixels
            window = (x.shape[1], 4, 4)
            r = _attribute(case, "occlusion", window=window, stride=window)
            expected = torch.empty_like(x)
            for i in range(0, x.shape[2], 4):
                for j in range(0, x.shape[3], 4):
                    occluded = x.clone()
                    occluded[:, :, i : i + 4, j : j + 4] = 0
                    drop = reference - _reference_score(case, occluded)
                    expected[:, :, i : i + 4, j : j + 4] = (drop / 48).view(-1, 1, 1, 1)
    assert expected.abs().max() > 0
    torch.testing.assert_close(r, expected, rtol=1e-9, atol=1e-12)


# -- output=, position= and per-sample forward_kwargs on real HF classes, beyond the zoo's defaults -----------


def test_gpt2_position_per_sample_with_right_padding() -> None:
    """Right-padded GPT-2: each sample's last real token is explained with position=LongTensor(B); the
    argmax target at those positions; out-of-range positions."""
    case = hf_model("gpt2", "sdpa")
    model, ids, mask, last = case.model.double(), case.inputs, case.forward_kwargs["attention_mask"], last_token(case)
    target = torch.tensor([3, 9])
    embedding = model.transformer.wte
    with torch.no_grad():
        leaf = embedding(ids).requires_grad_()
    handle = embedding.register_forward_hook(lambda m, a, o: leaf)
    try:
        logits = model(ids, attention_mask=mask).logits
    finally:
        handle.remove()
    (expected,) = torch.autograd.grad(logits[torch.arange(2), last, target].sum(), leaf)
    r = gradattr.attribute(
        model, ids, "saliency", target=target, layer="transformer.wte", forward_kwargs={"attention_mask": mask},
        position=last, abs=False,
    )  # fmt: skip
    torch.testing.assert_close(r, expected, rtol=1e-9, atol=1e-12)
    argmax = gradattr.attribute(
        model, ids, "saliency", layer="transformer.wte", forward_kwargs={"attention_mask": mask}, position=last
    )
    chosen = logits.detach()[torch.arange(2), last].argmax(1)
    explicit = gradattr.attribute(
        model, ids, "saliency", target=chosen, layer="transformer.wte", forward_kwargs={"attention_mask": mask},
        position=last,
    )  # fmt: skip
    torch.testing.assert_close(argmax, explicit, rtol=0, atol=0)
    with pytest.raises(IndexError, match=r"position 6 is out of range.*6 sequence position\(s\) \(valid: -6..5\)"):
        gradattr.attribute(model, ids, "saliency", layer="transformer.wte", position=6)
    with pytest.raises(ValueError, match=r"position has shape \(3,\); expected one position per sample \(2,\)"):
        gradattr.attribute(model, ids, "saliency", layer="transformer.wte", position=[1, 2, 3])


def test_output_picks_the_tensor_of_a_model_output() -> None:
    """BertModel returns last_hidden_state and pooler_output: output= picks one by name, index or callable."""
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64
    )
    torch.manual_seed(0)
    model = transformers.BertModel(config).eval().double()
    ids, mask = torch.randint(1, VOCAB, (2, 5)), torch.ones(2, 5, dtype=torch.long)
    with torch.no_grad():
        leaf = model.embeddings.word_embeddings(ids).requires_grad_()
    handle = model.embeddings.word_embeddings.register_forward_hook(lambda m, a, o: leaf)
    try:
        pooled = model(ids, attention_mask=mask).pooler_output[:, 3].sum()
    finally:
        handle.remove()
    (expected,) = torch.autograd.grad(pooled, leaf)
    common = {"target": 3, "layer": "embeddings.word_embeddings", "forward_kwargs": {"attention_mask": mask}}
    by_name = gradattr.attribute(model, ids, "saliency", output="pooler_output", abs=False, **common)
    by_index = gradattr.attribute(model, ids, "saliency", output=1, abs=False, **common)
    by_callable = gradattr.attribute(model, ids, "saliency", output=lambda out: out.pooler_output, abs=False, **common)
    for r in (by_name, by_index, by_callable):
        torch.testing.assert_close(r, expected, rtol=1e-9, atol=1e-12)
    with pytest.raises(KeyError, match="BertModel's output has no 'logits'; it has last_hidden_state, pooler_output"):
        gradattr.attribute(model, ids, "saliency", output="logits", **common)
    # default: no .logits, so the first element, last_hidden_state (B, T, H), read at position -1
    default = gradattr.attribute(model, ids, "saliency", abs=False, **common)
    handle = model.embeddings.word_embeddings.register_forward_hook(lambda m, a, o: leaf)
    try:
        hidden = model(ids, attention_mask=mask).last_hidden_state[:, -1, 3].sum()
    finally:
        handle.remove()
    (expected,) = torch.autograd.grad(hidden, leaf)
    torch.testing.assert_close(default, expected, rtol=1e-9, atol=1e-12)


def test_vit_with_output_and_bad_forward_kwargs() -> None:
    case = hf_model("vit", "eager")
    model, x = case.model, case.inputs
    r = gradattr.attribute(model, x, "saliency", target=1, output="logits", abs=False)
    leaf = x.clone().requires_grad_()
    (expected,) = torch.autograd.grad(model(leaf).logits[:, 1].sum(), leaf)
    torch.testing.assert_close(r, expected)
    bert = hf_model("bert", "eager")
    mask = bert.forward_kwargs["attention_mask"]
    with pytest.raises(ValueError, match=r"forward_kwargs\['attention_mask'\] has batch size 3, the inputs have 2"):
        gradattr.attribute(bert.model, bert.inputs, "saliency", layer=bert.embedding,
                           forward_kwargs={"attention_mask": torch.cat([mask, mask[:1]])})  # fmt: skip


def test_shared_mask_row_and_memory_splits_on_bert() -> None:
    """A one-row attention mask is shared by the batch; a budget that splits IG's rows into many passes gives
    the same numbers (each pass slices the mask with its rows)."""
    case = hf_model("bert", "sdpa")
    mask = case.forward_kwargs["attention_mask"]
    common = {"target": 1, "layer": case.embedding, "steps": 8}
    whole = gradattr.attribute(case.model, case.inputs, "integrated_gradients", forward_kwargs={"attention_mask": mask},
                               **common)  # fmt: skip
    split = gradattr.attribute(case.model, case.inputs, "integrated_gradients", forward_kwargs={"attention_mask": mask},
                               max_memory=20_000, **common)  # fmt: skip
    torch.testing.assert_close(split, whole, rtol=1e-5, atol=1e-7)
    ones = {"attention_mask": torch.ones(1, case.inputs.shape[1])}
    shared = gradattr.attribute(case.model, case.inputs, "integrated_gradients", forward_kwargs=ones, **common)
    unmasked = gradattr.attribute(case.model, case.inputs, "integrated_gradients", **common)
    torch.testing.assert_close(shared, unmasked, rtol=1e-6, atol=1e-8)
    assert (whole - unmasked).abs().max() > 1e-3 * whole.abs().max()  # the padding mask matters
