"""What the engine knows about each PyTorch op: one lookup from the resolved op name to its kind.

The unit of interception is the op call (Ancona et al., ICLR 2018, Sec. 3). An op call that sees an
input-dependent tensor is looked up by its resolved name (``torch.overrides.resolve_name``), so ``nn.ReLU``,
``F.relu``, ``torch.relu`` and ``x.relu_()`` are one entry, and handled by the handler of its kind; the rule
applied there comes from the method's rule set (:mod:`gradattr.rulesets`). The kinds:

* ``elementwise`` — a nonlinearity ``z -> f(z)`` (:mod:`.elementwise`): rule slot ``elementwise``;
* ``arithmetic`` — ``+ − × ÷ **`` elementwise: affine in one operand (plain gradient), an elementwise
  function of one source (``x * sigmoid(x)``: extends an elementwise chain, see
  :mod:`gradattr.engine.provenance`), a product of two input-dependent tensors (slot ``product``, or
  ``normalisation`` when one factor is a per-row statistic), a division by one (``a * reciprocal(b)``);
* ``product`` — ``matmul``/``bmm``/``einsum``/...: linear while one factor depends on the input (slot
  ``layer``), slot ``product`` when two do;
* ``layer`` — linear, convolution and average-pooling layers: plain gradient, or the rule set's LRP layer
  rule (:mod:`gradattr.rules.layers`);
* ``softmax`` — ``softmax``/``log_softmax``: slot ``softmax``;
* ``reduction`` — ``sum``/``mean``: linear; its result is a per-row statistic;
* ``comparison`` — ``x > 0`` & co.: no gradient, but an input-dependent mask; ``select`` — ``where`` and
  ``masked_fill``: linear in their branches, and when the mask and the branches are elementwise functions of
  one source (``torch.where(x > 0, x, 0.1 * x)``, ``x * (x > 0)``), an elementwise nonlinearity of it;
* ``structural`` — reshapes, views, indexing, dtype casts, splits: linear, and keep a statistic a statistic;
* ``linear`` — other ops linear in each input-dependent argument (cat, pad, interpolation, ...);
* ``routing`` — selections (max pooling, ``max``): the gradient routes to the maximum, or, with the rule
  set's ``max_pooling="exact"``, a tree of ReLUs (slot ``max``);
* ``normalisation`` — layer/RMS/group/instance norm: slot ``normalisation``, applied in one step;
* ``expander`` — evaluated as an equivalent computation of simpler ops, each dispatched again: variance,
  norms of vectors, attention (``scaled_dot_product_attention``,
  the fused multi-head attention kernel), GLU, ``maximum`` (:mod:`.expanders`);
* ``transparent`` — Python functions of ``torch.nn.functional`` built from other ops
  (``multi_head_attention_forward``, ``normalize``): run with each inner op dispatched;
* ``recurrent`` — fused LSTM/GRU/RNN kernels, unrolled (:mod:`gradattr.engine.recurrent`);
* ``batch_norm`` — linear in eval mode (running statistics), unsupported with batch statistics.

Anything else that produces an input-dependent tensor is unsupported and named in an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from gradattr.engine import recurrent
from gradattr.engine.ops import expanders
from gradattr.engine.ops.elementwise import ELEMENTWISE, Elementwise

__all__ = ["ELEMENTWISE", "OPS", "RECURRENT", "Arithmetic", "Elementwise", "Op", "Product", "lookup"]


@dataclass(frozen=True)
class Arithmetic:
    """An elementwise arithmetic op ``a ∘ b`` (``∘`` one of ``+ − × ÷ **``) or ``−a``.

    ``operation`` names it; ``reflected``: the Python operator's right-hand form (``2 - x`` is
    ``x.__rsub__(2)``); ``inplace``: it writes into its first argument.
    """

    operation: str
    reflected: bool = False
    inplace: bool = False

    def operands(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
        """``(a, b)`` in mathematical order (``b`` is ``None`` for negation)."""
        first = args[0] if args else kwargs.get("input", kwargs.get("self"))
        second = args[1] if len(args) > 1 else kwargs.get("other", kwargs.get("exponent"))
        return (second, first) if self.reflected else (first, second)

    def compute(self, a: Any, b: Any, alpha: Any = None, rounding_mode: Any = None) -> Tensor:
        """``a ∘ b`` out of place."""
        if self.operation == "neg":
            return torch.neg(a)
        if self.operation == "pow":
            return torch.pow(a, b)
        if self.operation == "div":
            return torch.div(a, b, rounding_mode=rounding_mode)
        function = {"add": torch.add, "sub": torch.sub, "mul": torch.mul}[self.operation]
        if alpha is not None and self.operation != "mul":
            return function(a, b, alpha=alpha)
        return function(a, b)


@dataclass(frozen=True)
class Product:
    """A multilinear op (matmul, bmm, einsum, ...): every tensor argument is a factor except the summands at
    positions ``additive`` (``addmm``'s ``input``)."""

    additive: tuple[int, ...] = ()


@dataclass(frozen=True)
class Op:
    """One entry of the table: the op's kind and the kind's data (an :class:`Elementwise`, an
    :class:`Arithmetic`, a :class:`Product`, an expander function, a reason for an unsupported op...)."""

    kind: str
    spec: Any = None


def _names(prefixes: str, ops: str) -> list[str]:
    return [f"{prefix}.{op}" for prefix in prefixes.split() for op in ops.split()]


def _table() -> dict[str, Op]:
    table: dict[str, Op] = {}

    def add(names: list[str] | str, op: Op) -> None:
        for name in names.split() if isinstance(names, str) else names:
            table[name] = op

    for name, entry in ELEMENTWISE.items():
        add(name, Op("elementwise", entry))
    for operation, forms in {
        "add": "add __add__ __radd__* __iadd__! add_!",
        "sub": "sub subtract __sub__ __rsub__* rsub* __isub__! sub_! subtract_!",
        "mul": "mul multiply __mul__ __rmul__* __imul__! mul_! multiply_!",
        "div": "div divide true_divide __truediv__ __rtruediv__* __itruediv__! div_! divide_! true_divide_!",
        "pow": "pow __pow__ __rpow__* __ipow__! pow_! float_power",
        "neg": "neg negative __neg__ neg_! negative_!",
    }.items():
        for form in forms.split():
            spec = Arithmetic(operation, reflected=form.endswith("*"), inplace=form.endswith("!"))
            add(_names("torch torch.Tensor", form.rstrip("*!")), Op("arithmetic", spec))
    add("torch.Tensor.__pos__ torch.positive torch.Tensor.positive", Op("structural"))
    add(
        _names(
            "torch torch.Tensor",
            "gt ge lt le eq ne greater greater_equal less less_equal __gt__ __ge__ __lt__ __le__ __eq__ __ne__ "
            "logical_not __invert__ logical_and logical_or __and__ __or__",
        ),
        Op("comparison"),
    )
    add(_names("torch torch.Tensor", "where masked_fill masked_fill_"), Op("select"))
    add(
        [
            *_names(
                "torch torch.Tensor", "matmul __matmul__ __rmatmul__ mm bmm mv dot outer inner kron vdot tensordot"
            ),
            "torch.functional.einsum",
            "torch.einsum",
            "torch.functional.tensordot",
            "torch.nn.functional.bilinear",
        ],
        Op("product", Product()),
    )
    add(_names("torch torch.Tensor", "addmm baddbmm addmv addbmm addr"), Op("product", Product(additive=(0,))))
    add(_names("torch torch.Tensor torch.nn.functional", "softmax log_softmax"), Op("softmax"))
    add(_names("torch torch.Tensor", "sum mean nansum nanmean"), Op("reduction"))
    add(
        [
            *_names(
                "torch torch.Tensor",
                "reshape view view_as reshape_as flatten unflatten permute transpose t squeeze unsqueeze expand "
                "expand_as broadcast_to repeat tile contiguous clone narrow split split_with_sizes tensor_split "
                "chunk unbind select index_select movedim moveaxis swapaxes swapdims __getitem__ to type type_as float "
                "double cpu cuda detach flip roll",
            ),
            "torch.functional.split",
            "torch.Tensor.__pos__",
            "torch.functional.broadcast_tensors",
        ],
        Op("structural"),
    )
    add(
        _names(
            "torch torch.Tensor",
            "transpose_ squeeze_ unsqueeze_ cumsum repeat_interleave gather fliplr flipud diagonal tril triu "
            "masked_select take_along_dim cat concat concatenate stack hstack "
            "vstack dstack half bfloat16 __setitem__ zero_ fill_ copy_ unfold trace index_add index_copy "
            "scatter scatter_add narrow_copy",
        )
        + _names(
            "torch.nn.functional",
            "pad dropout dropout1d dropout2d dropout3d alpha_dropout feature_alpha_dropout interpolate upsample "
            "upsample_nearest upsample_bilinear pixel_shuffle pixel_unshuffle unfold fold channel_shuffle "
            "embedding",
        )
        + ["pad_sequence", "torch.nn.functional.embedding_bag"]
        + ["_VariableFunctionsClass._pack_padded_sequence", "_VariableFunctionsClass._pad_packed_sequence"],
        Op("linear"),
    )
    add(
        [
            *_names(
                "torch.nn.functional", "linear conv1d conv2d conv3d conv_transpose1d conv_transpose2d conv_transpose3d"
            ),
            "torch.conv1d",
            "torch.conv2d",
            "torch.conv3d",
            "torch._C._nn.linear",
        ],
        Op("layer"),
    )
    add(
        [
            *_names("torch.nn.functional", "avg_pool1d avg_pool2d avg_pool3d adaptive_avg_pool1d adaptive_avg_pool2d"),
            *["torch.nn.functional.adaptive_avg_pool3d", "torch.avg_pool1d", "torch.adaptive_avg_pool1d"],
        ],
        Op("layer", "pooling"),
    )
    for name, pool in expanders.MAX_POOLS.items():
        add(name, Op("routing", pool))
    for name, tree in expanders.MAX_REDUCTIONS.items():
        add(name, Op("routing", tree))
    add(_names("torch torch.Tensor", "topk sort cummax cummin kthvalue median msort"), Op("routing"))
    add(_names("torch.nn.functional", "adaptive_max_pool1d adaptive_max_pool2d adaptive_max_pool3d"), Op("routing"))
    add(
        _names("torch.nn.functional", "adaptive_max_pool1d_with_indices adaptive_max_pool2d_with_indices")
        + _names("torch.nn.functional", "adaptive_max_pool3d_with_indices"),
        Op("routing"),
    )
    add("torch.nn.functional.batch_norm", Op("batch_norm"))
    for name, expander in expanders.EXPANDERS.items():
        add(name, Op("expander", expander))
    for name, parse in expanders.NORMS.items():
        add(name, Op("normalisation", parse))
    add(
        _names("torch.nn.functional", "multi_head_attention_forward normalize local_response_norm softmin"),
        Op("transparent"),
    )
    for name, expander in RECURRENT.items():
        add(name, Op("recurrent", expander))
    return table


RECURRENT: dict[str, recurrent.Expander] = {
    "torch.lstm": recurrent.sequence(recurrent.LSTM),
    "torch.gru": recurrent.sequence(recurrent.GRU),
    "torch.rnn_tanh": recurrent.sequence(recurrent.RNN_TANH),
    "torch.rnn_relu": recurrent.sequence(recurrent.RNN_RELU),
    "torch.lstm_cell": recurrent.single_step(recurrent.LSTM),
    "torch.gru_cell": recurrent.single_step(recurrent.GRU),
    "torch.rnn_tanh_cell": recurrent.single_step(recurrent.RNN_TANH),
    "torch.rnn_relu_cell": recurrent.single_step(recurrent.RNN_RELU),
}
"""Recurrent kernels and cells by resolved name: each expands into an unrolled computation whose sigmoid,
tanh and relu calls get the rule (Ancona et al., ICLR 2018, Sec. 4.2: rules on σ and tanh, products kept)."""

OPS: dict[str, Op] = _table()
"""Every op the engine knows, by resolved name."""


def lookup(name: str) -> Op | None:
    """The table entry of the op with resolved name ``name``, or ``None`` for an unknown op."""
    return OPS.get(name)


def batch_norm_uses_batch_statistics(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """True when an ``F.batch_norm`` call normalises with batch statistics (training mode)."""
    training = kwargs.get("training", args[5] if len(args) > 5 else False)
    running_mean = kwargs.get("running_mean", args[1] if len(args) > 1 else None)
    return bool(training) or running_mean is None
