"""Token-by-token attribution of generated text: :func:`attribute_generation`.

A causal language model continues a prompt x_0..x_{P-1} with tokens x_P..x_{P+G-1}; generated token i (at
position t = P + i) was chosen from the logits at position t − 1, which depend on x_0..x_{t-1} only. Its row
of the attribution matrix explains S_i = logit_{t-1}(x_t) (or logit_{t-1}(x_t) − logit_{t-1}(a_i) for a
contrast token a_i) with any method of :data:`gradattr.METHODS` that attributes the inputs, taken at the token
embedding and summed over it (:func:`gradattr.token_attributions`):

    M[b, i, j] = Σ_d R_{b, j, d}  for j < t,      M[b, i, j] = NaN for j >= t

(‖R_{b, j, :}‖₂ instead of the sum for signed gradient maps, see :data:`SIGNED_GRADIENT_MAPS`).

Because the model is causal, the logits at position t − 1 of the *whole* sequence equal those of the prompt
truncated after x_{t-1}: every row is computed on the whole sequence, all rows of all samples stacked into
one batch of B·G rows, which the memory budget (:mod:`gradattr.memory`) splits into passes — the budget
decides how many generated positions share a forward and backward pass. Each row therefore equals
:func:`gradattr.attribute` on the truncated prompt with that token as target (tested to float64 rounding).
That the model is causal is checked on the result: the tokens at and after position t must get no
relevance for step i (they are NaN in ``matrix``), else the call raises.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from gradattr.engine import preserved_model
from gradattr.generation.decoding import Continuation, accepts, continuation, next_token_logits, sequence_kwargs
from gradattr.generation.occlusion import occlusion_rows, step_scores
from gradattr.generation.result import GenerationAttribution
from gradattr.memory import MemoryLimit, memory_budget
from gradattr.methods import LAYER_METHODS, METHODS, attribute
from gradattr.methods._model_call import OutputSelector
from gradattr.methods.integrated_gradients import CompletenessWarning
from gradattr.tokens import token_attributions

TARGETS = ("token", "contrast")
"""``target=`` of :func:`attribute_generation`: the generated token's logit, or its difference to a contrast
token's logit."""

GAP_METHODS = ("deeplift", "integrated_gradients", "shapley_sampling", "lrp")
"""Methods whose rows have a completeness (``lrp``: conservation) gap."""

AGGREGATES = ("sum", "norm")
"""How a token's embedding attributions become one number: their sum, or their Euclidean norm."""

SIGNED_GRADIENT_MAPS = ("guided_backprop", "deconvnet")
"""Methods whose maps are (modified) gradients with a sign, not contributions: their ``aggregate`` default is
``"norm"``. Summed over the embedding they vanish in a pre-LayerNorm transformer, where every path from the
embedding passes through a LayerNorm, whose input gradient has zero mean over the features."""
"""Methods whose rows have a completeness (``lrp``: conservation) gap."""

TOKENS_PER_CALL = 1024
"""Tokens (rows × sequence length) of one :func:`gradattr.attribute` call, at least one row: on CPU, passes of
many long rows run slower per row once their activations leave the caches (a 12-layer GPT-2 of width 768 on
160 tokens, 2 threads: see benchmarks/GENERATION.md), while a call's own cost (the baseline pass, the memory
probes) is small next to a row's."""

DEEPLIFT_GAP_WARNING = 1e-3
"""Relative completeness gap of a DeepLIFT row, |gap| / |S(x) − S(x̄)|, above which the call warns: float
rounding stays near 1e-6 in float32; more means the baseline drives normalisations to 0 (see
:func:`_warn_ill_conditioned`)."""

CAUSAL_TOLERANCE = 1e-5
"""Largest relevance, relative to the row's largest, a later token may get before the model is called not
causal (float32 rounding stays far below)."""


class _Contrast(nn.Module):
    """The model's next-token logits minus the contrast token's logit, at every position:
    L'[k, t, v] = L[k, t, v] − L[k, t, a_k], so that target v explains logit(v) − logit(a_k)."""

    def __init__(self, model: nn.Module, output: OutputSelector) -> None:
        super().__init__()
        self.model = model
        self.output = output

    def forward(self, ids: Tensor, contrast: Tensor, **kwargs: Any) -> Tensor:
        logits = next_token_logits(self.model, self.model(ids, **kwargs), self.output)
        return logits - logits.gather(-1, contrast.view(-1, 1, 1).expand(*logits.shape[:-1], 1))


