"""Checking a method's options against the type hints of its keyword-only parameters.

A method declares its options as keyword-only parameters with type hints (``steps: int = 100``,
``window: Window = 1``, ``variant: Literal["smoothgrad", ...]``); :func:`check_option` holds a value against
its hint, so a wrong type gets the same clear error for every method. Element types of sequences and
ranges of numbers are the method's own checks.
"""

from __future__ import annotations

import collections.abc
import types
import typing
from collections.abc import Callable
from functools import cache
from typing import Any

from torch import Tensor


@cache
def option_hints(function: Callable[..., Any]) -> dict[str, Any]:
    """The resolved type hints of ``function``'s parameters (string annotations evaluated)."""
    return typing.get_type_hints(function)


def matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits ``hint``: bool/int/float/str/None/Tensor, unions, ``Literal`` and sequences
    (a tuple or list, elements unchecked); hints it cannot judge (callables, ``Any``) accept anything."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, arg) for arg in typing.get_args(hint))
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if origin in (collections.abc.Sequence, tuple, list):
        return isinstance(value, (tuple, list))
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint in (str, Tensor):
        return isinstance(value, hint)
    if hint is type(None):
        return value is None
    if isinstance(hint, type) and hint.__module__.startswith("gradattr"):
        return isinstance(value, hint)  # gradattr's own option classes (a RuleSet)
    return True


_NAMES = {bool: "True or False", int: "an int", float: "a number", str: "a string", type(None): "None"}


def describe(hint: Any) -> str:
    """A readable form of a hint for messages: ``an int or a sequence``, ``'smoothgrad' or 'vargrad'``."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(dict.fromkeys(describe(arg) for arg in typing.get_args(hint)))
    if origin is typing.Literal:
        return " or ".join(repr(a) for a in typing.get_args(hint))
    if origin in (collections.abc.Sequence, tuple, list):
        return "a sequence"
    return _NAMES.get(hint, getattr(hint, "__name__", str(hint)))


def check_option(method: str, function: Callable[..., Any], name: str, value: Any) -> None:
    """Raise a TypeError naming ``method``'s option ``name``, its expected type and the value given (a
    ValueError for a string outside a ``Literal``'s values)."""
    hint = option_hints(function).get(name)
    if hint is None or matches(value, hint):
        return
    message = f"{method} option {name} must be {describe(hint)}, got {type(value).__name__} {value!r}"
    choices = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    if isinstance(value, str) and any(typing.get_origin(choice) is typing.Literal for choice in choices):
        raise ValueError(message)  # the right type, not one of the allowed values
    raise TypeError(message)
