"""What the engine knows about each PyTorch op it meets in a forward pass.

The unit of interception is the op call (Ancona et al., ICLR 2018, Sec. 3: every gradient method is one
backward pass in which the local gradient of each *elementwise nonlinearity* is replaced by a rule). An op
that sees an input-dependent tensor falls in one of these classes, looked up by its resolved name
(``torch.overrides.resolve_name``), so ``nn.ReLU``, ``F.relu``, ``torch.relu`` and ``x.relu_()`` are the
same entry:

* :class:`Elementwise` — a nonlinearity ``z -> f(z)``: its gradient is replaced by the method's rule;
* :data:`LINEAR` — linear in each input-dependent argument (linear/conv/avg-pool/eval batch-norm/reshape/
  cat/add, ...): keeps its gradient;
* :data:`ROUTING` — piecewise selection (max pooling, max over a dimension): keeps its gradient, which
  routes to the argmax, as in the paper's reference code;
* :class:`Product` — linear in each factor separately (mul, matmul, div by a constant): keeps its gradient
  while at most one factor depends on the input; a product of two input-dependent tensors is not linear;
* :data:`RECURRENT` — a fused recurrent kernel (``nn.LSTM``/``nn.GRU``/``nn.RNN``) or cell op: evaluated as
  the equivalent unrolled computation (:mod:`gradattr.engine.recurrent`), in which the gate nonlinearities
  are elementwise calls that get the rule and the gate products are ordinary products;
* anything else that produces an input-dependent tensor is unsupported and named in an error.

Adding a rule for a new op class (LRP rules for linear ops, products of activations, layer norm) means a
new table entry, not an engine change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from gradattr.engine import recurrent


@dataclass(frozen=True)
class Elementwise:
    """An elementwise nonlinearity ``f``; ``function`` computes it out of place.

    ``always_inplace``: the op writes its result into its input (``relu_``); ``inplace_position``: index of
    a positional ``inplace`` flag (``F.elu(x, 1.0, True)``), which may also come as a keyword;
    ``rectifier``: f(z) = max(z, 0).
    """

    function: Callable[..., Tensor]
    always_inplace: bool = False
    inplace_position: int | None = None
    rectifier: bool = False

    def bind(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[Tensor, Callable[[Tensor], Tensor], bool, bool]:
        """Split a call into ``(z, f, inplace, pointwise)``: ``f(z)`` is the call's out-of-place result;
        ``pointwise``: no other argument is a tensor, so ``f`` applies to any subset of ``z``'s elements."""
        rest = list(args)
        options = dict(kwargs)
        inplace = self.always_inplace
        if "inplace" in options:
            inplace = bool(options.pop("inplace"))
        elif self.inplace_position is not None and len(rest) > self.inplace_position:
            inplace = bool(rest.pop(self.inplace_position))
        z = rest.pop(0) if rest else options.pop("input", None)
        if z is None:
            z = options.pop("self")
        function = self.function
        pointwise = not any(isinstance(a, Tensor) for a in (*rest, *options.values()))

        def f(t: Tensor) -> Tensor:
            return function(t, *rest, **options)

        return z, f, inplace, pointwise


