"""Hypothesis strategies for the fuzz suite (``test_fuzz.py``): tiny random models built only from ops gradattr
supports, and random valid arguments for :func:`gradattr.attribute`.

A model is drawn as a :class:`NetSpec` (front end, blocks, activations and how each is called, pooling, side
input, head) and built deterministically from it by :class:`FuzzNet`; weights and inputs come from a seed the
strategy draws, so a failing example shrinks to a small architecture and is replayed exactly. A
:class:`Case` bundles a model with inputs, a method, its options, a target and a baseline, and knows how to
call ``attribute`` and how to evaluate the target score S_c directly with the model (for completeness checks).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from hypothesis import strategies as st
from torch import Tensor, nn

import gradattr

# -- activations: every way of calling one --------------------------------------------------------------------

FUNCTIONAL: dict[str, Callable[[Tensor], Tensor]] = {
    "F.relu": F.relu,
    "torch.relu": torch.relu,
    "Tensor.relu": lambda t: t.relu(),
    "Tensor.relu_": lambda t: t.relu_(),
    "F.relu(inplace)": lambda t: F.relu(t, inplace=True),
    "torch.tanh": torch.tanh,
    "Tensor.tanh_": lambda t: t.tanh_(),
    "F.leaky_relu": lambda t: F.leaky_relu(t, 0.1),
    "F.leaky_relu(inplace)": lambda t: F.leaky_relu(t, 0.2, inplace=True),
    "F.elu": F.elu,
    "F.softplus": F.softplus,
    "F.softplus(beta)": lambda t: F.softplus(t, beta=2.0, threshold=4.0),
    "torch.sigmoid": torch.sigmoid,
    "Tensor.sigmoid_": lambda t: t.sigmoid_(),
    "F.gelu": F.gelu,
    "F.silu": F.silu,
    "F.selu": F.selu,
    "F.celu": lambda t: F.celu(t, 0.5),
    "F.mish": F.mish,
    "F.hardtanh": F.hardtanh,
    "F.relu6": F.relu6,
    "F.hardsigmoid": F.hardsigmoid,
    "F.hardswish": F.hardswish,
    "F.logsigmoid": F.logsigmoid,
    "F.softsign": F.softsign,
    "torch.clamp": lambda t: torch.clamp(t, min=-0.5, max=0.8),
    "Tensor.abs": lambda t: t.abs(),
    "F.relu_": F.relu_,
    "F.elu_": F.elu_,
    "F.hardtanh_": F.hardtanh_,
    "Tensor.clamp_": lambda t: t.clamp_(min=-0.2),
    "Tensor[slice].relu_": lambda t: _on_slice(t, torch.Tensor.relu_),
    "Tensor[slice].tanh_": lambda t: _on_slice(t, torch.Tensor.tanh_),
}
"""Activations called as functions or tensor methods (the in-place ones only ever see a fresh tensor; the
``[slice]`` ones overwrite a view of it, the other features stay linear)."""


def _on_slice(t: Tensor, inplace: Callable[[Tensor], Tensor]) -> Tensor:
    inplace(t[:, t.shape[1] // 2 :])
    return t


MODULES: dict[str, Callable[[], nn.Module]] = {
    "nn.ReLU": nn.ReLU,
    "nn.ReLU(inplace)": lambda: nn.ReLU(inplace=True),
    "nn.Tanh": nn.Tanh,
    "nn.LeakyReLU(inplace)": lambda: nn.LeakyReLU(0.2, inplace=True),
    "nn.ELU(inplace)": lambda: nn.ELU(inplace=True),
    "nn.Sigmoid": nn.Sigmoid,
    "nn.Softplus": lambda: nn.Softplus(beta=2.0),
    "nn.GELU(tanh)": lambda: nn.GELU(approximate="tanh"),
    "nn.SiLU": nn.SiLU,
    "nn.Hardtanh(inplace)": lambda: nn.Hardtanh(-0.7, 0.9, inplace=True),
    "nn.ReLU6": nn.ReLU6,
}
"""Activation modules, one instance per call site."""

REUSED: dict[str, Callable[[], nn.Module]] = {
    "reused nn.ReLU": nn.ReLU,
    "reused nn.ReLU(inplace)": lambda: nn.ReLU(inplace=True),
    "reused nn.Tanh": nn.Tanh,
}
"""Activation modules of which the model holds one instance, called at every site that names it."""

ACTIVATIONS: tuple[str, ...] = (*FUNCTIONAL, *MODULES, *REUSED)
INPLACE: frozenset[str] = frozenset(name for name in ACTIVATIONS if "inplace" in name or name.endswith("_"))
"""Activations that overwrite their argument."""
OUT_OF_PLACE: tuple[str, ...] = tuple(name for name in FUNCTIONAL if name not in INPLACE)

FRONTS: tuple[str, ...] = ("dense", "sequence", "conv1d", "conv2d", "embedding")
"""dense (B, F); sequence (B, L, F); conv1d (B, C, L); conv2d (B, C, H, W); embedding: token ids (B, L)."""

CONV_POOLS: tuple[str, ...] = ("none", "avg", "avg_module", "max", "adaptive", "adaptive_max")
SEQUENCE_POOLS: tuple[str, ...] = ("mean", "sum", "last", "flatten", "amax")
ROUTING_POOLS: frozenset[str] = frozenset({"max", "adaptive_max", "amax"})
"""Selections (max): they route the gradient to the maximum, so DeepLIFT's completeness does not hold."""
FLATTENS: tuple[str, ...] = ("torch.flatten", "view", "reshape", "nn.Flatten")
SCALES: tuple[str, ...] = ("none", "mul", "rmul", "div")
MODERN: tuple[str, ...] = ("none", "gate", "softmax")
"""Ops of transformers and gated nets after the linear op: F.layer_norm over the last dimension, RMSNorm written
by hand (x · rsqrt(mean(x²) + ε)), a sigmoid gate from a second linear op (z ⊙ σ(W' h)), softmax weights
(z ⊙ softmax(z) · n) — each with its exact DeepLIFT rule, so completeness is still promised."""


