"""Ops evaluated as an equivalent computation of simpler ops, each of which the engine dispatches again.

A fused kernel hides its inner steps from the op-level engine; evaluated step by step (while the engine's
mode is active), each step gets its own rule, so rules reach the inside of attention and normalisation
(SPEC "Modern ops"; the same idea as the unrolled recurrent kernels). Every expander computes exactly what
the fused op computes, from the call's own arguments; nothing is read from or written to the user's modules.

* norms (:data:`NORMS`): ``y = (x − μ) · rsqrt(mean((x − μ)²) + ε)`` then the affine weights — layer norm,
  RMS norm (no centring), group norm (per group), instance norm (per channel) — taken apart so that the rule
  set's normalisation rule applies in one step (:mod:`gradattr.rules.normalisation`);
* ``var``/``std``/vector norms/``logsumexp``: the same pieces;
* attention: ``softmax(q kᵀ · scale + mask) v`` with products, softmax and masks dispatched (causal and
  boolean masks, dropout as the call asks, grouped-query heads); the fused ``torch._native_multi_head_attention``
  as its projections and that attention;
* ``glu(x) = a ⊙ σ(b)``, ``maximum(a, b) = a + relu(b − a)``;
* max pooling and ``max``/``amax`` over a dimension (used with ``max_pooling="exact"``): a tree of
  ``max(a, b) = a + relu(b − a)``, so each comparison is a ReLU with the method's rule (exact for DeepLIFT).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from gradattr.rules.normalisation import Norm

Expander = Callable[..., Any]


def _bind(names: Sequence[str], defaults: dict[str, Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict:
    bound = dict(defaults)
    bound.update(zip(names, args, strict=False))
    bound.update(kwargs)
    return bound


@dataclass(frozen=True)
class NormCall:
    """A norm op's call taken apart: ``x`` shaped so that ``norm.dims`` are the normalised dimensions, the
    :class:`~gradattr.rules.normalisation.Norm`, and ``finish`` (reshape back, affine weights)."""

    x: Tensor
    norm: Norm
    finish: Callable[[Tensor], Tensor]


def _affine(weight: Tensor | None, bias: Tensor | None, shape: tuple[int, ...] | None = None) -> Callable:
    def finish(y: Tensor) -> Tensor:
        if weight is not None:
            y = y * (weight if shape is None else weight.reshape(shape))
        if bias is not None:
            y = y + (bias if shape is None else bias.reshape(shape))
        return y

    return finish


def layer_norm(*args: Any, **kwargs: Any) -> NormCall:
    call = _bind(("input", "normalized_shape", "weight", "bias", "eps"), {"weight": None, "bias": None, "eps": 1e-5},
                 args, kwargs)  # fmt: skip
    dims = tuple(range(-len(tuple(call["normalized_shape"])), 0))
    return NormCall(call["input"], Norm(dims, call["eps"]), _affine(call["weight"], call["bias"]))


def rms_norm(*args: Any, **kwargs: Any) -> NormCall:
    call = _bind(("input", "normalized_shape", "weight", "eps"), {"weight": None, "eps": None}, args, kwargs)
    x = call["input"]
    eps = torch.finfo(x.dtype).eps if call["eps"] is None else call["eps"]
    dims = tuple(range(-len(tuple(call["normalized_shape"])), 0))
    return NormCall(x, Norm(dims, eps, centre=False), _affine(call["weight"], None))


def group_norm(*args: Any, **kwargs: Any) -> NormCall:
    call = _bind(("input", "num_groups", "weight", "bias", "eps"), {"weight": None, "bias": None, "eps": 1e-5},
                 args, kwargs)  # fmt: skip
    x = call["input"]
    per_channel = (1, x.shape[1]) + (1,) * (x.dim() - 2)
    affine = _affine(call["weight"], call["bias"], per_channel)
    return NormCall(
        x.reshape(x.shape[0], call["num_groups"], -1), Norm((-1,), call["eps"]), lambda y: affine(y.reshape(x.shape))
    )


def instance_norm(*args: Any, **kwargs: Any) -> NormCall | None:
    """``None`` with running statistics (``use_input_stats=False``): then it is an affine map, linear."""
    names = ("input", "running_mean", "running_var", "weight", "bias", "use_input_stats", "momentum", "eps")
    call = _bind(names, {"running_mean": None, "running_var": None, "weight": None, "bias": None,
                         "use_input_stats": True, "momentum": 0.1, "eps": 1e-5}, args, kwargs)  # fmt: skip
    if not call["use_input_stats"]:
        return None
    x = call["input"]
    per_channel = (1, x.shape[1]) + (1,) * (x.dim() - 2)
    norm = Norm(tuple(range(2, x.dim())), call["eps"])
    return NormCall(x, norm, _affine(call["weight"], call["bias"], per_channel))


NORMS: dict[str, Callable[..., NormCall | None]] = {
    "torch.nn.functional.layer_norm": layer_norm,
    "torch.layer_norm": layer_norm,
    "torch.nn.functional.rms_norm": rms_norm,
    "torch.rms_norm": rms_norm,
    "torch.nn.functional.group_norm": group_norm,
    "torch.group_norm": group_norm,
    "torch.nn.functional.instance_norm": instance_norm,
    "torch.instance_norm": instance_norm,
}
"""Norm ops by resolved name -> their call taken apart (the ``normalisation`` rule applies in one step)."""


def _reduced_dims(x: Tensor, dim: Any) -> tuple[int, ...]:
    if dim is None or (isinstance(dim, (tuple, list)) and len(dim) == 0):
        return tuple(range(x.dim()))
    return tuple(dim) if isinstance(dim, (tuple, list)) else (dim,)


def _variance(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Tensor, Tensor, bool]:
    """``(var, mean, keepdim)`` of a ``var``/``std``/``var_mean``/``std_mean`` call (``unbiased`` or
    ``correction`` as given; default correction 1)."""
    call = _bind(("input", "dim", "unbiased", "keepdim"), {"dim": None, "keepdim": False}, args, kwargs)
    if isinstance(call["dim"], bool):  # var(input, unbiased) overload
        call["unbiased"], call["dim"] = call["dim"], None
    x = call["input"]
    dims = _reduced_dims(x, call["dim"])
    correction = call.get("correction")
    if correction is None:
        correction = 1 if call.get("unbiased", True) in (True, None) else 0
    count = math.prod(x.shape[d] for d in dims)
    mean = x.mean(dims, keepdim=True)
    variance = (x - mean).square().sum(dims, keepdim=True) / max(count - correction, 0)
    keepdim = bool(call["keepdim"])
    if not keepdim:
        variance, mean = variance.squeeze(dims), mean.squeeze(dims)
    return variance, mean, keepdim


def var(*args: Any, **kwargs: Any) -> Tensor:
    return _variance(args, kwargs)[0]


def std(*args: Any, **kwargs: Any) -> Tensor:
    return torch.sqrt(_variance(args, kwargs)[0])


def var_mean(*args: Any, **kwargs: Any) -> tuple[Tensor, Tensor]:
    variance, mean, _ = _variance(args, kwargs)
    return variance, mean


def std_mean(*args: Any, **kwargs: Any) -> tuple[Tensor, Tensor]:
    variance, mean, _ = _variance(args, kwargs)
    return torch.sqrt(variance), mean


def vector_norm(*args: Any, **kwargs: Any) -> Tensor:
    """``‖x‖_p`` over ``dim``: ``(Σ |x|^p)^(1/p)``; ``p = 2`` as ``sqrt(Σ x²)``; ``p = ∞`` as ``max |x|``."""
    call = _bind(("input", "p", "dim", "keepdim"), {"p": 2, "dim": None, "keepdim": False}, args, kwargs)
    p = call.pop("ord", call["p"])
    p = 2 if p in (None, "fro") else p
    x = call["input"]
    dims = _reduced_dims(x, call["dim"])
    keepdim = bool(call["keepdim"])
    if p == 2:
        return torch.sqrt(x.square().sum(dims, keepdim=keepdim))
    if p == math.inf:
        return x.abs().amax(dims, keepdim=keepdim)
    if p == 1:
        return x.abs().sum(dims, keepdim=keepdim)
    return torch.pow(x.abs().pow(p).sum(dims, keepdim=keepdim), 1.0 / p)


def logsumexp(*args: Any, **kwargs: Any) -> Tensor:
    """``log Σ exp(x)`` over ``dim`` (exp → sum → log, each with its rule)."""
    call = _bind(("input", "dim", "keepdim"), {"keepdim": False}, args, kwargs)
    return torch.log(torch.exp(call["input"]).sum(_reduced_dims(call["input"], call["dim"]), keepdim=call["keepdim"]))


def scaled_dot_product_attention(*args: Any, **kwargs: Any) -> Tensor:
    """``softmax(q kᵀ · scale + mask) v`` exactly as ``F.scaled_dot_product_attention`` defines it."""
    names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")
    call = _bind(names, {"attn_mask": None, "dropout_p": 0.0, "is_causal": False, "scale": None,
                         "enable_gqa": False}, args, kwargs)  # fmt: skip
    q, k, v = call["query"], call["key"], call["value"]
    if call["enable_gqa"] and q.dim() >= 3 and k.shape[-3] != q.shape[-3]:
        repeats = q.shape[-3] // k.shape[-3]
        k, v = k.repeat_interleave(repeats, dim=-3), v.repeat_interleave(repeats, dim=-3)
    scale = 1 / math.sqrt(q.shape[-1]) if call["scale"] is None else call["scale"]
    scores = torch.matmul(q, k.transpose(-2, -1)) * scale
    target, source = q.shape[-2], k.shape[-2]
    if call["is_causal"]:
        allowed = torch.ones(target, source, dtype=torch.bool, device=q.device).tril()
        scores = scores.masked_fill(~allowed, -math.inf)
    mask = call["attn_mask"]
    if mask is not None:
        scores = scores.masked_fill(~mask, -math.inf) if mask.dtype == torch.bool else scores + mask
    weights = _safe_softmax(scores) if mask is not None or call["is_causal"] else torch.softmax(scores, dim=-1)
    if call["dropout_p"] > 0:
        weights = F.dropout(weights, call["dropout_p"], training=True)
    return torch.matmul(weights, v)


def _safe_softmax(scores: Tensor) -> Tensor:
    """Softmax over the keys, with weights 0 for a query whose keys are all masked (``-inf``), as PyTorch's
    attention (2.5+) gives them (HuggingFace's left padding makes such rows), instead of 0/0 = NaN. The row
    is set to 0 before the softmax and its weights to 0 after it, so that no NaN reaches either pass."""
    empty = scores.isneginf().all(dim=-1, keepdim=True)
    if not bool(empty.any()):
        return torch.softmax(scores, dim=-1)
    return torch.softmax(scores.masked_fill(empty, 0.0), dim=-1).masked_fill(empty, 0.0)


def native_multi_head_attention(*args: Any, **kwargs: Any) -> tuple[Tensor, Tensor | None]:
    """The fused kernel of ``nn.MultiheadAttention``'s fast path (batch-first ``(B, T, E)``): packed input
    projection, attention per head, output projection; masks as ``mask_type`` says (0: ``(T, S)``
    attention mask, 1: ``(B, S)`` key padding mask, 2: already merged)."""
    names = ("query", "key", "value", "embed_dim", "num_head", "qkv_weight", "qkv_bias", "proj_weight",
             "proj_bias", "mask", "need_weights", "average_attn_weights", "mask_type")  # fmt: skip
    call = _bind(names, {"mask": None, "need_weights": True, "average_attn_weights": True, "mask_type": None},
                 args, kwargs)  # fmt: skip
    query, key, value = call["query"], call["key"], call["value"]
    embed, heads = int(call["embed_dim"]), int(call["num_head"])
    w_q, w_k, w_v = call["qkv_weight"].chunk(3)
    b_q, b_k, b_v = call["qkv_bias"].chunk(3) if call["qkv_bias"] is not None else (None, None, None)

    def split_heads(x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], x.shape[1], heads, embed // heads).transpose(1, 2)

    q, k, v = (split_heads(F.linear(x, w, b)) for x, w, b in ((query, w_q, b_q), (key, w_k, b_k), (value, w_v, b_v)))
    scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(embed // heads)
    mask = call["mask"]
    if mask is not None:
        if call["mask_type"] == 1:  # key padding (B, S): True = ignore
            mask = mask[:, None, None, :]
        mask = mask.to(torch.bool) if mask.dtype == torch.bool else mask
        scores = scores.masked_fill(mask, -math.inf) if mask.dtype == torch.bool else scores + mask
    weights = torch.softmax(scores, dim=-1)
    out = torch.matmul(weights, v).transpose(1, 2).reshape(query.shape[0], query.shape[1], embed)
    out = F.linear(out, call["proj_weight"], call["proj_bias"])
    if not call["need_weights"]:
        return out, None
    return out, weights.mean(1) if call["average_attn_weights"] else weights


def glu(*args: Any, **kwargs: Any) -> Tensor:
    """``a ⊙ σ(b)`` with ``a, b`` the halves of the input along ``dim``."""
    call = _bind(("input", "dim"), {"dim": -1}, args, kwargs)
    a, b = call["input"].chunk(2, dim=call["dim"])
    return a * torch.sigmoid(b)


def maximum(*args: Any, **kwargs: Any) -> Tensor:
    """``max(a, b) = a + relu(b − a)`` (``min(a, b) = a − relu(a − b)``)."""
    call = _bind(("input", "other"), {}, args, kwargs)
    a, b = call["input"], call["other"]
    return a + torch.relu(b - a)


def minimum(*args: Any, **kwargs: Any) -> Tensor:
    call = _bind(("input", "other"), {}, args, kwargs)
    a, b = call["input"], call["other"]
    return a - torch.relu(a - b)


def max_tree(windows: Tensor, dim: int) -> Tensor:
    """The maximum over ``dim`` as a balanced tree of ``max(a, b) = a + relu(b − a)`` (keeps ``dim``, size 1)."""
    while windows.shape[dim] > 1:
        size = windows.shape[dim]
        pairs = size // 2
        a, b = windows.narrow(dim, 0, pairs), windows.narrow(dim, pairs, pairs)
        merged = a + torch.relu(b - a)
        windows = torch.cat((merged, windows.narrow(dim, 2 * pairs, 1)), dim) if size % 2 else merged
    return windows


def _max_pool(spatial: int) -> Expander:
    """Max pooling over ``spatial`` trailing dimensions as windows (replicate padding: every padded window
    also holds the edge element it copies) reduced by :func:`max_tree`."""
    names = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")

    def expand(*args: Any, **kwargs: Any) -> Any:
        call = _bind(names, {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False,
                             "return_indices": False}, args, kwargs)  # fmt: skip
        x = call["input"]

        def per_dim(value: Any) -> tuple[int, ...]:
            return tuple(value) if isinstance(value, (tuple, list)) else (value,) * spatial

        kernel = per_dim(call["kernel_size"])
        stride = per_dim(call["stride"] if call["stride"] not in (None, ()) else kernel)
        padding, dilation = per_dim(call["padding"]), per_dim(call["dilation"])
        reference = getattr(F, f"max_pool{spatial}d")(x.detach(), kernel, stride, padding, dilation,
                                                    call["ceil_mode"], True)  # fmt: skip
        out_shape = reference[0].shape[-spatial:]
        windows = x
        lead = x.dim() - spatial
        for i in range(spatial):
            d = lead + i
            needed = (out_shape[i] - 1) * stride[i] + dilation[i] * (kernel[i] - 1) + 1
            extra = max(0, needed - x.shape[d] - padding[i])
            if dilation[i] > 1 and (padding[i] or extra):  # a padded window may miss the edge it copies
                raise NotImplementedError("exact max pooling of dilated windows that reach past the edge")
            if padding[i] or extra:
                windows = _replicate(windows, d, padding[i], extra)
            windows = windows.unfold(d, dilation[i] * (kernel[i] - 1) + 1, stride[i])
            windows = windows.narrow(d, 0, out_shape[i])
            if dilation[i] > 1:
                windows = windows[..., :: dilation[i]]
        flat = windows.reshape(*windows.shape[: lead + spatial], -1)
        values = max_tree(flat, -1).squeeze(-1)
        return (values, reference[1]) if call["return_indices"] else values

    return expand


def _replicate(x: Tensor, dim: int, before: int, after: int) -> Tensor:
    """``x`` extended along ``dim`` by copies of its first (``before``) and last (``after``) slices."""
    parts = [x.narrow(dim, 0, 1)] * before + [x] + [x.narrow(dim, x.shape[dim] - 1, 1)] * after
    return torch.cat(parts, dim)


def _max_reduction(name: str) -> Expander:
    minimum_ = name.endswith(("min", "amin"))
    returns_indices = not name.endswith(("amax", "amin"))

    def expand(*args: Any, **kwargs: Any) -> Any:
        call = _bind(("input", "dim", "keepdim"), {"dim": None, "keepdim": False}, args, kwargs)
        x, dim = call["input"], call["dim"]
        sign = -1 if minimum_ else 1
        if dim is None or (isinstance(dim, (tuple, list)) and len(dim) == 0):
            flat = (sign * x).reshape(-1)
            value = sign * max_tree(flat, 0).reshape(())
            return value
        dims = sorted(d % x.dim() for d in (dim if isinstance(dim, (tuple, list)) else (dim,)))
        moved = (sign * x).movedim(dims, tuple(range(x.dim() - len(dims), x.dim())))
        flat = moved.reshape(*moved.shape[: x.dim() - len(dims)], -1)
        values = sign * max_tree(flat, -1).squeeze(-1)
        if call["keepdim"]:
            for d in dims:
                values = values.unsqueeze(d)
        if returns_indices and not isinstance(call["dim"], (tuple, list)):
            reference = getattr(torch, "min" if minimum_ else "max")(x.detach(), call["dim"], call["keepdim"])
            return torch.return_types.max((values, reference.indices))
        return values

    return expand


MAX_POOLS: dict[str, Expander] = {
    f"{prefix}.max_pool{n}d{suffix}": _max_pool(n)
    for n in (1, 2, 3)
    for prefix in ("torch.nn.functional", "torch")
    for suffix in ("", "_with_indices")
}
"""Max pooling by resolved name -> its exact expansion (used with ``max_pooling="exact"``)."""

MAX_REDUCTIONS: dict[str, Expander] = {
    f"{prefix}.{op}": _max_reduction(op)
    for prefix in ("torch", "torch.Tensor")
    for op in ("max", "amax", "min", "amin")
}
"""``max``/``amax``/``min``/``amin`` over dimensions -> their exact expansion (``max_pooling="exact"``)."""

EXPANDERS: dict[str, Expander] = {
    **{
        f"{p}.{op}": f
        for p in ("torch", "torch.Tensor")
        for op, f in (
            ("var", var),
            ("std", std),
            ("var_mean", var_mean),
            ("std_mean", std_mean),
            ("logsumexp", logsumexp),
            ("norm", vector_norm),
            ("maximum", maximum),
            ("minimum", minimum),
            ("fmax", maximum),
            ("fmin", minimum),
        )
    },
    "torch.functional.norm": vector_norm,
    "torch.linalg.vector_norm": vector_norm,
    "torch.nn.functional.scaled_dot_product_attention": scaled_dot_product_attention,
    "torch._native_multi_head_attention": native_multi_head_attention,
    "_VariableFunctionsClass._native_multi_head_attention": native_multi_head_attention,
    "torch.nn.functional.glu": glu,
}
"""Ops by resolved name -> the equivalent computation evaluated instead (with the engine's mode active)."""
