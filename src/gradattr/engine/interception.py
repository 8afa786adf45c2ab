"""Op-level interception: a ``TorchFunctionMode`` that sees every torch call of a forward pass and applies
the method's rule set (:mod:`gradattr.rulesets`) at the op kinds of :mod:`gradattr.engine.ops`.

Dispatch is one table lookup (op name -> kind) and one handler per kind; the rule comes from the rule set,
so the engine never branches on a method. Because this happens per *call*, a module reused three times,
``F.relu``, ``torch.tanh`` and ``x.relu_()`` all get the rule, and the user's model is never edited.

Input dependence is ``requires_grad``: the model runs as a view whose parameters are detached aliases (see
:mod:`gradattr.engine.hygiene`), so only tensors computed from the attributed ones require gradients.
What a tensor *is* (an elementwise function of one source, a per-row statistic) is tracked per pass by
:mod:`gradattr.engine.provenance`, so hand-written GELUs and RMS norms get the rule of what they compute.

DeepLIFT's reference values (Ancona et al., Sec. 3, Eq. 9) come from a *recording* pass over the baseline:
the ``k``-th rule site (an elementwise nonlinearity's source, a product's two factors, a softmax's input)
records its inputs; the ``k``-th rule site of the pass over the inputs uses them. Both passes run the same
handlers, so their rule sites correspond.
"""

from __future__ import annotations

import functools
import inspect
import types
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode, resolve_name

from gradattr.composites import Composite
from gradattr.engine import ops
from gradattr.engine.layer_calls import layer_call, layer_input, layer_kind, merged_with_batch_norm, product_call
from gradattr.engine.ops.elementwise import Elementwise
from gradattr.engine.probes import SHADOWED_KINDS, Probes
from gradattr.engine.provenance import Chain, Facts, Provenance
from gradattr.engine.recurrent import CellOps, GateProducts, packed_batch_sizes
from gradattr.rules import ElementwiseRule, Nonlinearity, SoftmaxCall
from gradattr.rules.layers import LayerCall, LayerRule, apply_layer_rule, pass_relevance
from gradattr.rulesets import RuleSet


class UnsupportedOperationError(RuntimeError):
    """An op the engine cannot give a correct modified gradient for met an input-dependent tensor."""


class ReferenceMismatchError(RuntimeError):
    """The baseline pass and the input pass took different paths through the model."""


@dataclass(frozen=True)
class Reference:
    """The baseline's inputs to the ``k``-th rule site and that op's name; or, for a recurrent kernel on a
    packed sequence, its ``batch_sizes`` (the layout the references belong to)."""

    name: str
    tensors: tuple[Tensor, ...]


class _RuleFunction(torch.autograd.Function):
    """``out = f(z)`` forward (``compute()`` instead when given: the call's own, cheaper evaluation of the same
    value; ``native()``, the call itself, for an in-place op); ``rule.backward`` in place of ``f'(z)``, from the
    state the rule read from ``z`` before ``f`` ran and completed from ``out`` (so an in-place op needs no copy
    of ``z``, and a later in-place write to ``out`` is harmless). The state goes to the backward once: this graph
    is differentiated once."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        z: Tensor,
        op: Nonlinearity,
        rule: ElementwiseRule,
        z_ref: Tensor | None,
        inplace: bool,
        compute: Callable[[], Tensor] | None,
        native: Callable[[], Tensor] | None,
    ) -> Tensor:
        complete = rule.read(op, z, z_ref)
        if inplace:
            out = native() if native is not None else None
            if out is not z:  # no call of its own, or one that did not write into z
                z.copy_(op.f(z) if out is None else out)
            ctx.mark_dirty(z)
            out = z
        else:
            out = op.f(z) if compute is None else compute()  # made here, so autograd owns it as this op's output
        ctx.op, ctx.rule, ctx.state, ctx.used = op, rule, complete(out), False
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        if ctx.used:
            raise RuntimeError("gradattr's rule backward runs once per forward pass (no retain_graph)")
        state, ctx.state, ctx.used = ctx.state, None, True
        return ctx.rule.backward(ctx.op, state, grad_out), None, None, None, None, None, None


def _depends(value: Any) -> bool:
    """Whether ``value`` (a tensor, or a tuple/list of them) depends on the attributed input."""
    if isinstance(value, Tensor):
        return value.requires_grad
    if isinstance(value, (tuple, list)):
        return any(_depends(v) for v in value)
    return False


def _any_depends(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    return _depends(args) or _depends(tuple(kwargs.values()))


def _custom_function_on_stack() -> type[torch.autograd.Function] | None:
    """The user's (not gradattr's) ``torch.autograd.Function`` whose ``apply`` is on the call stack, if any:
    its forward runs with gradients off, and its output gets the Function's own backward."""
    frame = inspect.currentframe()
    while frame is not None:
        owner = frame.f_locals.get("cls") if frame.f_code.co_name == "apply" else None
        is_function = isinstance(owner, type) and issubclass(owner, torch.autograd.Function)
        if is_function and not owner.__module__.startswith("gradattr."):
            return owner
        frame = frame.f_back
    return None