@dataclass(frozen=True)
class BlockSpec:
    """One hidden block: linear op (Linear or Conv), optional batch-norm, scaling by a constant, residual
    connection (``"pre"``: act(f(h) + h), ``"post"``: h + act(f(h))), activation, dropout (identity in eval),
    for dense blocks ``split``: the activation acts on one slice of the features only (slice + cat), and
    ``modern``: one of :data:`MODERN` after the linear op."""

    activation: str
    norm: bool = False
    scale: str = "none"
    residual: str = "none"
    dropout: bool = False
    split: bool = False
    modern: str = "none"


@dataclass(frozen=True)
class NetSpec:
    """A tiny model: what :class:`FuzzNet` builds (see :data:`FRONTS`)."""

    front: str
    shape: tuple[int, ...]  # feature shape of one sample of the first input; (L,) token ids for "embedding"
    width: int
    blocks: tuple[BlockSpec, ...]
    pool: str = "none"
    flatten: str = "torch.flatten"
    rnn: str | None = None  # "lstm" or "gru" (sequence and embedding fronts)
    rnn_layers: int = 1
    bidirectional: bool = False
    pre_activation: str | None = None  # an out-of-place activation applied to the raw input
    side: int = 0  # features of a second input (B, side) joined by concatenation; 0: single input
    mask: str | None = None  # embedding front: a (B, L) "bool" or "float" mask input applied to the tokens
    side_activation: str = "torch.tanh"
    classes: int = 3
    squeeze: bool = False  # classes == 1: output (B,) instead of (B, 1)
    vocab: int = 7
    seed: int = 0
    gain: float = 1.5

    @property
    def multiplicative(self) -> bool:
        """Gate products (LSTM/GRU): outside DeepLIFT's completeness."""
        return self.rnn is not None

    @property
    def routing(self) -> bool:
        return self.pool in ROUTING_POOLS

    @property
    def completeness(self) -> bool:
        """DeepLIFT's Σ R = S_c(x) - S_c(x̄) is promised: linear ops and elementwise nonlinearities only."""
        return not (self.multiplicative or self.routing)

    @property
    def output_width(self) -> int:
        return self.classes

    @property
    def convolutional(self) -> bool:
        return self.front in ("conv1d", "conv2d")