def attribute_generation(
    model: nn.Module,
    input_ids: Tensor | Sequence[int],
    *,
    method: str = "epsilon_lrp",
    generated_ids: Tensor | Sequence[int] | None = None,
    max_new_tokens: int = 20,
    target: str = "token",
    contrast_ids: int | Tensor | Sequence[int] | None = None,
    attention_mask: Tensor | None = None,
    layer: str | nn.Module | None = None,
    baseline: Any = None,
    tokenizer: Any = None,
    eos_token_id: int | None = None,
    output: OutputSelector = None,
    max_memory: MemoryLimit = None,
    aggregate: str | None = None,
    **options: Any,
) -> GenerationAttribution:
    """Attribute every generated token of a causal language model to the tokens before it.

    Args:
        model: a HuggingFace causal LM, or any module mapping token ids (B, T) to next-token logits (B, T, V)
            (a tensor, or a ``ModelOutput``/dict with ``logits``; ``output=`` picks another). It must be causal.
        input_ids: the prompt, LongTensor(B, P) (or (P,) for one sample); left-pad a batch of prompts of
            different lengths and pass ``attention_mask``.
        method: one of :data:`gradattr.METHODS` that attributes inputs (not a class activation map).
        generated_ids: the continuation to explain, (B, G) or (G,); ``None``: greedy decoding of up to
            ``max_new_tokens`` tokens (HuggingFace models with ``generate``, which uses the key/value cache).
        max_new_tokens: most tokens generated when ``generated_ids`` is ``None``.
        target: ``"token"`` explains logit(x_t) of each generated token; ``"contrast"`` explains
            logit(x_t) − logit(a) with ``contrast_ids`` a ("he" rather than "she"): by linearity exactly the
            token's row minus the contrast token's row for the gradient and rule methods.
        contrast_ids: the alternative token a, an int for every step or (G,)/(B, G) ids.
        attention_mask: (B, P), 0 at padding of the prompt; default all ones.
        layer: the token embedding (name or module) whose output is attributed; default
            ``model.get_input_embeddings()``.
        baseline: the reference of the methods with one, in embedding space: a number, a (D,) embedding
            (e.g. the padding token's) or a tensor broadcastable to (T, D); default 0 (DeepLIFT warns when
            that leaves its rows ill-conditioned: the mean embedding, ``weight.mean(0)``, is better there).
            Occlusion sets a token's embedding to ``value`` (default 0) and Shapley sampling to the baseline,
            one token at a time.
        tokenizer: turns ids into ``tokens`` (anything with ``decode``); default: the ids as strings.
        eos_token_id: a sample stops after it; default ``model.config.eos_token_id`` when the model has one.
        output: which tensor of the model's output holds the logits, as in :func:`gradattr.attribute`.
        max_memory: the memory budget of the passes, as in :func:`gradattr.attribute`.
        aggregate: one number per token from its embedding's attributions: ``"sum"`` (keeps the sums of the
            methods: completeness) or ``"norm"`` (Euclidean norm, for gradient maps); default ``"norm"``
            for guided_backprop and deconvnet (:data:`SIGNED_GRADIENT_MAPS`), ``"sum"`` otherwise.
        **options: the method's options (``steps``, ``epsilon``, ``composite``, ...).

    Returns:
        :class:`GenerationAttribution` with ``matrix`` (B, G, P + G), ``tokens``, ``target_logits`` and
        ``completeness_gap`` (for deeplift, integrated_gradients, shapley_sampling and lrp).

    Example:
        >>> import torch, gradattr.generation as gen
        >>> from gradattr.models import text_decoder
        >>> model = text_decoder(50, embedding_dim=16, seed=0)
        >>> result = gen.attribute_generation(model, torch.tensor([[3, 7, 9]]), method="deeplift",
        ...                                   max_new_tokens=4)
        >>> result.matrix.shape
        torch.Size([1, 4, 7])
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if method not in METHODS or method in LAYER_METHODS:
        usable = ", ".join(m for m in METHODS if m not in LAYER_METHODS)
        raise ValueError(f"method {method!r} cannot explain generated tokens; choose one of {usable}")
    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
    if aggregate is not None and aggregate not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {', '.join(AGGREGATES)} or None, got {aggregate!r}")
    if aggregate is None:
        aggregate = "norm" if method in SIGNED_GRADIENT_MAPS else "sum"
    if aggregate == "norm" and method in ("occlusion", "shapley_sampling"):
        raise ValueError(f"{method} removes whole tokens: one number per token already; aggregate='norm' is for maps")
    if (target == "contrast") != (contrast_ids is not None):
        raise ValueError("target='contrast' needs contrast_ids= (the alternative token), and contrast_ids needs it")
    prompt = _ids("input_ids", input_ids)
    mask = _mask(attention_mask, prompt)
    given = None if generated_ids is None else _ids("generated_ids", generated_ids, prompt.shape[0])
    if given is None and (type(max_new_tokens) is not int or max_new_tokens < 1):
        raise ValueError(f"max_new_tokens must be a positive int, got {max_new_tokens!r}")
    eos = _eos(model, eos_token_id)
    if not bool(mask.all()) and not accepts(model, "attention_mask"):
        raise ValueError(
            f"attention_mask has padding, but {type(model).__name__}.forward takes no attention_mask: pass prompts of "
            "one length (one call per length) or a model that masks padding"
        )
    embedding = _embedding(model, layer)
    with preserved_model(model) as view:
        sequence = continuation(view, prompt, mask, given, max_new_tokens, eos, output)
    contrast = None if contrast_ids is None else _contrast(contrast_ids, sequence.generated.shape)
    with memory_budget(max_memory):
        rows = _rows(
            model, sequence, prompt.shape[1], contrast, embedding, method, baseline, output, aggregate, options
        )
    return GenerationAttribution(
        matrix=rows.matrix,
        ids=sequence.ids,
        attention_mask=sequence.attention_mask,
        prompt_length=prompt.shape[1],
        tokens=_tokens(sequence.ids, tokenizer),
        target_ids=sequence.ids[:, prompt.shape[1] :],
        contrast_ids=contrast,
        contrast_tokens=None if contrast is None else _tokens(contrast, tokenizer),
        target_logits=_scores(model, sequence, prompt.shape[1], contrast, output),
        completeness_gap=rows.gap,
        method=method,
    )


class _Rows(NamedTuple):
    """The matrix (B, G, P + G) and the gap (B, G) or ``None`` of one call."""

    matrix: Tensor
    gap: Tensor | None


def _rows(
    model: nn.Module,
    sequence: Continuation,
    prompt_length: int,
    contrast: Tensor | None,
    embedding: nn.Module,
    method: str,
    baseline: Any,
    output: OutputSelector,
    aggregate: str,
    options: dict[str, Any],
) -> _Rows:
    """:func:`gradattr.attribute` over the B·G (sample, step) rows, each the whole sequence with its step's
    position and token as target, :data:`TOKENS_PER_CALL` tokens of rows per call."""
    samples, steps = sequence.generated.shape
    sample, step = sequence.generated.nonzero(as_tuple=True)
    length = sequence.ids.shape[1]
    matrix = torch.full((samples, steps, length), float("nan"))
    gap = torch.full((samples, steps), float("nan")) if method in GAP_METHODS else None
    if sample.numel() == 0:
        return _Rows(matrix, gap)
    if method == "occlusion" and baseline is None and set(options) <= {"value", "batch_size"}:  # shared passes
        drops = occlusion_rows(
            model, sequence, prompt_length, contrast, embedding, output, options.get("value", 0.0),
            options.get("batch_size"),
        )  # fmt: skip
        per_token = drops[sample, step].masked_fill(sequence.attention_mask[sample] == 0, 0.0)
        return _Rows(_placed(matrix, per_token, sample, step, prompt_length, method), gap)
    scorer: nn.Module = model if contrast is None else _Contrast(model, output)
    options = _token_options(method, embedding, length, options)
    for rows in torch.arange(sample.numel()).split(max(1, TOKENS_PER_CALL // length)):
        b, i = sample[rows], step[rows]
        mask = sequence.attention_mask[b]
        kwargs: dict[str, Any] = sequence_kwargs(model, mask)
        if contrast is not None:
            kwargs["contrast"] = contrast[b, i]
        result = attribute(
            scorer, sequence.ids[b], method, target=sequence.ids[b, prompt_length + i], baseline=baseline,
            layer=embedding, forward_kwargs=kwargs, output=None if contrast is not None else output,
            position=prompt_length + i - 1, return_gap=gap is not None, **options,
        )  # fmt: skip
        attributions, row_gap = result if gap is not None else (result, None)
        summed = attributions if aggregate == "sum" else attributions.norm(dim=-1, keepdim=True)
        per_token = token_attributions(summed, mask).detach()
        matrix = _placed(matrix, per_token, b, i, prompt_length, method)
        if gap is not None and row_gap is not None:
            gap = gap.to(row_gap)
            gap[b, i] = row_gap.detach()
    if method == "deeplift" and gap is not None:
        _warn_ill_conditioned(gap[sample, step], matrix[sample, step].nan_to_num().sum(1) - gap[sample, step])
    return _Rows(matrix, gap)


def _warn_ill_conditioned(gap: Tensor, delta: Tensor) -> None:
    """DeepLIFT is exact, so a large gap is rounding made large. A zero embedding baseline puts the input of
    every normalisation to 0 in the baseline pass (RMS 0: statistic 1/√ε ≈ 1000), so each normalisation's
    Shapley split is a difference of terms ~1/√ε larger than the result; in float32 (RMS norms and softmax
    run in float32 in most HF decoders) that loses 3 digits per normalisation (Gemma-2, with four per
    block: all of them)."""
    relative = gap.abs() / delta.abs().clamp_min(torch.finfo(delta.dtype).tiny)
    worst = float(relative.max())
    if worst > DEEPLIFT_GAP_WARNING:
        warnings.warn(
            f"DeepLIFT's completeness gap reaches {worst:.2g} of S(x) − S(x̄) (see .completeness_gap): the rows are "
            "ill-conditioned, as when a zero baseline puts a normalisation's input at 0; a baseline away from 0, "
            "e.g. the mean token embedding (baseline=model.get_input_embeddings().weight.mean(0)), is better "
            "conditioned",
            CompletenessWarning,
            stacklevel=4,
        )


def _placed(matrix: Tensor, per_token: Tensor, sample: Tensor, step: Tensor, prompt_length: int, method: str) -> Tensor:
    """``matrix`` with the rows ``per_token`` (K, L) at (sample, step), checked to be causal, NaN at and after
    each step's position."""
    later = _at_or_after(prompt_length + step, per_token.shape[1], per_token.device)
    _check_causal(per_token, later, prompt_length + step, method)
    matrix = matrix.to(per_token)
    matrix[sample, step] = per_token.masked_fill(later, float("nan"))
    return matrix


