"""The user's model comes out exactly as it went in — also when other threads use it at the same time.

An attribution needs the model in eval mode (dropout off, batch-norm on running statistics: otherwise
attributions are random and batch-dependent) and needs ``requires_grad`` to mark exactly the tensors that
depend on the attributed input (so that the engine knows which op calls need a rule, and no parameter
``.grad`` is touched). Neither may be done by writing to the user's model: two threads attributing with one
shared model would undo each other's flags halfway through a forward pass.

:func:`preserved_model` therefore evaluates a *view* of the model instead: a copy of every module object
(cheap: the attribute dictionaries are copied, no tensor is) in eval mode, whose parameters are detached
aliases of the user's (same storage, ``requires_grad=False``). Buffers are the user's tensors, read only in
eval mode. Forward hooks the user registered are kept; hooks gradattr registers (``layer=``) go on the view.
A module whose forward only wraps torch ops in a custom ``autograd.Function`` runs those ops on the view
(:mod:`gradattr.engine.equivalents`), so that the rules reach them. Nothing of the user's model is written,
so concurrent calls cannot interfere.
"""

from __future__ import annotations

import warnings
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import MethodType
from typing import Any

import torch
from torch import Tensor, nn

from gradattr.engine.equivalents import equivalent_forward

_MODE_DEPENDENT = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._BatchNorm)
"""Layers whose forward differs between training and eval mode."""

_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_load_state_dict_pre_hooks",
    "_buffers",
    "_non_persistent_buffers_set",
)
"""Per-module containers a view gets its own copy of, so that registering on the view never reaches the
user's module."""

_INERT = frozenset({bool, int, float, str, type(None), dict, OrderedDict, set})
"""Types of module attributes that never hold a parameter or a bound method (skipped when aliasing)."""

_ORIGINALS: weakref.WeakKeyDictionary[nn.Module, nn.Module] = weakref.WeakKeyDictionary()
"""View -> the user's module it stands for (for caches keyed by the user's model, and ``layer=`` modules)."""


def original(module: nn.Module) -> nn.Module:
    """The user's module behind a view (the module itself when it is not a view)."""
    return _ORIGINALS.get(module, module)


def _inert(value: Any) -> bool:
    """Whether ``value`` (or every item of a tuple or list, as ``kernel_size``) is of an :data:`_INERT` type; the
    test runs in C, as a view tests every attribute of every module."""
    kind = type(value)
    return kind in _INERT or ((kind is tuple or kind is list) and _INERT.issuperset(map(type, value)))


def _alias(value: Any, parameters: dict[int, Tensor]) -> Any:
    """A parameter (or a list/tuple holding parameters, as ``nn.LSTM._flat_weights``) with each parameter
    replaced by its detached alias."""
    if _is_parameter(value):
        alias = parameters.get(id(value))
        if alias is None:
            alias = parameters[id(value)] = value.detach()
        return alias
    if isinstance(value, (list, tuple)) and any(_is_parameter(v) for v in value):
        return type(value)(_alias(v, parameters) for v in value)
    return value


def _is_parameter(value: Any) -> bool:
    """``isinstance(value, nn.Parameter)``, with the fast tensor test first (``nn.Parameter``'s metaclass makes
    its own test slow, and a view tests every attribute of every module)."""
    return isinstance(value, Tensor) and isinstance(value, nn.Parameter)


def _rebound(value: Any, module: nn.Module, view: Callable[[nn.Module], nn.Module]) -> Any:
    """A method bound to a module of the model and stored on an instance (``model.forward =
    MethodType(f, model)``, as patching libraries do) bound to that module's view instead: otherwise the
    view would run the user's module, outside the call's eval mode and rules."""
    owner = getattr(value, "__self__", None)
    if isinstance(value, MethodType) and isinstance(owner, nn.Module):
        return MethodType(value.__func__, view(owner))
    return value


def model_view(model: nn.Module) -> nn.Module:
    """An eval-mode view of ``model`` sharing its tensors, with parameters detached (see the module doc).

    Tied parameters stay tied (one alias per parameter object), modules used twice stay one module.
    """
    parameters: dict[int, Tensor] = {}
    views: dict[int, nn.Module] = {}

    def view(module: nn.Module) -> nn.Module:
        done = views.get(id(module))
        if done is not None:
            return done
        copy = object.__new__(type(module))
        views[id(module)] = copy
        state = dict(module.__dict__)
        for key, value in state.items():
            if not _inert(value):
                state[key] = _rebound(_alias(value, parameters), module, view)
        for key in _HOOK_DICTS:
            if key in state:
                state[key] = state[key].copy()
        state["_parameters"] = {
            name: None if p is None else _alias(p, parameters) for name, p in module._parameters.items()
        }
        state["_modules"] = {name: None if m is None else view(m) for name, m in module._modules.items()}
        state["training"] = False
        equivalent = equivalent_forward(module)
        if equivalent is not None:
            state["forward"] = MethodType(equivalent, copy)
        copy.__dict__.update(state)
        _ORIGINALS[copy] = module
        return copy

    return view(model)


def view_of(view: nn.Module, module: nn.Module) -> nn.Module:
    """The module of ``view`` that stands for the user's ``module`` (itself when it already is one)."""
    for candidate in view.modules():
        if candidate is module or original(candidate) is module:
            return candidate
    raise ValueError(f"{type(module).__name__} is not a submodule of the model")


@contextmanager
def preserved_model(model: nn.Module, *, warn: bool = True) -> Iterator[nn.Module]:
    """Yield an eval-mode view of ``model`` with detached parameters (see the module doc); the user's model
    is never written to.

    A model with dropout or batch-norm layers in training mode gets a warning (unless ``warn=False``, for
    callers that evaluate a model in the middle of training it, like adversarial training's attack):
    gradattr attributes the deterministic eval-mode function; the model itself stays in training mode.
    """
    if warn and any(m.training and isinstance(m, _MODE_DEPENDENT) for m in model.modules()):
        warnings.warn(
            f"{type(model).__name__} is in training mode; gradattr computes attributions in eval mode "
            "(dropout off, batch-norm running statistics); the model itself stays in training mode.",
            stacklevel=4,
        )
    if isinstance(model, torch.jit.ScriptModule):
        raise TypeError("TorchScript modules cannot be attributed op by op; pass the original nn.Module")
    yield model_view(model)
