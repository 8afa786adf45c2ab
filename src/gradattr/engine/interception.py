"""Op-level interception: a ``TorchFunctionMode`` that sees every torch call of a forward pass.

Each call of an elementwise nonlinearity whose input depends on the attributed tensor is wrapped in
:class:`_RuleFunction`, an autograd Function that computes ``f(z)`` as usual and applies the rule in its
backward. Because this happens per *call*, a module reused three times, ``F.relu``, ``torch.tanh`` and
``x.relu_()`` all get the rule, and the user's model is never edited.

A fused recurrent kernel (``nn.LSTM``, ``nn.GRU``, ``nn.RNN``) or cell op is evaluated as its unrolled
computation (:mod:`gradattr.engine.recurrent`), whose gate nonlinearities go through
:meth:`_InterceptingMode.apply_nonlinearity` like any intercepted call.

Input dependence is ``requires_grad``: while the engine runs, the model's parameters do not require
gradients (see :mod:`gradattr.engine.hygiene`), so only tensors computed from the attributed ones do.

DeepLIFT's reference activations (Ancona et al., Sec. 3, Eq. 9) come from a :class:`RecordingMode` pass over
the baseline: the ``k``-th intercepted call records its input ``z_ref``; the ``k``-th call of the
:class:`RuleMode` pass over the inputs uses it.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode, resolve_name

from gradattr.engine import ops
from gradattr.engine.recurrent import CellOps, GateProducts, packed_batch_sizes
from gradattr.rules import Nonlinearity, Rule


class UnsupportedOperationError(RuntimeError):
    """An op the engine cannot give a correct modified gradient for met an input-dependent tensor."""


class ReferenceMismatchError(RuntimeError):
    """The baseline pass and the input pass took different paths through the model."""


@dataclass(frozen=True)
class Reference:
    """The baseline's input ``z_ref`` to the ``k``-th intercepted nonlinearity call, and that op's name; or,
    for a recurrent kernel on a packed sequence, its ``batch_sizes`` (the layout the references belong to)."""

    name: str
    z: Tensor


class _RuleFunction(torch.autograd.Function):
    """``out = f(z)`` forward; ``rule.backward`` in place of ``f'(z)`` backward."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, z: Tensor, op: Nonlinearity, rule: Rule, z_ref: Tensor | None, inplace: bool
    ) -> Tensor:
        z_in = z.clone() if inplace else z
        out = op.f(z_in)
        ctx.op, ctx.rule, ctx.z_ref = op, rule, z_ref
        if inplace:
            z.copy_(out)
            ctx.mark_dirty(z)
            ctx.save_for_backward(z_in, out)
            return z
        ctx.save_for_backward(z_in, out)
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        z, out = ctx.saved_tensors
        return ctx.rule.backward(ctx.op, z, out, ctx.z_ref, grad_out), None, None, None, None


def _depends(value: Any) -> bool:
    """Whether ``value`` (a tensor, or a tuple/list of them) depends on the attributed input."""
    if isinstance(value, Tensor):
        return value.requires_grad
    if isinstance(value, (tuple, list)):
        return any(_depends(v) for v in value)
    return False


class _Classifier:
    """Caches the op class (:mod:`gradattr.engine.ops`) of each function object by its resolved name."""

    def __init__(self) -> None:
        self._names: dict[Callable[..., Any], str] = {}

    def name(self, func: Callable[..., Any]) -> str:
        name = self._names.get(func)
        if name is None:
            name = resolve_name(func) or getattr(func, "__qualname__", repr(func))
            self._names[func] = name
        return name


_CLASSIFIER = _Classifier()


def op_name(func: Callable[..., Any]) -> str:
    """The resolved name of a torch function (``torch.overrides.resolve_name``, cached), e.g.
    ``"torch.nn.functional.relu"`` for ``F.relu`` and ``nn.ReLU``: the key of the tables in :mod:`~.ops`."""
    return _CLASSIFIER.name(func)