def _token_options(method: str, embedding: nn.Module, length: int, options: dict[str, Any]) -> dict[str, Any]:
    """Occlusion and Shapley sampling remove whole tokens: a (1, D) window, one feature group per token."""
    if method not in ("occlusion", "shapley_sampling"):
        return options
    width = getattr(embedding, "embedding_dim", None)
    if method == "occlusion" and "window" not in options:
        if width is None:
            raise ValueError("occlusion of tokens needs window=(1, D) (D: the embedding's width)")
        return {**options, "window": (1, width)}
    if method == "shapley_sampling" and "feature_groups" not in options:
        if width is None:
            raise ValueError("Shapley sampling of tokens needs feature_groups= (one group id per token, (T, D))")
        return {**options, "feature_groups": torch.arange(length)[:, None].expand(length, width)}
    return options


def _at_or_after(step_position: Tensor, length: int, device: torch.device) -> Tensor:
    """BoolTensor(K, length): True at the positions j >= each row's step position."""
    return torch.arange(length, device=device)[None, :] >= step_position[:, None].to(device)


def _check_causal(per_token: Tensor, later: Tensor, step_position: Tensor, method: str) -> None:
    """Tokens at and after each step's position must get no relevance: the model would not be causal."""
    length = per_token.shape[1]
    largest = per_token.abs().amax(dim=1, keepdim=True).clamp_min(torch.finfo(per_token.dtype).tiny)
    leak = (per_token.abs() / largest).masked_fill(~later, 0)
    if bool((leak > CAUSAL_TOLERANCE).any()):
        row, column = divmod(int(leak.argmax()), length)
        raise ValueError(
            f"the model is not causal: with method {method}, the token at position {column} got "
            f"{float(leak.flatten()[leak.argmax()]):.2g} of the largest relevance for the token generated at "
            f"position {int(step_position[row])}, which it follows; attribute_generation explains causal language "
            "models (the logits at position t depend on tokens 0..t only)"
        )