@dataclass(frozen=True)
class Product:
    """An op linear in each of its tensor arguments separately (mul, matmul, division).

    It keeps its gradient while at most one factor depends on the input: ``additive`` positions are
    summands, not factors (``addmm``'s ``input``); the argument at ``divisor`` (positional, or keyword
    ``other``) must not depend on the input at all.
    """

    additive: tuple[int, ...] = ()
    divisor: int | None = None

    def violation(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
        """Why this call is not linear in the input, or ``None`` when it is."""
        named = [(i, a) for i, a in enumerate(args)] + [(k, a) for k, a in kwargs.items()]
        dependent = [key for key, a in named if isinstance(a, Tensor) and a.requires_grad]
        divisor_keys = {self.divisor, "other"} if self.divisor is not None else set()
        if divisor_keys & set(dependent):
            return "it divides by an input-dependent tensor"
        if len([key for key in dependent if key not in self.additive]) > 1:
            return "it multiplies two input-dependent tensors"
        return None


def _elementwise_table() -> dict[str, Elementwise]:
    table: dict[str, Elementwise] = {}

    def add(names: str, function: Callable[..., Tensor], **kw: Any) -> None:
        for name in names.split():
            table[name] = Elementwise(function, **kw)

    add("torch.relu torch.Tensor.relu", torch.relu, rectifier=True)
    add("torch.relu_ torch.Tensor.relu_ torch.nn.functional.relu_", torch.relu, always_inplace=True, rectifier=True)
    add("torch.nn.functional.relu", F.relu, inplace_position=1, rectifier=True)
    add("torch.nn.functional.relu6", F.relu6, inplace_position=1)
    add("torch.nn.functional.leaky_relu", F.leaky_relu, inplace_position=2)
    add("torch.nn.functional.leaky_relu_", F.leaky_relu, always_inplace=True)
    add("torch.nn.functional.elu", F.elu, inplace_position=2)
    add("torch.nn.functional.elu_", F.elu, always_inplace=True)
    add("torch.nn.functional.selu", F.selu, inplace_position=1)
    add("torch.selu torch.Tensor.selu", torch.selu)
    add("torch.selu_ torch.Tensor.selu_", torch.selu, always_inplace=True)
    add("torch.nn.functional.celu", F.celu, inplace_position=2)
    add("torch.celu_ torch.Tensor.celu_", torch.celu, always_inplace=True)
    add("torch.nn.functional.gelu", F.gelu)
    add("torch.nn.functional.silu", F.silu, inplace_position=1)
    add("torch.nn.functional.mish", F.mish, inplace_position=1)
    add("torch.nn.functional.softplus", F.softplus)
    add("torch.sigmoid torch.Tensor.sigmoid torch.special.expit", torch.sigmoid)
    add("torch.sigmoid_ torch.Tensor.sigmoid_", torch.sigmoid, always_inplace=True)
    add("torch.nn.functional.logsigmoid", F.logsigmoid)
    add("torch.nn.functional.hardsigmoid", F.hardsigmoid, inplace_position=1)
    add("torch.nn.functional.hardswish", F.hardswish, inplace_position=1)
    add("torch.nn.functional.hardtanh", F.hardtanh, inplace_position=3)
    add("torch.nn.functional.hardtanh_", F.hardtanh, always_inplace=True)
    add("torch.tanh torch.Tensor.tanh", torch.tanh)
    add("torch.tanh_ torch.Tensor.tanh_", torch.tanh, always_inplace=True)
    add("torch.nn.functional.softsign", F.softsign)
    add("torch.clamp torch.clip torch.Tensor.clamp torch.Tensor.clip", torch.clamp)
    add("torch.clamp_ torch.clip_ torch.Tensor.clamp_ torch.Tensor.clip_", torch.clamp, always_inplace=True)
    add("torch.clamp_min torch.Tensor.clamp_min", torch.clamp_min)
    add("torch.clamp_max torch.Tensor.clamp_max", torch.clamp_max)
    add("torch.abs torch.Tensor.abs torch.absolute torch.Tensor.absolute", torch.abs)
    add("torch.abs_ torch.Tensor.abs_", torch.abs, always_inplace=True)
    return table


ELEMENTWISE: dict[str, Elementwise] = _elementwise_table()
"""Elementwise nonlinearities by resolved name; the method's rule replaces their gradient."""


def _names(prefixes: str, ops: str) -> frozenset[str]:
    return frozenset(f"{prefix}.{op}" for prefix in prefixes.split() for op in ops.split())


LINEAR: frozenset[str] = (
    _names(
        "torch torch.Tensor",
        "add add_ sub sub_ subtract neg neg_ negative sum mean cumsum reshape view view_as reshape_as flatten "
        "unflatten permute transpose transpose_ t squeeze squeeze_ unsqueeze unsqueeze_ expand expand_as "
        "repeat repeat_interleave tile contiguous clone narrow split split_with_sizes chunk unbind select "
        "index_select gather flip fliplr flipud roll movedim moveaxis swapaxes swapdims diagonal tril triu "
        "where masked_fill masked_fill_ masked_select take_along_dim cat concat concatenate stack hstack "
        "vstack dstack to type float double half bfloat16 cpu cuda __getitem__ __setitem__ __iadd__ "
        "__isub__ __radd__ __rsub__ __neg__ __pos__ __add__ __sub__ zero_ fill_ copy_ unfold trace "
        "index_add index_copy scatter scatter_add narrow_copy",
    )
    | _names(
        "torch.nn.functional",
        "linear conv1d conv2d conv3d conv_transpose1d conv_transpose2d conv_transpose3d avg_pool1d "
        "avg_pool2d avg_pool3d adaptive_avg_pool1d adaptive_avg_pool2d adaptive_avg_pool3d pad dropout "
        "dropout1d dropout2d dropout3d alpha_dropout feature_alpha_dropout interpolate upsample "
        "upsample_nearest upsample_bilinear pixel_shuffle pixel_unshuffle unfold fold channel_shuffle "
        "embedding",
    )
    | frozenset({"torch.conv1d", "torch.conv2d", "torch.conv3d", "torch.avg_pool1d", "torch._C._nn.linear"})
    # packing and padding of variable-length sequences (torch.nn.utils.rnn): reordering and zero-filling
    | frozenset({"_VariableFunctionsClass._pack_padded_sequence", "_VariableFunctionsClass._pad_packed_sequence"})
    | frozenset({"pad_sequence"})
)
"""Ops linear in each input-dependent argument (jointly): their plain gradient is the right one."""

ROUTING: frozenset[str] = (
    _names(
        "torch.nn.functional",
        "max_pool1d max_pool2d max_pool3d max_pool1d_with_indices max_pool2d_with_indices "
        "max_pool3d_with_indices adaptive_max_pool1d adaptive_max_pool2d adaptive_max_pool3d "
        "adaptive_max_pool1d_with_indices adaptive_max_pool2d_with_indices adaptive_max_pool3d_with_indices",
    )
    | _names("torch", "max_pool1d max_pool2d max_pool3d max_pool1d_with_indices adaptive_max_pool1d")
    | _names("torch torch.Tensor", "max amax min amin topk sort cummax cummin kthvalue median")
)
"""Selections (max pooling, max over a dimension): the gradient routes to the selected element, as in the
paper's reference code; a single input-dependent argument is required."""

PRODUCTS: dict[str, Product] = {
    **dict.fromkeys(
        _names(
            "torch torch.Tensor",
            "mul mul_ multiply __mul__ __rmul__ __imul__ matmul __matmul__ "
            "__rmatmul__ mm bmm mv dot outer inner kron einsum",
        ),
        Product(),
    ),
    **dict.fromkeys(_names("torch torch.Tensor", "addmm baddbmm addmv addbmm addr"), Product(additive=(0,))),
    **dict.fromkeys(
        _names("torch torch.Tensor", "div div_ divide true_divide __truediv__ __itruediv__"),
        Product(divisor=1),
    ),
    "torch.Tensor.__rtruediv__": Product(divisor=0),
    "torch.nn.functional.bilinear": Product(additive=(3,)),
}
"""Multilinear ops: linear while at most one factor depends on the input."""

BATCH_NORM = "torch.nn.functional.batch_norm"
"""Linear in eval mode (running statistics), not in training mode (batch statistics)."""

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

KNOWN_NONLINEAR: dict[str, str] = {
    **dict.fromkeys(
        _names("torch torch.Tensor torch.nn.functional", "softmax log_softmax softmin"),
        "softmax couples all its inputs; attribute the logits (remove the softmax from the model)",
    ),
    **dict.fromkeys(
        _names("torch.nn.functional", "layer_norm group_norm instance_norm rms_norm local_response_norm normalize"),
        "a normalisation divides by input-dependent statistics",
    ),
    "torch.nn.functional.scaled_dot_product_attention": "attention multiplies input-dependent tensors",
}
"""Ops known to be nonlinear without a rule, with the reason given in the error."""


def batch_norm_uses_batch_statistics(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """True when an ``F.batch_norm`` call normalises with batch statistics (training mode)."""
    training = kwargs.get("training", args[5] if len(args) > 5 else False)
    running_mean = kwargs.get("running_mean", args[1] if len(args) > 1 else None)
    return bool(training) or running_mean is None