class _InterceptingMode(TorchFunctionMode):
    """Common part of the recording and rule-applying passes: op classification and unsupported ops."""

    def __init__(self, model: nn.Module, strict: bool, gates: GateProducts = "product") -> None:
        super().__init__()
        self.model = model
        self.strict = strict
        self.cell_ops = CellOps(self.apply_nonlinearity, gates)
        self._warned: set[tuple[str, str]] = set()

    def nonlinearity(
        self, name: str, entry: ops.Elementwise, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        raise NotImplementedError

    def packed_layout(self, name: str, batch_sizes: Tensor) -> None:
        """A recurrent kernel runs on a packed sequence with these ``batch_sizes`` (nothing to do by default)."""

    def apply_nonlinearity(self, name: str, z: Tensor) -> Tensor:
        """``f(z)`` for the elementwise op ``name`` (an :data:`ops.ELEMENTWISE` key), handled as if intercepted.

        For computations the mode itself runs (unrolled recurrent kernels): inside ``__torch_function__`` the
        mode is off, so their ``torch.sigmoid`` calls would not be intercepted otherwise.
        """
        entry = ops.ELEMENTWISE[name]
        return self.nonlinearity(name, entry, entry.function, (z,), {})

    def __torch_function__(
        self, func: Callable[..., Any], types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        kwargs = kwargs or {}
        name = _CLASSIFIER.name(func)
        entry = ops.ELEMENTWISE.get(name)
        if entry is not None:
            return self.nonlinearity(name, entry, func, args, kwargs)
        if name in ops.LINEAR:
            return func(*args, **kwargs)
        expander = ops.RECURRENT.get(name)
        if expander is not None:
            if _depends(args) or _depends(tuple(kwargs.values())):
                batch_sizes = packed_batch_sizes(args, kwargs)
                if batch_sizes is not None:
                    self.packed_layout(name, batch_sizes)
                return expander(args, kwargs, self.cell_ops)
            return func(*args, **kwargs)
        product = ops.PRODUCTS.get(name)
        if product is not None:
            reason = product.violation(args, kwargs)
            if reason is not None:
                self.unsupported(name, reason)
            return func(*args, **kwargs)
        if name in ops.ROUTING:
            if sum(isinstance(a, Tensor) and a.requires_grad for a in args) > 1:
                self.unsupported(name, "it selects between two input-dependent tensors")
            return func(*args, **kwargs)
        if name == ops.BATCH_NORM and _depends(args[:1]) and ops.batch_norm_uses_batch_statistics(args, kwargs):
            self.unsupported(name, "batch-norm in training mode normalises with batch statistics")
        result = func(*args, **kwargs)
        if name != ops.BATCH_NORM and _depends(result):
            self.unsupported(name, ops.KNOWN_NONLINEAR.get(name, "it is not known to be linear in its input"))
        return result

    def unsupported(self, name: str, reason: str) -> None:
        """Raise (``strict``) or warn once about an op whose plain gradient would be silently wrong."""
        where = current_module_path(self.model)
        message = (
            f"gradattr cannot apply the attribution rule through '{name}' in module '{where}': {reason}. "
            "Its plain gradient would silently change the method."
        )
        if self.strict:
            raise UnsupportedOperationError(message + " Pass strict=False to continue with a warning.")
        if (name, where) not in self._warned:
            self._warned.add((name, where))
            warnings.warn(message + " Continuing with the plain gradient (strict=False).", stacklevel=3)


class RecordingMode(_InterceptingMode):
    """Forward pass over the baseline: records each intercepted nonlinearity's input, in call order."""

    def __init__(self, model: nn.Module, strict: bool) -> None:
        super().__init__(model, strict)
        self.references: list[Reference] = []

    def nonlinearity(
        self, name: str, entry: ops.Elementwise, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        z, _, _, _ = entry.bind(args, kwargs)
        if z.requires_grad:
            self.references.append(Reference(name, z.detach().clone()))
        return func(*args, **kwargs)

    def packed_layout(self, name: str, batch_sizes: Tensor) -> None:
        self.references.append(Reference(name, batch_sizes.clone()))


class RuleMode(_InterceptingMode):
    """Forward pass over the inputs: every intercepted nonlinearity's backward is the rule's.

    ``gates`` selects how the gate products of unrolled recurrent cells are differentiated (see
    :mod:`gradattr.engine.recurrent`): ``"product"`` (both factors; Ancona et al. 2018) or ``"signal"`` (the
    gate is a constant; Arras et al. 2017).
    """

    def __init__(
        self,
        model: nn.Module,
        rule: Rule,
        references: list[Reference] | None,
        strict: bool,
        gates: GateProducts = "product",
    ) -> None:
        super().__init__(model, strict, gates)
        self.rule = rule
        self.references = references
        self.calls = 0

    def nonlinearity(
        self, name: str, entry: ops.Elementwise, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        z, f, inplace, pointwise = entry.bind(args, kwargs)
        if not z.requires_grad:
            return func(*args, **kwargs)
        z_ref = self._reference(name, z) if self.references is not None else None
        self.calls += 1
        return _RuleFunction.apply(z, Nonlinearity(f, entry.rectifier, pointwise), self.rule, z_ref, inplace)

    def unsupported(self, name: str, reason: str) -> None:
        """Methods defined as the plain gradient away from their rule's ops (guided backprop) need no rule
        for other ops: their plain gradient *is* the method there."""
        if not self.rule.plain_elsewhere:
            super().unsupported(name, reason)

    def packed_layout(self, name: str, batch_sizes: Tensor) -> None:
        """The references of a packed sequence's steps belong to rows of the same sequences only if the
        baseline pass packed sequences of the same lengths: a shared one-row baseline pass (lengths of the
        first sample) does not, e.g. in the reverse direction; the engine then records the full batch."""
        if self.references is None:
            return
        ref = self._next(name)
        if ref.name != name or not torch.equal(ref.z, batch_sizes):
            raise ReferenceMismatchError(
                f"'{name}' call #{self.calls + 1} runs on packed sequences with other lengths for the input than "
                "for the baseline"
            )
        self.calls += 1

    def _next(self, name: str) -> Reference:
        assert self.references is not None
        if self.calls >= len(self.references):
            raise ReferenceMismatchError(
                f"'{name}' call #{self.calls + 1} has no counterpart in the baseline's forward pass: the model "
                "takes a different path for the baseline (data-dependent control flow)"
            )
        return self.references[self.calls]

    def _reference(self, name: str, z: Tensor) -> Tensor:
        ref = self._next(name)
        compatible = ref.z.shape[1:] == z.shape[1:] and ref.z.shape[0] in (1, z.shape[0])
        if ref.name != name or not compatible:
            raise ReferenceMismatchError(
                f"nonlinearity call #{self.calls + 1} is '{name}' with shape {tuple(z.shape)} for the input but "
                f"'{ref.name}' with shape {tuple(ref.z.shape)} for the baseline"
            )
        return ref.z

    def check_complete(self) -> None:
        """Every recorded baseline call must have been matched by the input pass."""
        if self.references is not None and self.calls != len(self.references):
            raise ReferenceMismatchError(
                f"the baseline's forward pass made {len(self.references)} nonlinearity calls, the input's "
                f"{self.calls}: the model takes a different path for the baseline"
            )


def current_module_path(model: nn.Module) -> str:
    """Dotted path of the innermost module of ``model`` whose ``forward`` is on the call stack."""
    paths = {id(module): name for name, module in model.named_modules()}
    for frame_info in inspect.stack(context=0):
        owner = frame_info.frame.f_locals.get("self")
        if isinstance(owner, nn.Module) and id(owner) in paths:
            return paths[id(owner)] or f"<root {type(model).__name__}>"
    return f"<root {type(model).__name__}>"