class _Names:
    """Caches the resolved name of each function object."""

    def __init__(self) -> None:
        self._names: dict[Callable[..., Any], str] = {}

    def name(self, func: Callable[..., Any]) -> str:
        name = self._names.get(func)
        if name is None:
            name = resolve_name(func) or getattr(func, "__qualname__", repr(func))
            self._names[func] = name
        return name


_NAMES = _Names()


def op_name(func: Callable[..., Any]) -> str:
    """The resolved name of a torch function (``torch.overrides.resolve_name``, cached), e.g.
    ``"torch.nn.functional.relu"`` for ``F.relu`` and ``nn.ReLU``: the key of :data:`ops.OPS`."""
    return _NAMES.name(func)


def _never(*_: Any) -> bool:
    return False


_UNDISPATCHED: dict[Callable[..., Any], Callable[..., Any]] = {}


def _undispatched(func: Callable[..., Any]) -> Callable[..., Any]:
    """A copy of the Python function ``func`` whose own ``has_torch_function`` checks are off, so that under
    the mode its body runs (each inner op dispatched) instead of being handed back to the mode as one op."""
    copy = _UNDISPATCHED.get(func)
    if copy is None:
        namespace = dict(func.__globals__)
        for check in ("has_torch_function", "has_torch_function_unary", "has_torch_function_variadic"):
            namespace[check] = _never
        copy = types.FunctionType(func.__code__, namespace, func.__name__, func.__defaults__, func.__closure__)
        copy.__kwdefaults__ = func.__kwdefaults__
        _UNDISPATCHED[func] = copy
    return copy


def _shape_of(value: Any) -> tuple[int, ...]:
    return tuple(value.shape) if isinstance(value, Tensor) else ()


def _broadcast_shape(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...] | None:
    """The shape ``a`` and ``b`` broadcast to, ``None`` where they do not (the op then raises its own error).

    Plain Python: ``torch.broadcast_shapes`` costs ~50 µs per call, and this runs at every arithmetic op."""
    if a == b:
        return a
    if len(a) < len(b):
        a, b = b, a
    b = (1,) * (len(a) - len(b)) + b
    if any(m != n and m != 1 and n != 1 for m, n in zip(a, b, strict=True)):
        return None
    return tuple(n if m == 1 else m for m, n in zip(a, b, strict=True))