class Block(nn.Module):
    """A hidden block as described by :class:`BlockSpec`."""

    def __init__(self, spec: BlockSpec, front: str, width: int, shared: dict[str, nn.Module]) -> None:
        super().__init__()
        self.spec = spec
        if front == "conv1d":
            self.linear: nn.Module = nn.Conv1d(width, width, 3, padding=1)
            norm: type[nn.Module] = nn.BatchNorm1d
        elif front == "conv2d":
            self.linear = nn.Conv2d(width, width, 3, padding=1)
            norm = nn.BatchNorm2d
        else:
            self.linear = nn.Linear(width, width)
            norm = nn.BatchNorm1d
        # batch-norm over (B, C, ...): dense and conv features; a sequence (B, L, W) has its channels last
        self.norm = norm(width) if spec.norm and front != "sequence" and front != "embedding" else None
        self.act = _activation_module(spec.activation, shared)
        self.drop = nn.Dropout(0.3) if spec.dropout else None
        self.gate = copy.deepcopy(self.linear) if spec.modern == "gate" else None
        if self.gate is not None:
            nn.init.normal_(self.gate.weight, std=0.5)

    def activate(self, z: Tensor) -> Tensor:
        return self.act(z) if self.act is not None else FUNCTIONAL[self.spec.activation](z)

    def forward(self, h: Tensor) -> Tensor:
        z = self.linear(h)
        if self.norm is not None:
            z = self.norm(z)
        if self.spec.modern == "layer_norm":
            z = F.layer_norm(z, z.shape[-1:])
        elif self.spec.modern == "rms_norm":
            z = z * torch.rsqrt(z.pow(2).mean(-1, keepdim=True) + 1e-5)
        elif self.spec.modern == "gate":
            assert self.gate is not None
            z = z * torch.sigmoid(self.gate(h))
        elif self.spec.modern == "softmax":
            z = z * F.softmax(z, dim=-1) * z.shape[-1]
        if self.spec.scale == "mul":
            z = z * 0.5
        elif self.spec.scale == "rmul":
            z = 2.0 * z
        elif self.spec.scale == "div":
            z = z / 3.0
        if self.spec.residual == "pre":
            z = z + h
        if self.spec.split and z.dim() == 2 and z.shape[1] > 1:
            k = z.shape[1] // 2
            a = torch.cat([z[:, :k], self.activate(z[:, k:].clone())], dim=1)
        else:
            a = self.activate(z)
        if self.drop is not None:
            a = self.drop(a)
        if self.spec.residual == "post":
            a = a + h
        return a


def _activation_module(name: str, shared: dict[str, nn.Module]) -> nn.Module | None:
    if name in MODULES:
        return MODULES[name]()
    if name in REUSED:
        if name not in shared:
            shared[name] = REUSED[name]()
        return shared[name]
    return None


