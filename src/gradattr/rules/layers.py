"""Rules at linear ops (linear, conv, conv-transpose, average pooling, products with one input-dependent
factor): LRP's layer rules (Montavon et al., "Layer-Wise Relevance Propagation: An Overview", 2019).

For ``z_k = Σ_j a_j w_jk + b_k`` with upper relevance ``R_k`` a rule says how ``R_k`` is shared among the
inputs ``a_j``. The engine runs in gradient×input form: the relevance of a tensor ``t`` is ``t ⊙ g_t``, so
``R_k = z_k g_k`` and a rule maps the output's gradient ``g_z`` to the input's ``g_a = R_a / a``. Rules whose
``R_a`` is proportional to ``a`` (ε, z⁺, αβ, γ) fit that form exactly. Rules whose relevance is not
(flat, w², the box part of zB: relevance on inputs that are 0) are for the first layer only: they hand
``R_a`` itself to the input's relevance probe (:mod:`gradattr.engine.interception`), and the method adds it
to ``x ⊙ g_x``.

With ``s = R / stab(d)`` for the rule's denominator ``d`` (``stab(d) = d + ε·sign d``, sign(0) := +1: Zennit's
stabiliser) and ``Wᵀ s`` the input-gradient of the op (its vector-Jacobian product with weights ``W``):

* :class:`EpsilonLayer` ε:  ``R_a = a ⊙ Wᵀ s``, ``d = z`` (Bach et al. 2015);
* :class:`ZPlus` z⁺:  ``R_a = a⁺ ⊙ W⁺ᵀ s + a⁻ ⊙ W⁻ᵀ s``, ``d = W⁺a⁺ + b⁺ + W⁻a⁻`` (Montavon et al. 2017; Zennit
  ``ZPlus``: the positive contributions of negative inputs too);
* :class:`AlphaBeta` αβ (α − β = 1):  ``α (a⁺ ⊙ W⁺ᵀ s₊ + a⁻ ⊙ W⁻ᵀ s₊) − β (a⁺ ⊙ W⁻ᵀ s₋ + a⁻ ⊙ W⁺ᵀ s₋)`` with
  ``d₊ = W⁺a⁺ + b⁺ + W⁻a⁻`` and ``d₋ = W⁻a⁺ + b⁻ + W⁺a⁻`` (Bach et al. 2015);
* :class:`Gamma` γ:  z⁺'s form with ``W + γW⁺`` (and ``W + γW⁻`` for negative inputs) where ``z > 0``, and the
  mirror image where ``z < 0`` (Montavon et al. 2019; Andéol et al. 2021; Zennit ``Gamma``);
* :class:`Flat`:  ``R_a = 1ᵀ s``, ``d = Σ_j 1`` (Lapuschkin et al. 2019); :class:`WSquare` w²: ``R_a = (W²)ᵀ s``,
  ``d = W² 1 + b²`` (Montavon et al. 2017);
* :class:`ZBox` zB with bounds ``l ≤ a ≤ h``:  ``R_a = a ⊙ Wᵀ s − l ⊙ W⁺ᵀ s − h ⊙ W⁻ᵀ s``,
  ``d = z − (W⁺l + b⁺) − (W⁻h + b⁻)`` (Montavon et al. 2017).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

import torch
from torch import Tensor
from torch.nn import grad as conv_grad

LayerKind = Literal["linear", "conv", "conv_transpose", "pooling", "product"]
"""What a linear op is: ``F.linear``; a convolution; a transposed convolution; average pooling (a linear op
without parameters); ``matmul``/``einsum``/... with one input-dependent factor (the other is the weight)."""

_CONV_INPUT_GRADIENTS = {1: conv_grad.conv1d_input, 2: conv_grad.conv2d_input, 3: conv_grad.conv3d_input}


@dataclass(frozen=True, eq=False)
class LayerCall:
    """One call ``z = op(a; W, b)`` of a linear op as the engine saw it.

    ``evaluate(a, W, b)`` runs the op again with another input and parameters (the call's other arguments
    kept); ``conv``: ``(stride, padding, dilation, groups)`` of a convolution, for its input-gradient.
    """

    kind: LayerKind
    evaluate: Callable[[Tensor, Tensor | None, Tensor | None], Tensor]
    weight: Tensor | None = None
    bias: Tensor | None = None
    conv: tuple[Any, Any, Any, int] | None = None

    def forward(self, a: Tensor, weight: Tensor | None = None, bias: Tensor | None = None) -> Tensor:
        """``op(a; weight, bias)``, without a gradient."""
        with torch.no_grad():
            return self.evaluate(a, weight, bias)

    def input_gradient(self, a: Tensor, weight: Tensor | None, grad: Tensor) -> Tensor:
        """``Wᵀ grad``: the op's vector-Jacobian product for its input, with weights ``weight``. The op is
        linear in ``a``, so only ``a``'s shape matters."""
        if self.kind == "linear" and weight is not None:
            return grad @ weight
        if self.kind == "conv" and weight is not None and self.conv is not None and not isinstance(self.conv[1], str):
            stride, padding, dilation, groups = self.conv
            backward = _CONV_INPUT_GRADIENTS[weight.dim() - 2]
            return backward(a.shape, weight, grad, stride, padding, dilation, groups)
        with torch.enable_grad():
            leaf = a.detach().requires_grad_()
            (gradient,) = torch.autograd.grad(self.evaluate(leaf, weight, None), leaf, grad)
        return gradient

    def parameters_modified(
        self, modify: Callable[[Tensor], Tensor], bias: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        """``(modify(W), modify(b) or None)``; ``bias=False``: no bias (Zennit's ``zero_bias``)."""
        if self.weight is None:
            raise ValueError(f"this rule modifies the weights, but a {self.kind} op has none")
        return modify(self.weight), modify(self.bias) if bias and self.bias is not None else None


Backward = tuple[Tensor | None, Tensor | None]
"""A rule's backward: ``(g_a, R_a)``, the input's gradient (relevance ``a ⊙ g_a``) and relevance handed to
the input's probe directly (rules not proportional to ``a``); either may be ``None``."""


class LayerRule(Protocol):
    """A rule at linear ops. ``kinds``: the op kinds it applies to as a rule set's layer rule or a module's
    override (others keep the plain gradient; a composite chooses by kind itself); ``direct``: it hands
    relevance to the input's probe (first layer only)."""

    needs_reference: bool
    kinds: frozenset[str]
    direct: bool

    def backward(self, call: LayerCall, a: Tensor, z: Tensor, relevance: Tensor) -> Backward:
        """``(g_a, R_a)`` from the output's relevance ``relevance = z ⊙ g_z``."""
        ...


WEIGHTED: frozenset[str] = frozenset({"linear", "conv", "conv_transpose", "product"})


def stabilise(d: Tensor, epsilon: float) -> Tensor:
    """``d + ε·sign(d)`` with sign(0) := +1 (Zennit's ``stabilize``), in ``d``'s precision."""
    return torch.where(d >= 0, d + epsilon, d - epsilon)


def _positive(t: Tensor) -> Tensor:
    return t.clamp(min=0)


def _negative(t: Tensor) -> Tensor:
    return t.clamp(max=0)


@dataclass(frozen=True)
class _Signed:
    """A layer's input split by sign, ``a = a⁺ + a⁻``; ``negative`` is ``None`` when no input is negative (after
    a ReLU), which saves the a⁻ terms."""

    a: Tensor
    positive: Tensor
    negative: Tensor | None

    @classmethod
    def of(cls, a: Tensor) -> _Signed:
        if bool((a < 0).any()):
            return cls(a, _positive(a), _negative(a))
        return cls(a, a, None)

    def forward(self, call: LayerCall, w_pos: Tensor, b_pos: Tensor | None, w_neg: Tensor) -> Tensor:
        """``w_pos a⁺ + b_pos + w_neg a⁻``."""
        d = call.forward(self.positive, w_pos, b_pos)
        return d if self.negative is None else d + call.forward(self.negative, w_neg, None)

    def input_gradient(self, call: LayerCall, w_pos: Tensor, w_neg: Tensor, s: Tensor) -> Tensor:
        """``g_a`` of ``a⁺ ⊙ w_posᵀ s + a⁻ ⊙ w_negᵀ s``: ``w_posᵀ s`` where ``a > 0``, ``w_negᵀ s`` where ``a < 0``,
        0 where ``a = 0`` (no relevance there, none passed on)."""
        grad = call.input_gradient(self.a, w_pos, s)
        if self.negative is None:
            return grad.masked_fill_(self.a == 0, 0.0)
        negative = call.input_gradient(self.a, w_neg, s).masked_fill_(self.a == 0, 0.0)
        return torch.where(self.a > 0, grad, negative)


@dataclass(frozen=True)
class EpsilonLayer:
    """ε-LRP at a layer (Bach et al. 2015): ``R_j = Σ_k a_j w_jk / (z_k + ε·sign z_k) · R_k``, i.e.
    ``g_a = Wᵀ (R / stab(z))``. At average pooling with ε = 10⁻⁶ it is Zennit's ``Norm``."""

    epsilon: float = 1e-4
    needs_reference: ClassVar[bool] = False
    kinds: ClassVar[frozenset[str]] = WEIGHTED
    direct: ClassVar[bool] = False

    def backward(self, call: LayerCall, a: Tensor, z: Tensor, relevance: Tensor) -> Backward:
        return call.input_gradient(a, call.weight, relevance.div_(stabilise(z, self.epsilon))), None


@dataclass(frozen=True)
class ZPlus:
    """z⁺ (Montavon et al. 2017; Zennit ``ZPlus``): ``R_j = Σ_k (a⁺_j w⁺_jk + a⁻_j w⁻_jk) / d_k · R_k`` with
    ``d = W⁺a⁺ + b⁺ + W⁻a⁻``: only positive contributions ``a_j w_jk > 0`` share the relevance."""

    stabilizer: float = 1e-6
    needs_reference: ClassVar[bool] = False
    kinds: ClassVar[frozenset[str]] = WEIGHTED
    direct: ClassVar[bool] = False

    def backward(self, call: LayerCall, a: Tensor, z: Tensor, relevance: Tensor) -> Backward:
        signed = _Signed.of(a)
        w_pos, b_pos = call.parameters_modified(_positive)
        w_neg, _ = call.parameters_modified(_negative, bias=False)
        s = relevance.div_(stabilise(signed.forward(call, w_pos, b_pos, w_neg), self.stabilizer))
        return signed.input_gradient(call, w_pos, w_neg, s), None


@dataclass(frozen=True)
class AlphaBeta:
    """αβ (Bach et al. 2015; Zennit ``AlphaBeta``), α − β = 1: positive contributions get α times their share
    of the positive part ``d₊ = W⁺a⁺ + b⁺ + W⁻a⁻``, negative ones −β times theirs of ``d₋ = W⁻a⁺ + b⁻ + W⁺a⁻``:
    ``R_j = Σ_k [α (a_j w_jk)⁺ / d₊_k − β (a_j w_jk)⁻ / d₋_k] · R_k``."""

    alpha: float = 2.0
    beta: float = 1.0
    stabilizer: float = 1e-6
    needs_reference: ClassVar[bool] = False
    kinds: ClassVar[frozenset[str]] = WEIGHTED
    direct: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if self.alpha < 0 or self.beta < 0 or abs(self.alpha - self.beta - 1) > 1e-12:
            raise ValueError(f"alpha and beta must be >= 0 with alpha - beta = 1, got {self.alpha}, {self.beta}")

    def backward(self, call: LayerCall, a: Tensor, z: Tensor, relevance: Tensor) -> Backward:
        signed = _Signed.of(a)
        w_pos, b_pos = call.parameters_modified(_positive)
        w_neg, b_neg = call.parameters_modified(_negative)
        s_pos = relevance / stabilise(signed.forward(call, w_pos, b_pos, w_neg), self.stabilizer)
        grad = signed.input_gradient(call, w_pos, w_neg, s_pos.mul_(self.alpha))
        if self.beta:
            s_neg = relevance.div_(stabilise(signed.forward(call, w_neg, b_neg, w_pos), self.stabilizer))
            grad = grad - signed.input_gradient(call, w_neg, w_pos, s_neg.mul_(self.beta))
        return grad, None


@dataclass(frozen=True)
class Gamma:
    """γ (Montavon et al. 2019; generalised to negative inputs as Zennit's ``Gamma``, Andéol et al. 2021).
    Where ``z_k > 0``: z⁺'s form with weights ``W + γW⁺`` on positive and ``W + γW⁻`` on negative inputs
    (``d = (W + γW⁺)a⁺ + b + γb⁺ + (W + γW⁻)a⁻``); where ``z_k < 0`` the mirror image (``W + γW⁻`` on positive,
    ``W + γW⁺`` on negative inputs, bias ``b + γb⁻``); nothing where ``z_k = 0``.

    After a ReLU (``a ≥ 0``) one convolution does: with ``d⁺ = W⁺a + b⁺`` the denominators are ``z + γd⁺``
    (``z > 0``) and ``z + γ(z − d⁺)`` (``z < 0``, as ``W⁻a + b⁻ = z − d⁺``), neither a difference of like
    signs, and the gradient is ``Wᵀ(s₊ + (1 + γ)s₋) + γW⁺ᵀ(s₊ − s₋)``."""

    gamma: float = 0.25
    stabilizer: float = 1e-6
    needs_reference: ClassVar[bool] = False
    kinds: ClassVar[frozenset[str]] = WEIGHTED
    direct: ClassVar[bool] = False

    def backward(self, call: LayerCall, a: Tensor, z: Tensor, relevance: Tensor) -> Backward:
        gamma, signed = self.gamma, _Signed.of(a)
        if signed.negative is None:
            return self._non_negative_inputs(call, a, z, relevance), None
        w_up, b_up = call.parameters_modified(lambda t: t + gamma * _positive(t))
        w_down, b_down = call.parameters_modified(lambda t: t + gamma * _negative(t))
        grad = torch.zeros_like(a)
        for mask, (w_a_pos, b), w_a_neg in (
            (z > 0, (w_up, b_up), w_down),
            (z < 0, (w_down, b_down), w_up),
        ):
            if bool(mask.any()):
                s = (relevance / stabilise(signed.forward(call, w_a_pos, b, w_a_neg), self.stabilizer)).mul_(mask)
                grad = grad + signed.input_gradient(call, w_a_pos, w_a_neg, s)
        return grad, None

    def _non_negative_inputs(self, call: LayerCall, a: Tensor, z: Tensor, relevance: Tensor) -> Tensor:
        gamma = self.gamma
        w_pos, b_pos = call.parameters_modified(_positive)
        d_pos = call.forward(a, w_pos, b_pos)
        up = relevance / stabilise(z + gamma * d_pos, self.stabilizer)
        down = relevance.div_(stabilise((1 + gamma) * z - gamma * d_pos, self.stabilizer))
        up.mul_(z > 0)
        down.mul_(z < 0)
        grad = call.input_gradient(a, call.weight, up + (1 + gamma) * down)
        grad += call.input_gradient(a, w_pos, up.sub_(down).mul_(gamma))
        return grad.masked_fill_(a == 0, 0.0)


@dataclass(frozen=True)
class Flat:
    """Flat (Lapuschkin et al. 2019; Zennit ``Flat``): every input in a unit's receptive field gets an equal
    share, ``R_j = Σ_k 1 / Σ_j' 1 · R_k`` — independent of the input's value (first layer only)."""

    stabilizer: float = 1e-6
    needs_reference: ClassVar[bool] = False
    kinds: ClassVar[frozenset[str]] = WEIGHTED
    direct: ClassVar[bool] = True

    def backward(self, call: LayerCall, a: Tensor, z: Tensor, relevance: Tensor) -> Backward:
        ones, _ = call.parameters_modified(torch.ones_like, bias=False)
        s = relevance / stabilise(call.forward(torch.ones_like(a), ones, None), self.stabilizer)
        return None, call.input_gradient(a, ones, s)


@dataclass(frozen=True)
class WSquare:
    """w² (Montavon et al. 2017; Zennit ``WSquare``): ``R_j = Σ_k w²_jk / (Σ_j' w²_j'k + b²_k) · R_k``, for
    unbounded real-valued inputs (first layer only)."""

    stabilizer: float = 1e-6
    needs_reference: ClassVar[bool] = False
    kinds: ClassVar[frozenset[str]] = WEIGHTED
    direct: ClassVar[bool] = True

    def backward(self, call: LayerCall, a: Tensor, z: Tensor, relevance: Tensor) -> Backward:
        squared, b_squared = call.parameters_modified(torch.square)
        s = relevance / stabilise(call.forward(torch.ones_like(a), squared, b_squared), self.stabilizer)
        return None, call.input_gradient(a, squared, s)


@dataclass(frozen=True)
class ZBox:
    """zB (Montavon et al. 2017; Zennit ``ZBox``) for inputs bounded by ``low ≤ a ≤ high`` (numbers or tensors
    that broadcast against one sample, e.g. per channel (1, C, 1, 1)):
    ``R_j = Σ_k (a_j w_jk − l_j w⁺_jk − h_j w⁻_jk) / Σ_j' (…) · R_k`` (first layer only)."""

    low: float | Tensor
    high: float | Tensor
    stabilizer: float = 1e-6
    needs_reference: ClassVar[bool] = False
    kinds: ClassVar[frozenset[str]] = WEIGHTED
    direct: ClassVar[bool] = True

    def backward(self, call: LayerCall, a: Tensor, z: Tensor, relevance: Tensor) -> Backward:
        low, high = (
            torch.as_tensor(bound, dtype=a.dtype, device=a.device).expand_as(a) for bound in (self.low, self.high)
        )
        w_pos, b_pos = call.parameters_modified(_positive)
        w_neg, b_neg = call.parameters_modified(_negative)
        d = call.forward(a, call.weight, call.bias) - call.forward(low, w_pos, b_pos) - call.forward(high, w_neg, b_neg)
        s = relevance / stabilise(d, self.stabilizer)
        r = a * call.input_gradient(a, call.weight, s)
        r = r - low * call.input_gradient(a, w_pos, s) - high * call.input_gradient(a, w_neg, s)
        return None, r


class _LayerRuleFunction(torch.autograd.Function):
    """``z = op(a)`` forward (or the given value of it); the rule's ``(g_a, R_a)`` backward, ``R_a`` into the
    input's probe."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, rule: LayerRule, call: LayerCall, a: Tensor, probe: Tensor | None, value: Tensor | None
    ) -> Tensor:
        z = call.evaluate(a, call.weight, call.bias) if value is None else value.clone()  # an output of its own
        ctx.rule, ctx.call = rule, call
        ctx.save_for_backward(a, z.clone())  # a copy: the model may write to its output in place (relu_)
        return z

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        a, z = ctx.saved_tensors
        grad_a, direct = ctx.rule.backward(ctx.call, a, z, z * grad)
        return None, None, grad_a, direct, None


def apply_layer_rule(
    rule: LayerRule, call: LayerCall, a: Tensor, probe: Tensor | None, value: Tensor | None = None
) -> Tensor:
    """``op(a)`` whose backward is ``rule``'s; a direct rule's relevance goes to ``probe``. ``value``: the op's
    output when it is already known (a batch norm folded into the layer: the norm of the layer's output)."""
    return _LayerRuleFunction.apply(rule, call, a, probe if rule.direct else None, value)


class _PassRelevance(torch.autograd.Function):
    """``y = f(x)`` forward; ``g_x = g_y ⊙ y / x`` backward (0 where ``x = 0``)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, f: Callable[[Tensor], Tensor]) -> Tensor:  # type: ignore[override]
        y = f(x)
        zero = x == 0
        ctx.save_for_backward(torch.where(zero, 0.0, y / torch.where(zero, 1.0, x)).to(y.dtype))
        return y

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (ratio,) = ctx.saved_tensors
        return grad * ratio, None


def pass_relevance(x: Tensor, f: Callable[[Tensor], Tensor]) -> Tensor:
    """``f(x)`` for an elementwise ``f`` (a batch norm that folds into no layer) with LRP's pass rule (Zennit
    ``Pass``): the output's relevance ``y ⊙ g_y`` goes unchanged to ``x``, ``g_x = g_y ⊙ y / x``. In
    gradient×input form an input of value 0 cannot hold relevance: there it is lost."""
    return _PassRelevance.apply(x, f)