def _scores(
    model: nn.Module, sequence: Continuation, prompt_length: int, contrast: Tensor | None, output: OutputSelector
) -> Tensor:
    """S_i of every step from one forward pass over the whole sequence (NaN past EOS)."""
    with preserved_model(model, warn=False) as view, torch.no_grad():
        logits = next_token_logits(view, view(sequence.ids, **sequence_kwargs(view, sequence.attention_mask)), output)
    score = step_scores(logits, sequence.ids, prompt_length, contrast)
    return score.masked_fill(~sequence.generated.to(score.device), float("nan"))


def _ids(name: str, ids: Tensor | Sequence[int], samples: int | None = None) -> Tensor:
    """LongTensor(B, T) of token ids."""
    value = ids if isinstance(ids, Tensor) else torch.as_tensor(ids)
    if value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer token ids, got dtype {value.dtype}")
    if value.dim() == 1:
        value = value[None]
    if value.dim() != 2 or value.shape[1] == 0:
        raise ValueError(f"{name} must have shape (B, T) or (T,) with T >= 1, got {tuple(value.shape)}")
    if samples is not None and value.shape[0] not in (1, samples):
        raise ValueError(f"{name} has {value.shape[0]} rows; the prompt has {samples} samples")
    return value.long() if samples is None else value.long().expand(samples, -1)