class FuzzNet(nn.Module):
    """The model a :class:`NetSpec` describes, with weights drawn from ``spec.seed``.

    ``explode``: ``"cumprod"`` puts a cumulative product before the head (an op without a rule, which the
    rule-based methods must refuse),
    ``"nan"`` multiplies the head's input by NaN (non-finite attributions) — for the error-path properties.
    """

    def __init__(self, spec: NetSpec) -> None:
        super().__init__()
        self.spec = spec
        self.explode: str | None = None
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(spec.seed)
        try:
            self._build(spec)
        finally:
            torch.random.set_rng_state(generator_state)

    def _build(self, spec: NetSpec) -> None:
        shared: dict[str, nn.Module] = {}
        width = spec.width
        if spec.front == "embedding":
            self.embedding = nn.Embedding(spec.vocab, width)
            self.stem: nn.Module = nn.Linear(width, width)
        elif spec.front == "conv1d":
            self.stem = nn.Conv1d(spec.shape[0], width, 3, padding=1)
        elif spec.front == "conv2d":
            self.stem = nn.Conv2d(spec.shape[0], width, 3, padding=1)
        else:
            self.stem = nn.Linear(spec.shape[-1], width)
        if spec.rnn is not None:
            rnn_type = nn.LSTM if spec.rnn == "lstm" else nn.GRU
            self.rnn = rnn_type(
                width, width, num_layers=spec.rnn_layers, batch_first=True, bidirectional=spec.bidirectional
            )
            self.rnn_out = nn.Linear(width * (2 if spec.bidirectional else 1), width)
        self.blocks = nn.ModuleList(Block(b, spec.front, width, shared) for b in spec.blocks)
        self.pool = _pool_module(spec)
        self.flat = nn.Flatten() if spec.flatten == "nn.Flatten" else None
        if spec.side:
            self.side = nn.Linear(spec.side, 3)
            self.side_act = _activation_module(spec.side_activation, shared)
        self.eval()  # the dry run below must not touch batch-norm statistics
        with torch.no_grad():
            features = self._trunk(self._dummy_input()).shape[1]
        self.head = nn.Linear(features + (3 if spec.side else 0), spec.classes)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if not name.startswith("embedding"):
                    p.mul_(spec.gain)
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):  # as after training
                    m.running_mean.uniform_(-0.5, 0.5)
                    m.running_var.uniform_(0.5, 2.0)
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.3, 0.3)
        self.eval()

    def _dummy_input(self) -> Tensor:
        if self.spec.front == "embedding":
            return torch.zeros((1, *self.spec.shape), dtype=torch.long)
        return torch.zeros((1, *self.spec.shape))

    def _trunk(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        spec = self.spec
        if spec.front == "embedding":
            h = self.embedding(x)
        else:
            h = FUNCTIONAL[spec.pre_activation](x) if spec.pre_activation else x
        h = self.stem(h)
        if spec.rnn is not None:
            h, _ = self.rnn(h)
            h = self.rnn_out(h)
        for block in self.blocks:
            h = block(h)
        if mask is not None and mask.dtype == torch.bool:  # per-sample context, not attributed
            h = h.masked_fill(~mask.unsqueeze(-1), 0.0)
        elif mask is not None:
            h = h * mask.unsqueeze(-1)
        return self._reduce(h)

    def _reduce(self, h: Tensor) -> Tensor:
        spec = self.spec
        if spec.convolutional:
            if spec.pool == "avg":
                h = F.avg_pool1d(h, 2) if spec.front == "conv1d" else F.avg_pool2d(h, 2)
            elif spec.pool != "none":
                h = self.pool(h)
            return self._flatten(h)
        if spec.front in ("sequence", "embedding"):
            if spec.pool == "mean":
                return h.mean(1)
            if spec.pool == "sum":
                return torch.sum(h, dim=1)
            if spec.pool == "last":
                return h[:, -1]
            if spec.pool == "amax":
                return h.amax(dim=1)
            return self._flatten(h)
        return h

    def _flatten(self, h: Tensor) -> Tensor:
        how = self.spec.flatten
        if how == "view":
            return h.contiguous().view(h.shape[0], -1)
        if how == "reshape":
            return h.reshape(h.shape[0], -1)
        if how == "nn.Flatten":
            return self.flat(h)
        return torch.flatten(h, 1)

    def forward(self, x: Tensor, *others: Tensor) -> Tensor:
        mask = others[0] if self.spec.mask else None
        h = self._trunk(x, mask)
        if self.spec.side:
            side = others[-1]
            s = self.side(side)
            s = self.side_act(s) if self.side_act is not None else FUNCTIONAL[self.spec.side_activation](s)
            h = torch.cat([h, s], dim=1)
        if self.explode == "cumprod":
            h = torch.cumprod(h, dim=1)
        elif self.explode == "nan":
            h = h * float("nan")
        out = self.head(h)
        return out[:, 0] if self.spec.squeeze else out


def _pool_module(spec: NetSpec) -> nn.Module | None:
    if not spec.convolutional or spec.pool in ("none", "avg"):
        return None
    two = spec.front == "conv2d"
    return {
        "avg_module": nn.AvgPool2d(2) if two else nn.AvgPool1d(2),
        "max": nn.MaxPool2d(2) if two else nn.MaxPool1d(2),
        "adaptive": nn.AdaptiveAvgPool2d(1) if two else nn.AdaptiveAvgPool1d(1),
        "adaptive_max": nn.AdaptiveMaxPool2d(1) if two else nn.AdaptiveMaxPool1d(1),
    }[spec.pool]


@dataclass
class Case:
    """A drawn model, inputs, method and arguments of one ``gradattr.attribute`` call, and the model's own
    computations a property compares the call with (scores at given points, the attributed tensors)."""

    spec: NetSpec
    model: FuzzNet
    inputs: Tensor | tuple[Tensor, ...]
    method: str
    layer: str | None = None
    layer_as_module: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    target: Any = None
    baseline: Any = None

    @property
    def input_tuple(self) -> tuple[Tensor, ...]:
        return self.inputs if isinstance(self.inputs, tuple) else (self.inputs,)

    @property
    def batch(self) -> int:
        return self.input_tuple[0].shape[0]

    @property
    def dtype(self) -> torch.dtype:
        return next(p for p in self.model.parameters() if p.is_floating_point()).dtype

    def _layer_argument(self) -> str | nn.Module | None:
        if self.layer is None or not self.layer_as_module:
            return self.layer
        return dict(self.model.named_modules())[self.layer]

    def arguments(self) -> dict[str, Any]:
        """Keyword arguments of ``gradattr.attribute(model, inputs, **arguments)``."""
        arguments: dict[str, Any] = {"method": self.method, "target": self.target, **self.options}
        if uses_baseline(self.method, self.options):
            arguments["baseline"] = self.baseline
        if self.layer is not None:
            arguments["layer"] = self._layer_argument()
        return arguments

    def call(self, inputs: Tensor | tuple[Tensor, ...] | None = None, **overrides: Any) -> Any:
        """``gradattr.attribute`` with the case's arguments, some replaced by ``overrides``."""
        return gradattr.attribute(
            self.model, self.inputs if inputs is None else inputs, **(self.arguments() | overrides)
        )

    def attributed(self) -> tuple[Tensor, ...]:
        """The attributed tensors: the inputs, or the layer's output (Grad-CAM: the inputs)."""
        if self.layer is None or self.method in gradattr.LAYER_METHODS:
            return tuple(x.detach() for x in self.input_tuple)
        seen: list[Tensor] = []
        module = dict(self.model.named_modules())[self.layer]
        handle = module.register_forward_hook(lambda m, a, out: seen.append(out.detach().clone()))
        try:
            with eval_mode(self.model), torch.no_grad():
                self.model(*(x.detach().clone() for x in self.input_tuple))
        finally:
            handle.remove()
        return (seen[0],)

    def baseline_points(self) -> tuple[Tensor, ...]:
        """The baseline of each attributed tensor, at its full shape (B, ...)."""
        attributed = self.attributed()
        items = self.baseline if isinstance(self.baseline, tuple) else (self.baseline,) * len(attributed)
        points = []
        for b, x in zip(items, attributed, strict=True):
            if b is None or isinstance(b, (int, float)):
                points.append(torch.full_like(x, 0.0 if b is None else float(b)))
                continue
            b = torch.as_tensor(b).to(x.dtype)
            per_sample = b.dim() == x.dim() and b.shape[0] == x.shape[0] and x.shape[0] > 1
            points.append(b if per_sample else torch.broadcast_to(b, (1, *x.shape[1:])).expand_as(x).clone())
        return tuple(points)

    def _targets(self) -> Tensor | None:
        """LongTensor(B) of the explained classes, or ``None`` for a model with one output per sample."""
        if self.spec.squeeze:
            return None
        if self.target is None:
            with eval_mode(self.model), torch.no_grad():
                return self.model(*(x.detach().clone() for x in self.input_tuple)).argmax(1)
        target = torch.as_tensor(self.target if not isinstance(self.target, tuple) else list(self.target))
        return target.reshape(-1).expand(self.batch).long() if target.dim() == 0 else target.long()

    def scores(self, points: tuple[Tensor, ...], copies: int = 1) -> Tensor:
        """S_c at ``points`` (attributed tensors with ``copies`` x B rows), differentiable, in eval mode."""
        targets = self._targets()
        if self.layer is None or self.method in gradattr.LAYER_METHODS:
            inputs, hook = points, None
        else:
            inputs = tuple(x.detach().repeat(copies, *[1] * (x.dim() - 1)) for x in self.input_tuple)
            module = dict(self.model.named_modules())[self.layer]
            hook = module.register_forward_hook(lambda m, a, out: points[0].clone())
        try:
            with eval_mode(self.model):
                output = self.model(*inputs)
        finally:
            if hook is not None:
                hook.remove()
        if targets is None:
            return output.reshape(-1)
        return output.gather(1, targets.repeat(copies).unsqueeze(1)).squeeze(1)


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """``model`` in eval mode, with its modules' flags restored afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


# -- strategies ---------------------------------------------------------------------------------------------------

seeds = st.integers(0, 2**31 - 1)


@st.composite
def block_specs(draw: st.DrawFn, front: str, activations: tuple[str, ...] = ACTIVATIONS) -> BlockSpec:
    return BlockSpec(
        activation=draw(st.sampled_from(activations)),
        norm=draw(st.booleans()) if front not in ("sequence", "embedding") else False,
        scale=draw(st.sampled_from(SCALES)),
        residual=draw(st.sampled_from(("none", "pre", "post"))),
        dropout=draw(st.booleans()),
        split=draw(st.booleans()) if front == "dense" else False,
        modern=draw(st.sampled_from(MODERN)),
    )


@st.composite
def net_specs(
    draw: st.DrawFn,
    fronts: tuple[str, ...] = FRONTS,
    rnn: bool = True,
    routing: bool = True,
    side: bool = True,
    activations: tuple[str, ...] = ACTIVATIONS,
) -> NetSpec:
    """A random tiny architecture. ``rnn``/``routing``: allow LSTM/GRU layers and max pooling;
    ``activations``: the ones the blocks and the side branch may use."""
    front = draw(st.sampled_from(fronts))
    if front == "dense":
        shape: tuple[int, ...] = (draw(st.integers(1, 6)),)
    elif front == "sequence":
        shape = (draw(st.integers(1, 4)), draw(st.integers(1, 3)))
    elif front == "conv1d":
        shape = (draw(st.integers(1, 2)), draw(st.integers(2, 6)))
    elif front == "conv2d":
        shape = (draw(st.integers(1, 2)), draw(st.integers(2, 4)), draw(st.integers(2, 4)))
    else:
        shape = (draw(st.integers(1, 4)),)
    pools = CONV_POOLS if front in ("conv1d", "conv2d") else SEQUENCE_POOLS if front != "dense" else ("none",)
    if not routing:
        pools = tuple(p for p in pools if p not in ROUTING_POOLS)
    recurrent = None
    if rnn and front in ("sequence", "embedding"):
        recurrent = draw(st.sampled_from((None, None, "lstm", "gru")))
    classes = draw(st.integers(1, 4))
    return NetSpec(
        front=front,
        shape=shape,
        width=draw(st.integers(2, 4)),
        blocks=tuple(draw(st.lists(block_specs(front, activations), min_size=1, max_size=3))),
        pool=draw(st.sampled_from(pools)),
        flatten=draw(st.sampled_from(FLATTENS)),
        rnn=recurrent,
        rnn_layers=draw(st.integers(1, 2)) if recurrent else 1,
        bidirectional=draw(st.booleans()) if recurrent else False,
        pre_activation=None
        if front == "embedding"
        else draw(st.none() | st.sampled_from([a for a in OUT_OF_PLACE if a in activations])),
        side=draw(st.integers(0, 3)) if side else 0,
        mask=draw(st.sampled_from((None, "bool", "float"))) if front == "embedding" else None,
        side_activation=draw(st.sampled_from(activations)),
        classes=classes,
        squeeze=draw(st.booleans()) if classes == 1 else False,
        vocab=draw(st.integers(2, 9)),
        seed=draw(seeds),
        gain=draw(st.sampled_from((0.7, 1.5, 2.5))),
    )


def make_inputs(spec: NetSpec, batch: int, dtype: torch.dtype, seed: int, scale: float) -> Tensor | tuple[Tensor, ...]:
    """Inputs for ``spec``: normal noise times ``scale`` (token ids for an embedding front), and the side
    input when there is one (then a tuple)."""
    generator = torch.Generator().manual_seed(seed)
    if spec.front == "embedding":
        x = torch.randint(0, spec.vocab, (batch, *spec.shape), generator=generator)
    else:
        x = torch.randn((batch, *spec.shape), generator=generator, dtype=dtype) * scale
    inputs = [x]
    if spec.mask == "bool":
        inputs.append(torch.rand((batch, *spec.shape), generator=generator) < 0.7)
    elif spec.mask == "float":
        inputs.append(torch.rand((batch, *spec.shape), generator=generator, dtype=dtype))
    if spec.side:
        inputs.append(torch.randn((batch, spec.side), generator=generator, dtype=dtype) * scale)
    return tuple(inputs) if len(inputs) > 1 else x


REFERENCE_METHODS: frozenset[str] = frozenset({"gradient_shap", "expected_gradients", "deeplift_shap"})
"""Methods whose baseline is a distribution of references (the fuzz gives them None: one zero reference)."""
WRAPPABLE: tuple[str, ...] = tuple(
    m for m in gradattr.METHODS if m not in (*gradattr.LAYER_METHODS, *REFERENCE_METHODS, "smoothgrad")
)
BASELINE_METHODS: frozenset[str] = frozenset({"integrated_gradients", "deeplift", "shapley_sampling"})


def uses_baseline(method: str, options: dict[str, Any]) -> bool:
    if method == "smoothgrad":
        return options.get("base", "saliency") in BASELINE_METHODS
    return method in BASELINE_METHODS


@st.composite
def _window(draw: st.DrawFn, shape: tuple[int, ...]) -> int | tuple[int, ...]:
    """An occlusion window or stride that fits ``shape`` (an int for every dimension, or trailing sizes)."""
    if draw(st.booleans()):
        return draw(st.integers(1, min(shape)))
    trailing = draw(st.integers(1, len(shape)))
    return tuple(draw(st.integers(1, s)) for s in shape[len(shape) - trailing :])


@st.composite
def _feature_groups(draw: st.DrawFn, shape: tuple[int, ...]) -> Tensor | None:
    """None, patches, or a random partition of the features into groups 0..G-1 (no gaps)."""
    kind = draw(st.sampled_from(("none", "patches", "random")))
    if kind == "none":
        return None
    if kind == "patches":
        return gradattr.patches(shape, draw(st.integers(1, max(shape))))
    n = math.prod(shape)
    groups = draw(st.integers(1, n))
    assignment = draw(st.lists(st.integers(0, groups - 1), min_size=n, max_size=n))
    ids = torch.tensor(assignment)
    _, dense = torch.unique(ids, return_inverse=True)  # relabel to 0..G'-1 without gaps
    return dense.reshape(shape)


@st.composite
def method_options(
    draw: st.DrawFn, method: str, shapes: tuple[tuple[int, ...], ...], spec: NetSpec, ig_steps: tuple[int, int]
) -> dict[str, Any]:
    """Valid options for ``method`` on attributed tensors of feature ``shapes``; every option is drawn or
    left out (its default)."""
    options: dict[str, Any] = {}

    def maybe(name: str, strategy: st.SearchStrategy[Any]) -> None:
        if draw(st.booleans()):
            options[name] = draw(strategy)

    batch_sizes = st.integers(1, 40)
    if method == "saliency":
        maybe("abs", st.booleans())
    elif method == "integrated_gradients":
        options["steps"] = draw(st.integers(*ig_steps))
        maybe("batch_size", batch_sizes)
    elif method == "epsilon_lrp":
        maybe("epsilon", st.sampled_from((1e-6, 1e-4, 1e-2, 0.5, 1)))
        if spec.rnn is not None:
            maybe("gates", st.sampled_from(gradattr.engine.GATE_PRODUCTS))
        maybe("strict", st.just(True))
    elif method == "deeplift":
        maybe("strict", st.just(True))
    elif method == "occlusion":
        if len(shapes) == 1:
            maybe("window", _window(shapes[0]))
            maybe("stride", _window(shapes[0]))
        else:
            options["window"] = [draw(_window(s)) for s in shapes]
            options["stride"] = [draw(_window(s)) for s in shapes]
        maybe("value", st.sampled_from((0.0, -1.0, 0.5, 2)))
        maybe("batch_size", batch_sizes)
    elif method == "shapley_sampling":
        maybe("samples", st.integers(1, 3))
        maybe("seed", seeds)
        maybe("batch_size", batch_sizes)
        if len(shapes) == 1:
            maybe("feature_groups", _feature_groups(shapes[0]))
        else:
            maybe("feature_groups", st.tuples(*(_feature_groups(s) for s in shapes)))
    elif method == "smoothgrad":
        base = draw(st.sampled_from(WRAPPABLE))
        options["base"] = base
        options["samples"] = draw(st.integers(1, 3))
        maybe("sigma", st.sampled_from((0.0, 0.05, 0.3, 1)))
        maybe("variant", st.sampled_from(("smoothgrad", "smoothgrad_sq", "vargrad")))
        maybe("seed", seeds)
        maybe("batch_size", batch_sizes)
        options.update(draw(method_options(base, shapes, spec, (1, 4))))  # shared names go to smoothgrad
    elif method in gradattr.LAYER_METHODS:
        maybe("interpolation", st.sampled_from(("linear", "nearest", "area")))
        if method == "gradcam":
            maybe("relu", st.booleans())
    return options


def _targets(batch: int, width: int, squeeze: bool) -> st.SearchStrategy[Any]:
    if squeeze:
        return st.sampled_from((None, 0))
    index = st.integers(0, width - 1)
    per_sample = st.lists(index, min_size=batch, max_size=batch)
    return st.one_of(
        st.none(),
        index,
        per_sample,
        per_sample.map(tuple),
        per_sample.map(lambda t: torch.tensor(t, dtype=torch.long)),
        index.map(lambda t: torch.tensor(t, dtype=torch.long)),  # a 0-dim LongTensor
    )


@st.composite
def _one_baseline(draw: st.DrawFn, x: Tensor, per_sample: bool = True) -> Any:
    """None, a number, or a tensor broadcastable to ``x`` (shared row, no batch dim, trailing dims only,
    per sample), with values from a drawn seed."""
    kinds = ["none", "float", "int", "row", "features", "trailing"] + (["per_sample"] if per_sample else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "none":
        return None
    if kind == "float":
        return draw(st.sampled_from((0.25, -0.5, 1.0)))
    if kind == "int":
        return draw(st.sampled_from((0, 1, -1)))
    generator = torch.Generator().manual_seed(draw(seeds))
    shape = {
        "row": (1, *x.shape[1:]),
        "features": tuple(x.shape[1:]),
        "trailing": (1,) * (x.dim() - 2) + tuple(x.shape[-1:]) if x.dim() > 1 else (1,),
        "per_sample": tuple(x.shape),
    }[kind]
    return torch.randn(shape, generator=generator, dtype=x.dtype) * draw(st.sampled_from((0.1, 1.0)))


@st.composite
def cases(
    draw: st.DrawFn,
    methods: tuple[str, ...] = gradattr.METHODS,
    dtypes: tuple[torch.dtype, ...] = (torch.float32, torch.float64),
    nets: st.SearchStrategy[NetSpec] | None = None,
    max_batch: int = 5,
    ig_steps: tuple[int, int] = (1, 8),
    layers: bool = True,
) -> Case:
    """A model from ``nets`` (default: any :func:`net_specs`), inputs, a method from ``methods`` and valid
    random arguments for it. ``layers``: attribute a random intermediate layer sometimes (the embedding is
    always attributed for token inputs)."""
    spec = draw(nets if nets is not None else net_specs())
    method = draw(st.sampled_from(methods))
    if method in gradattr.LAYER_METHODS and not spec.convolutional:
        spec = replace(draw(net_specs(fronts=("conv1d", "conv2d"))), side=0)
    if method in gradattr.LAYER_METHODS:
        spec = replace(spec, side=0)  # Grad-CAM upsamples to the input: one input
    dtype = draw(st.sampled_from(dtypes))
    model = FuzzNet(spec).to(dtype)
    batch = draw(st.integers(1, max_batch))
    inputs = make_inputs(spec, batch, dtype, draw(seeds), draw(st.sampled_from((0.3, 1.0, 3.0))))
    layer = _draw_layer(draw, spec, model, method, layers)
    case = Case(spec, model, inputs, method, layer=layer, layer_as_module=layer is not None and draw(st.booleans()))
    attributed = case.attributed()
    case.options = draw(method_options(method, tuple(tuple(x.shape[1:]) for x in attributed), spec, ig_steps))
    case.target = draw(_targets(batch, spec.output_width, spec.squeeze))
    if uses_baseline(method, case.options):
        if len(attributed) == 1:
            case.baseline = draw(_one_baseline(attributed[0]))
        else:
            case.baseline = draw(
                st.one_of(st.sampled_from((None, 0.5)), st.tuples(*(_one_baseline(x) for x in attributed)).map(tuple))
            )
    if layer is None and draw(st.booleans()):
        case.inputs = _with_ties(case, draw(st.sampled_from((0.3, 1.0))))
    layout = draw(st.sampled_from(LAYOUTS))
    laid_out = tuple(with_layout(x, layout) for x in case.input_tuple)
    case.inputs = laid_out if isinstance(case.inputs, tuple) else laid_out[0]
    return case


LAYOUTS: tuple[str, ...] = ("contiguous", "noncontiguous", "expanded", "channels_last", "requires_grad", "non_leaf")
"""How an input tensor is laid out or tracked: strides (transposed, stride 0 over the batch, channels-last)
and autograd state (a leaf requiring grad, the output of a computation)."""


def with_layout(x: Tensor, layout: str) -> Tensor:
    """``x`` in ``layout``; the values are ``x``'s except for ``"expanded"`` (every row is row 0)."""
    if layout == "noncontiguous" and x.dim() > 1:
        return x.transpose(0, -1).contiguous().transpose(0, -1)
    if layout == "expanded":
        return x[:1].expand_as(x)
    if layout == "channels_last" and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    if not x.is_floating_point():
        return x
    if layout == "requires_grad":
        return x.detach().clone().requires_grad_()
    if layout == "non_leaf":
        return x.detach().clone().requires_grad_() * 1.0
    return x


def _draw_layer(draw: st.DrawFn, spec: NetSpec, model: FuzzNet, method: str, layers: bool) -> str | None:
    """The ``layer=`` argument: the embedding for token inputs, a convolutional layer for Grad-CAM, and
    sometimes (``layers``) a random layer that runs once and returns one tensor."""
    if spec.front == "embedding" and method not in gradattr.LAYER_METHODS:
        return "embedding"
    if method in gradattr.LAYER_METHODS:
        candidates = [n for n in _once_layers(spec, model) if n == "stem" or n.startswith("blocks.")]
        return draw(st.sampled_from(candidates))
    if not layers or draw(st.integers(0, 3)) != 0:
        return None
    return draw(st.sampled_from(_once_layers(spec, model)))


def _once_layers(spec: NetSpec, model: FuzzNet) -> list[str]:
    """Layers that run once per forward pass and return a single tensor (no reused modules, no RNN)."""
    reused = {id(m) for name, m in model.named_modules() if name.startswith("blocks.") and _is_shared(model, m)}
    names = []
    for name, module in model.named_modules():
        if (
            not name
            or name.startswith(("rnn", "side", "embedding", "flat"))
            or name == "blocks"
            or id(module) in reused
        ):
            continue
        if isinstance(module, nn.Dropout):
            continue
        names.append(name)
    return names


def _is_shared(model: FuzzNet, module: nn.Module) -> bool:
    return sum(1 for m in model.modules(remove_duplicate=False) if m is module) > 1 or (
        getattr(model, "side_act", None) is module
    )


def _with_ties(case: Case, fraction: float) -> Tensor | tuple[Tensor, ...]:
    """Inputs with some features set exactly to the baseline (x_i = x̄_i), seeded by the case's inputs."""
    baselines = case.baseline_points()
    tied = []
    for x, b in zip(case.input_tuple, baselines, strict=True):
        generator = torch.Generator().manual_seed(int(x.numel()))
        mask = torch.rand(x.shape, generator=generator) < fraction
        tied.append(torch.where(mask, b, x))
    return tuple(tied) if isinstance(case.inputs, tuple) else tied[0]