def _compose(outer: Callable[..., Tensor], inner: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    def composed(u: Tensor) -> Tensor:
        return outer(inner(u))

    return composed


class RuleMode(TorchFunctionMode):
    """A forward pass with ``ruleset``'s rules at every op call that sees an input-dependent tensor.

    ``recording=True``: the pass over the baseline, which applies no rule and records the inputs of every
    rule site (``records``); ``references``: those records, for the pass over the inputs of a rule set that
    needs them (DeepLIFT). ``gates``: how the gate products of unrolled recurrent cells are differentiated
    (:mod:`gradattr.engine.recurrent`).
    """

    def __init__(
        self,
        model: nn.Module,
        ruleset: RuleSet,
        *,
        references: list[Reference] | None = None,
        recording: bool = False,
        strict: bool = True,
        gates: GateProducts = "product",
    ) -> None:
        super().__init__()
        self.model = model
        self.ruleset = ruleset
        self.rectifiers_only = ruleset.rectifiers_only
        self.references = references
        self.recording = recording
        self.records: list[Reference] = []
        self.strict = strict
        self.calls = 0
        self.facts = Provenance()
        self.cell_ops = CellOps(self.apply_nonlinearity, gates)
        self._warned: set[tuple[str, str]] = set()
        self._clones: dict[tuple[int, int], tuple[weakref.ref[Tensor], Tensor]] = {}
        self.module_stack: list[tuple[str, nn.Module]] = []
        self.probes = Probes()
        self._layer_outputs: dict[int, tuple[weakref.ref[Tensor], LayerRule, LayerCall, Tensor, Tensor | None]] = {}
        self._hooks: list[Any] = []
        self._active_expansions = 0

    # -- where in the model: rule-set overrides by module type or path ---------------------------------
    def __enter__(self) -> RuleMode:
        if self.ruleset.overrides and not self._hooks:
            self._track_modules()
        return super().__enter__()

    def __exit__(self, *exc: Any) -> None:
        super().__exit__(*exc)
        if self._hooks and not self._active_expansions:
            for handle in self._hooks:
                handle.remove()
            self._hooks.clear()

    def _track_modules(self) -> None:
        """Forward pre/post hooks on every module keep the stack of running modules. They go on the model
        the engine runs, which is the call's own view (:mod:`gradattr.engine.hygiene`), never the user's."""

        def enter(path: str) -> Callable[..., None]:
            def hook(module: nn.Module, *_: Any) -> None:
                self.module_stack.append((path, module))

            return hook

        def leave(module: nn.Module, *_: Any) -> None:
            if self.module_stack:
                self.module_stack.pop()

        for path, module in self.model.named_modules():
            self._hooks.append(module.register_forward_pre_hook(enter(path)))
            self._hooks.append(module.register_forward_hook(leave))

    def rule(self, kind: str) -> Any:
        """The rule set's rule at op kind ``kind`` in the module running now (overrides by type or path)."""
        if not self.ruleset.overrides or not self.module_stack:
            return getattr(self.ruleset, kind)
        path, module = self.module_stack[-1]
        return self.ruleset.rule(kind, path, module)

    # -- dispatch --------------------------------------------------------------------------------------
    def __torch_function__(
        self, func: Callable[..., Any], types_: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        kwargs = kwargs or {}
        name = _NAMES.name(func)
        if not torch.is_grad_enabled() and _any_depends(args, kwargs):
            function = _custom_function_on_stack()
            if function is not None:  # inside its forward: autograd will use its backward, not our rules
                self.unsupported(
                    f"{function.__module__}.{function.__qualname__}",
                    "it is a custom torch.autograd.Function, whose own backward replaces the rules of the ops in "
                    "its forward",
                )
        op = ops.lookup(name)
        if self.rectifiers_only and (op is None or op.kind not in _RECTIFIER_KINDS):
            return func(*args, **kwargs)
        if op is None:
            return self.unknown(name, func, args, kwargs)
        out = getattr(self, _HANDLERS[op.kind])(name, op.spec, func, args, kwargs)
        if self.probes and op.kind in SHADOWED_KINDS:
            self.probes.follow(name, func, args, kwargs, out)
        return out

    def expand(self, expander: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Evaluate ``expander`` with this mode active again, so each of its ops is dispatched."""
        self._active_expansions += 1
        try:
            with self:
                return expander(*args, **kwargs)
        finally:
            self._active_expansions -= 1

    # -- rule sites and references ---------------------------------------------------------------------
    def site(self, name: str, tensors: tuple[Tensor, ...]) -> tuple[Tensor, ...] | None:
        """A rule site: records its inputs (recording pass) or returns the baseline's (rule pass)."""
        if self.recording:
            self.records.append(Reference(name, tuple(self._clone(t) for t in tensors)))
            return None
        if self.references is None:
            self.calls += 1
            return None
        ref = self._next(name)
        compatible = len(ref.tensors) == len(tensors) and all(
            r.dim() == t.dim() and _broadcasts(r.shape, t.shape) for r, t in zip(ref.tensors, tensors, strict=True)
        )
        if ref.name != name or not compatible:
            raise ReferenceMismatchError(
                f"rule site #{self.calls + 1} is '{name}' with shapes {[tuple(t.shape) for t in tensors]} for the "
                f"input but '{ref.name}' with shapes {[tuple(r.shape) for r in ref.tensors]} for the baseline"
            )
        self.calls += 1
        return ref.tensors

    def _clone(self, tensor: Tensor) -> Tensor:
        """A detached copy of ``tensor`` as it is now; one copy per tensor and version (a source recorded at
        several sites of a chain is stored once)."""
        key = (id(tensor), tensor._version)
        cached = self._clones.get(key)
        if cached is not None and cached[0]() is tensor:
            return cached[1]
        clone = tensor.detach().clone()
        self._clones[key] = (weakref.ref(tensor), clone)
        return clone

    def _next(self, name: str) -> Reference:
        assert self.references is not None
        if self.calls >= len(self.references):
            raise ReferenceMismatchError(
                f"'{name}' call #{self.calls + 1} has no counterpart in the baseline's forward pass: the model "
                "takes a different path for the baseline (data-dependent control flow)"
            )
        return self.references[self.calls]

    def check_complete(self) -> None:
        """Every recorded baseline site must have been matched by the input pass."""
        if self.references is not None and self.calls != len(self.references):
            raise ReferenceMismatchError(
                f"the baseline's forward pass had {len(self.references)} rule sites, the input's {self.calls}: "
                "the model takes a different path for the baseline"
            )

    def packed_layout(self, name: str, batch_sizes: Tensor) -> None:
        """A recurrent kernel runs on a packed sequence with these ``batch_sizes``. The references of its
        steps belong to rows of the same sequences only if the baseline pass packed sequences of the same
        lengths: a shared one-row baseline pass does not, and the engine then records the full batch."""
        if self.recording:
            self.records.append(Reference(name, (batch_sizes.clone(),)))
            return
        if self.references is None:
            return
        ref = self._next(name)
        if ref.name != name or not torch.equal(ref.tensors[0], batch_sizes):
            raise ReferenceMismatchError(
                f"'{name}' call #{self.calls + 1} runs on packed sequences with other lengths for the input than "
                "for the baseline"
            )
        self.calls += 1

    # -- elementwise nonlinearities and chains ---------------------------------------------------------
    def elementwise(
        self, name: str, entry: Elementwise, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        z, f, inplace, pointwise = entry.bind(args, kwargs)
        if not isinstance(z, Tensor) or not z.requires_grad:
            return func(*args, **kwargs)
        native = functools.partial(func, *args, **kwargs)
        return self.nonlinearity(
            name, z, f, inplace=inplace, pointwise=pointwise, rectifier=entry.rectifier, native=native
        )

    def apply_nonlinearity(self, name: str, z: Tensor) -> Tensor:
        """``f(z)`` for the elementwise op ``name`` (an :data:`ops.ELEMENTWISE` key), handled as if intercepted;
        for computations the mode runs itself with the mode off (unrolled recurrent kernels)."""
        entry = ops.ELEMENTWISE[name]
        return self.elementwise(name, entry, entry.function, (z,), {})

    def nonlinearity(
        self,
        name: str,
        z: Tensor,
        f: Callable[[Tensor], Tensor],
        *,
        inplace: bool = False,
        pointwise: bool = True,
        rectifier: bool = False,
        native: Callable[[], Tensor] | None = None,
    ) -> Tensor:
        """``f(z)`` with the elementwise rule. When ``z`` already is a nonlinear elementwise function of a source
        (a hand-written activation in progress), the rule goes from that source to the result, so the chain
        gets the rule of the one function it computes; otherwise it applies at this op alone, and where the
        rule keeps ``f'`` there the op's own call (``native``) runs."""
        facts = self.facts.get(z)
        chain = facts.chain
        # a rule set for rectifiers only applies its rule at each rectifier call, as the method is defined
        fuse = chain is not None and chain.nonlinear and not inplace and not self.rectifiers_only
        if fuse:
            assert chain is not None
            source, op = chain.source, Nonlinearity(_compose(f, chain.f), False, pointwise and chain.pointwise)
        else:
            source, op = z, Nonlinearity(f, rectifier, pointwise)
        references = self.site(name, (source,))
        rule = self.rule("elementwise")
        if self.recording:
            out = z.copy_(f(z.clone())) if inplace else f(z)
        elif native is not None and not rule.changes(op):  # the op's own gradient: no rule function
            out = native()
        elif native is not None and not fuse and (hook := rule.before_gradient(op)) is not None:
            out = native()  # the op's own backward after the rule's map of the incoming gradient
            if out.requires_grad:
                out.register_hook(hook)
        else:
            compute = (lambda: f(z.detach())) if fuse else None
            reference = None if references is None else references[0]
            out = _RuleFunction.apply(source, op, rule, reference, inplace, compute, native)
        if inplace:
            self.facts.set(out, Facts(None, facts.statistic))
        else:
            origin = chain if chain is not None else Chain(z, _identity)
            composed = Chain(origin.source, _compose(f, origin.f), True, pointwise and origin.pointwise)
            self.facts.set(out, Facts(composed, facts.statistic))
        return out

    # -- arithmetic ------------------------------------------------------------------------------------
    def arithmetic(
        self, name: str, spec: ops.Arithmetic, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        a, b = spec.operands(args, kwargs)
        if not (_depends(a) or _depends(b)):
            out = func(*args, **kwargs)
            if self._mask(a) or self._mask(b):  # arithmetic on an input-dependent mask: still one
                self._chain_without_gradient(out, lambda fa, fb: spec.compute(fa, fb, kwargs.get("alpha")), a, b)
            return out
        if kwargs.get("rounding_mode") is not None:
            self.unsupported(name, "rounding division is piecewise constant in its input")
            return func(*args, **kwargs)
        if spec.inplace:
            return self._in_place(name, spec, a, b, func, args, kwargs)
        return self.combine(name, spec, a, b, kwargs.get("alpha"), func, args, kwargs)

    def _in_place(
        self,
        name: str,
        spec: ops.Arithmetic,
        a: Any,
        b: Any,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Tensor:
        """``a ∘= b``: affine in-place ops run as written; others are computed with their rule and copied in."""
        operation, dep_a, dep_b = spec.operation, _depends(a), _depends(b)
        affine = operation in ("add", "sub", "neg") or (
            operation in ("mul", "div") and dep_a != dep_b and (operation == "mul" or dep_a)
        )
        if affine:
            statistic = self._all_statistics(a, b)
            out = func(*args, **kwargs)
            self.facts.set(out, Facts(None, statistic))
            return out
        result = self.combine(name, spec, a, b, kwargs.get("alpha"))
        target = args[0]
        target.copy_(result)
        self.facts.set(target, Facts(None, self.facts.is_statistic(result)))
        return target

    def _all_statistics(self, *operands: Any) -> bool:
        dependent = [t for t in operands if _depends(t)]
        return bool(dependent) and all(self.facts.is_statistic(t) for t in dependent)

    def combine(
        self,
        name: str,
        spec: ops.Arithmetic,
        a: Any,
        b: Any,
        alpha: Any,
        func: Callable[..., Any] | None = None,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Tensor:
        """``a ∘ b`` (out of place) with the rule of what it is: affine, elementwise chain, product, division."""
        operation = spec.operation
        dep_a, dep_b = _depends(a), _depends(b)

        def plain() -> Tensor:
            return func(*args, **(kwargs or {})) if func is not None else spec.compute(a, b, alpha)

        if operation == "pow" and dep_a and not dep_b and not isinstance(b, Tensor) and b == 1:
            return plain()
        if operation == "pow" and dep_a != dep_b:  # x ** c or c ** x: an elementwise nonlinearity of one tensor
            z, other = (a, b) if dep_a else (b, a)
            exponent = dep_a

            def power(t: Tensor) -> Tensor:
                return torch.pow(t, other) if exponent else torch.pow(other, t)

            return self.nonlinearity(name, z, power, pointwise=not isinstance(other, Tensor))
        if operation == "div" and dep_b and not self._same_source(a, b):  # a / b = a · (1/b)
            return self.expand(lambda: a * torch.reciprocal(b), (), {})
        dependent = [t for t in (a, b) if _depends(t)]
        statistic = self._all_statistics(a, b)
        if len(dependent) == 2 and not self._same_source(a, b):
            if operation == "mul":
                stats = (self.facts.is_statistic(a), self.facts.is_statistic(b))
                constant = stats.index(True) if stats.count(True) == 1 else None
                out = self.product(name, torch.mul, a, b, constant)
            elif operation in ("add", "sub"):
                out = plain()
            else:
                self.unsupported(name, "it raises an input-dependent tensor to an input-dependent power")
                out = plain()
            self.facts.set(out, Facts(None, statistic))
            return out
        # affine in one operand, or an elementwise function of one common source: extend the chain
        source = self.facts.chain(dependent[0]).source
        # a mask of the same source (x * (x > 0)) is part of the function
        dependent += [t for t in (a, b) if self._mask(t) and self.facts.chain(t).source is source]
        chains = [self.facts.chain(t) for t in dependent]
        out_shape = _broadcast_shape(_shape_of(a), _shape_of(b))
        if out_shape != tuple(source.shape) or any(t.dtype != source.dtype for t in dependent if _depends(t)):
            out = plain()
            self.facts.set(out, Facts(None, statistic))
            return out
        nonlinear = any(c.nonlinear for c in chains) or (operation in ("mul", "div", "pow") and len(dependent) == 2)
        pointwise = all(c.pointwise for c in chains) and not any(
            isinstance(t, Tensor) and not any(t is d for d in dependent) for t in (a, b)
        )
        f_a, f_b = (self._lift(t) if any(t is d for d in dependent) else (lambda _, t=t: t) for t in (a, b))

        def composed(u: Tensor) -> Tensor:
            return spec.compute(f_a(u), f_b(u), alpha)

        # Adding a constant (a bias, an attention mask) after a nonlinearity is not part of the activation a
        # rule sees: the ε rule's f(z)/z would hand the constant to the input (−1e308 from a mask: NaN). The
        # chain stays recorded, so a nonlinear op after it still composes from the source.
        shifted = operation in ("add", "sub") and len(dependent) == 1
        out = self._chain_rule(name, source, composed, pointwise, plain) if nonlinear and not shifted else plain()
        self.facts.set(out, Facts(Chain(source, composed, nonlinear, pointwise), statistic))
        return out

    def _lift(self, value: Any) -> Callable[[Tensor], Any]:
        """An operand as a function of its chain's source: its chain for an input-dependent tensor or mask,
        the constant itself otherwise."""
        if _depends(value) or self._mask(value):
            return self.facts.chain(value).f
        return lambda _: value

    def _mask(self, value: Any) -> bool:
        """An input-dependent tensor without gradient (``x > 0``), known as an elementwise function of a source."""
        return isinstance(value, Tensor) and not value.requires_grad and self.facts.get(value).chain is not None

    def _chain_without_gradient(self, out: Any, compute: Callable[[Any, Any], Tensor], a: Any, b: Any) -> None:
        """Record ``out = compute(a, b)`` (a mask or a function of masks) as an elementwise function of the
        operands' common source, when they have one and ``out`` has its shape."""
        members = [t for t in (a, b) if _depends(t) or self._mask(t)]
        if not isinstance(out, Tensor) or not members:
            return
        sources = {id(self.facts.chain(t).source) for t in members}
        source = self.facts.chain(members[0]).source
        if len(sources) != 1 or tuple(out.shape) != tuple(source.shape):
            return
        f_a, f_b = self._lift(a), self._lift(b)

        def composed(u: Tensor) -> Tensor:
            return compute(f_a(u), f_b(u))

        self.facts.set(out, Facts(Chain(source, composed, True, False)))

    def comparison(
        self, name: str, spec: Any, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """``x > 0`` and friends: no gradient, but an input-dependent mask (a step function of a source)."""
        out = func(*args, **kwargs)
        a = args[0] if args else None
        b = args[1] if len(args) > 1 else kwargs.get("other")
        if (_depends(a) or self._mask(a)) or (_depends(b) or self._mask(b)):
            self._chain_without_gradient(out, lambda x, y: func(x) if y is None else func(x, y), a, b)
        return out

    def select(
        self, name: str, spec: Any, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """``where(mask, a, b)`` / ``masked_fill(a, mask, value)``: linear in the branches; an elementwise
        nonlinearity when the mask is an input-dependent function of the branches' source."""
        if name.endswith("where") and name.startswith("torch.Tensor"):  # x.where(mask, other)
            if_true, mask, if_false = args[0], args[1], args[2] if len(args) > 2 else kwargs.get("other")
        elif name.endswith("where"):  # torch.where(mask, input, other)
            mask, if_true, if_false = [*args, kwargs.get("input"), kwargs.get("other")][:3]
        else:  # masked_fill(input, mask, value): value where the mask holds
            if_false, mask, if_true = args[0], args[1], args[2] if len(args) > 2 else kwargs.get("value")
        inplace = name.endswith("_")
        if inplace or not self._mask(mask) or not (_depends(if_true) or _depends(if_false)):
            out = func(*args, **kwargs)
            if not inplace and self._mask(mask):
                self._select_facts(out, mask, if_true, if_false)
            return out
        source = self.facts.chain(mask).source
        branches = [t for t in (if_true, if_false) if _depends(t)]
        shape = tuple(source.shape)
        if any(self.facts.chain(t).source is not source or tuple(t.shape) != shape for t in branches):
            return func(*args, **kwargs)
        composed = self._select_function(mask, if_true, if_false)
        out = self._chain_rule(name, source, composed, False, lambda: func(*args, **kwargs))
        self.facts.set(out, Facts(Chain(source, composed, True, False)))
        return out

    def _select_function(self, mask: Tensor, branch: Any, other: Any) -> Callable[[Tensor], Tensor]:
        f_mask, f_branch, f_other = self._lift(mask), self._lift(branch), self._lift(other)

        def composed(u: Tensor) -> Tensor:
            return torch.where(f_mask(u), f_branch(u), f_other(u))

        return composed

    def _select_facts(self, out: Any, mask: Tensor, branch: Any, other: Any) -> None:
        """A selection between constants by an input-dependent mask is itself such a mask-like function."""
        if isinstance(out, Tensor) and not out.requires_grad and tuple(out.shape) == tuple(mask.shape):
            members = [t for t in (branch, other) if isinstance(t, Tensor) and (self._mask(t) or _depends(t))]
            if all(self.facts.chain(t).source is self.facts.chain(mask).source for t in members):
                composed = self._select_function(mask, branch, other)
                self.facts.set(out, Facts(Chain(self.facts.chain(mask).source, composed, True, False)))

    def _same_source(self, a: Any, b: Any) -> bool:
        if not (_depends(a) and _depends(b)):
            return False
        return self.facts.chain(a).source is self.facts.chain(b).source

    def _chain_rule(
        self, name: str, source: Tensor, f: Callable[[Tensor], Tensor], pointwise: bool, plain: Callable[[], Tensor]
    ) -> Tensor:
        """The elementwise rule from ``source`` to ``f(source)`` (an elementwise chain's current end)."""
        references = self.site(name, (source,))
        op, rule = Nonlinearity(f, False, pointwise), self.rule("elementwise")
        if self.recording or not rule.changes(op):
            return plain()
        reference = None if references is None else references[0]
        return _RuleFunction.apply(source, op, rule, reference, False, plain, None)

    # -- products, softmax, layers ---------------------------------------------------------------------
    def product(
        self, name: str, product: Callable[[Tensor, Tensor], Tensor], a: Tensor, b: Tensor, constant: int | None
    ) -> Tensor:
        """A product of two input-dependent factors with the rule set's product (or normalisation) rule."""
        references = self.site(name, (a, b))
        if self.recording:
            return product(a, b)
        rule = self.rule("normalisation" if constant is not None else "product")
        return rule.apply(product, a, b, references, constant)  # type: ignore[arg-type]

    def multilinear(
        self, name: str, spec: ops.Product, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        listed = len(args) == 2 and isinstance(args[1], (list, tuple))  # einsum(equation, [a, b])
        flat = [*args[:1], *args[1]] if listed else list(args)
        dependent = [i for i, v in enumerate(flat) if _depends(v) and i not in spec.additive]
        if len(dependent) <= 1 and not _depends(tuple(kwargs.values())):
            rule = self.rule("layer")
            if rule is None or self.recording or not dependent:
                return func(*args, **kwargs)
            call = product_call(func, flat, listed, kwargs, dependent[0])
            return self._apply_layer_rule(rule, call, flat[dependent[0]])
        if spec.additive:  # addmm & co. with two dependent factors: β·input + α·(m1 @ m2), each dispatched
            return self.expand(_additive_product(name), args, kwargs)
        if len(dependent) != 2:
            self.unsupported(name, f"it multiplies {len(dependent)} input-dependent tensors")
            return func(*args, **kwargs)
        first, second = dependent

        def product(x: Tensor, y: Tensor) -> Tensor:
            values = list(flat)
            values[first], values[second] = x, y
            call = (values[0], values[1:]) if listed else tuple(values)
            return func(*call, **kwargs)

        return self.product(name, product, flat[first], flat[second], None)

    def layer(
        self, name: str, spec: Any, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        rule = self.rule("layer")
        a = layer_input(args, kwargs)
        if rule is None or self.recording or not _depends(a) or _depends((args[1:], kwargs)):
            return func(*args, **kwargs)
        return self._apply_layer_rule(rule, layer_call(spec or layer_kind(name), func, args, kwargs), a)

    def _apply_layer_rule(self, rule: LayerRule | Composite, call: LayerCall, a: Tensor) -> Tensor:
        """``call`` with the layer rule that applies to it: a composite's choice by kind and position (the
        first layer: its input has a relevance probe), or ``rule`` itself; the plain op where none does."""
        probe = self.probes.of(a)
        if isinstance(rule, Composite):
            chosen = rule.select(call.kind, probe is not None)
        else:
            chosen = rule if call.kind in rule.kinds else None
        if chosen is None:
            return call.evaluate(a, call.weight, call.bias)
        if chosen.direct and probe is None:
            raise ValueError(
                f"the layer rule {chosen!r} gives relevance to inputs of value 0 and is for the first layer only, "
                f"but this {call.kind} op's input is not the model's input (up to linear ops)"
            )
        out = apply_layer_rule(chosen, call, a, probe)
        self._layer_outputs[id(out)] = (weakref.ref(out), chosen, call, a, probe)
        return out

    def softmax(
        self, name: str, spec: Any, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        x = args[0] if args else kwargs.get("input", kwargs.get("self"))
        if not _depends(x):
            return func(*args, **kwargs)
        dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
        if dim is None:  # F.softmax's legacy implicit dimension
            dim = 0 if x.dim() in (0, 1, 3) else 1
        dtype = kwargs.get("dtype", args[3] if len(args) > 3 and name.startswith("torch.nn") else None)
        if dtype is None and len(args) > 2 and isinstance(args[2], torch.dtype):
            dtype = args[2]
        references = self.site(name, (x,))
        if self.recording:
            return func(*args, **kwargs)
        call = SoftmaxCall(int(dim), "log_softmax" in name, dtype)
        return self.rule("softmax").apply(call, x, None if references is None else references[0])

    # -- linear ops ------------------------------------------------------------------------------------
    def reduction(
        self, name: str, spec: Any, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        out = func(*args, **kwargs)
        if isinstance(out, Tensor) and _depends(args[:1]):
            self.facts.set(out, Facts(None, True))
        return out

    def structural(
        self, name: str, spec: Any, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        out = func(*args, **kwargs)
        source = args[0] if args else None
        if self._mask(source) and isinstance(out, Tensor) and out is not source and out.shape == source.shape:
            chain = self.facts.chain(source)  # a mask cast to another dtype ((x > 0).float()) is still one
            dtype = out.dtype
            self.facts.set(out, Facts(Chain(chain.source, _compose(lambda t: t.to(dtype), chain.f), True, False)))
        if isinstance(source, Tensor) and source.requires_grad and self.facts.is_statistic(source):
            for t in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(t, Tensor) and t is not source:
                    self.facts.set(t, Facts(None, True))
        return out

    def linear(
        self, name: str, spec: Any, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        return func(*args, **kwargs)

    def routing(
        self, name: str, spec: Any, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        second = args[1] if len(args) > 1 else kwargs.get("other")
        if isinstance(second, Tensor):  # torch.max(a, b): the elementwise maximum
            if _depends(args) and self.ruleset.complete:
                expander = ops.expanders.minimum if "min" in name else ops.expanders.maximum
                return self.expand(expander, args, kwargs)
            return func(*args, **kwargs)
        if spec is not None and self.ruleset.max_pooling == "exact" and _depends(args[:1]):
            try:
                return self.expand(spec, args, kwargs)
            except NotImplementedError as reason:
                self.unsupported(name, f"{reason}; pass max_pooling='route' for the paper's gradient routing")
        return func(*args, **kwargs)

    def batch_norm(
        self, name: str, spec: Any, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        x = layer_input(args, kwargs)
        if not _depends(x):
            return func(*args, **kwargs)
        if ops.batch_norm_uses_batch_statistics(args, kwargs):
            self.unsupported(name, "batch-norm in training mode normalises with batch statistics")
            return func(*args, **kwargs)
        if self.ruleset.batch_norm == "linear" or self.recording:
            return func(*args, **kwargs)
        entry = self._layer_outputs.get(id(x))
        if entry is not None and entry[0]() is x:  # merge into the layer that produced x
            _, rule, call, a, probe = entry
            merged = merged_with_batch_norm(call, x, args, kwargs)
            if merged is not None:
                with torch.no_grad():  # the norm of the layer's output: the merged layer's, without a convolution
                    value = func(x.detach(), *args[1:], **kwargs)
                return apply_layer_rule(rule, merged, a, probe, value)
        return pass_relevance(x, lambda t: func(t, *args[1:], **kwargs))

    def normalisation(
        self, name: str, spec: Any, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """A torch norm op: the rule set's normalisation rule in one step, then the affine weights."""
        call = spec(*args, **kwargs)
        if call is None or not _depends(call.x):
            return func(*args, **kwargs)
        references = self.site(name, (call.x,))
        if self.recording:
            y = call.norm(call.x)
            if _depends(args[1:]) or _depends(tuple(v for k, v in kwargs.items() if k != "input")):
                return self.expand(call.finish, (y,), {})
            return call.finish(y)
        y = self.rule("normalisation").normalise(call.x, call.norm, None if references is None else references[0])
        if _depends(args[1:]) or _depends(tuple(v for k, v in kwargs.items() if k != "input")):
            return self.expand(call.finish, (y,), {})  # input-dependent affine weights: products with rules
        return call.finish(y)

    # -- expanders -------------------------------------------------------------------------------------
    def expander(
        self, name: str, spec: Any, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if not _any_depends(args, kwargs):
            return func(*args, **kwargs)
        return self.expand(spec, args, kwargs)

    def transparent(
        self, name: str, spec: Any, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if not _any_depends(args, kwargs):
            return func(*args, **kwargs)
        return self.expand(_undispatched(func), args, kwargs)

    def recurrent(
        self, name: str, spec: Any, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if not _any_depends(args, kwargs):
            return func(*args, **kwargs)
        batch_sizes = packed_batch_sizes(args, kwargs)
        if batch_sizes is not None:
            self.packed_layout(name, batch_sizes)
        return spec(args, kwargs, self.cell_ops)

    def unknown(self, name: str, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        result = func(*args, **kwargs)
        if _depends(result):
            self.unsupported(name, "it is not known to be linear in its input")
        return result

    def unsupported(self, name: str, reason: str) -> None:
        """Raise (``strict``) or warn once about an op whose plain gradient would be silently wrong. Rule sets
        defined as the plain gradient away from their rule's ops (guided backprop) need no rule elsewhere."""
        if not self.ruleset.complete:
            return
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


_RECTIFIER_KINDS = frozenset({"elementwise", "recurrent"})
"""The op kinds where a rule set that changes only rectifiers (:attr:`RuleSet.rectifiers_only`) may apply."""

_HANDLERS: dict[str, str] = {
    "elementwise": "elementwise",
    "arithmetic": "arithmetic",
    "product": "multilinear",
    "layer": "layer",
    "softmax": "softmax",
    "reduction": "reduction",
    "structural": "structural",
    "comparison": "comparison",
    "select": "select",
    "linear": "linear",
    "routing": "routing",
    "batch_norm": "batch_norm",
    "expander": "expander",
    "normalisation": "normalisation",
    "transparent": "transparent",
    "recurrent": "recurrent",
}
"""Op kind (:mod:`gradattr.engine.ops`) -> the :class:`RuleMode` method that handles it."""


def _identity(t: Tensor) -> Tensor:
    return t


def _broadcasts(reference: torch.Size, shape: torch.Size) -> bool:
    return all(r in (1, s) for r, s in zip(reference, shape, strict=True))


_FACTOR_NAMES = {
    "addmm": ("mat1", "mat2"),
    "baddbmm": ("batch1", "batch2"),
    "addbmm": ("batch1", "batch2"),
    "addmv": ("mat", "vec"),
    "addr": ("vec1", "vec2"),
}
"""torch's keyword names of the two factors of each ``addmm``-style op (BLOOM passes ``batch1=``/``batch2=``)."""


def _additive_product(name: str) -> Callable[..., Tensor]:
    """``addmm``-style ops as ``β·input + α·product(m1, m2)``; the factors may come by position or by name."""
    base = name.rsplit(".", 1)[-1]
    reduce_batch = base == "addbmm"
    outer = base == "addr"
    names = _FACTOR_NAMES[base]

    def expand(input: Tensor, *factors: Tensor, beta: float = 1, alpha: float = 1, **named: Any) -> Tensor:
        a, b = (*factors, *(named[n] for n in names if n in named))
        product = torch.outer(a, b) if outer else torch.matmul(a, b)
        if reduce_batch:
            product = product.sum(0)
        return beta * input + alpha * product

    return expand


def current_module_path(model: nn.Module) -> str:
    """Dotted path of the innermost module of ``model`` whose ``forward`` is on the call stack."""
    paths = {id(module): name for name, module in model.named_modules()}
    for frame_info in inspect.stack(context=0):
        owner = frame_info.frame.f_locals.get("self")
        if isinstance(owner, nn.Module) and id(owner) in paths:
            return paths[id(owner)] or f"<root {type(model).__name__}>"
    return f"<root {type(model).__name__}>"