def _mask(attention_mask: Tensor | None, prompt: Tensor) -> Tensor:
    if attention_mask is None:
        return torch.ones_like(prompt)
    mask = torch.as_tensor(attention_mask, device=prompt.device)
    if mask.dim() == 1:
        mask = mask[None]
    if mask.shape != prompt.shape:
        raise ValueError(f"attention_mask has shape {tuple(mask.shape)}; input_ids have {tuple(prompt.shape)}")
    if not bool(mask[:, -1].all()):
        raise ValueError(
            "attention_mask has padding at the end of a prompt: pad on the left (tokenizer.padding_side = 'left'), "
            "so that every sample continues right after its last token"
        )
    return mask.long()


def _eos(model: nn.Module, eos_token_id: int | None) -> int | None:
    if eos_token_id is not None:
        return int(eos_token_id)
    configured = getattr(getattr(model, "config", None), "eos_token_id", None)
    return configured if isinstance(configured, int) else None


def _embedding(model: nn.Module, layer: str | nn.Module | None) -> nn.Module:
    if isinstance(layer, nn.Module):
        return layer
    if isinstance(layer, str):
        try:
            return model.get_submodule(layer)
        except AttributeError:
            raise ValueError(f"layer {layer!r} is not a submodule of {type(model).__name__}") from None
    getter = getattr(model, "get_input_embeddings", None)
    found = getter() if callable(getter) else None
    if not isinstance(found, nn.Module):
        raise ValueError(
            f"{type(model).__name__} has no get_input_embeddings(); pass layer= (the token embedding's name)"
        )
    return found


def _contrast(contrast_ids: int | Tensor | Sequence[int], shape: torch.Size) -> Tensor:
    """LongTensor(B, G) of contrast tokens."""
    value = torch.as_tensor(contrast_ids)
    if value.is_floating_point() or value.dtype == torch.bool:
        raise TypeError(f"contrast_ids must hold integer token ids, got dtype {value.dtype}")
    try:
        return value.long().expand(shape) if value.dim() < 2 else value.long().expand(shape).clone()
    except RuntimeError:
        raise ValueError(
            f"contrast_ids has shape {tuple(value.shape)}; expected an int, (G,) or (B, G) = {tuple(shape)}"
        ) from None


def _tokens(ids: Tensor, tokenizer: Any) -> list[list[str]]:
    """Each id as its string: ``tokenizer.decode([id])`` with special tokens kept (a HuggingFace tokenizer or a
    ``tokenizers.Tokenizer``, which would drop them by default), else the id itself."""
    if tokenizer is None:
        return [[str(int(i)) for i in row] for row in ids]

    def decode(i: int) -> str:
        try:
            return tokenizer.decode([i], skip_special_tokens=False)
        except TypeError:  # a decode without that keyword
            return tokenizer.decode([i])

    return [[decode(int(i)) for i in row] for row in ids]
