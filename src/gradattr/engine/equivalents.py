"""Modules whose forward hides its ops inside a custom ``torch.autograd.Function``, evaluated on the call's view
as the plain torch function the Function wraps.

Inside an ``autograd.Function``'s forward the gradient is off and its own backward replaces the ops' derivatives,
so no rule can reach those ops; the engine refuses such a Function by name (:mod:`gradattr.engine.interception`).
Where the Function only wraps a function written in torch ops, with its hand-derived gradient as backward,
evaluating that function instead changes no value and no gradient beyond rounding, and lets every rule apply —
what LXT and Zennit do by patching a model family's modules. Here it is done on the view of the model that every
call evaluates (:func:`gradattr.engine.hygiene.model_view`): the user's modules are never patched.

:data:`EQUIVALENT_FORWARDS` is the table, by the module class's qualified name: the name of the plain function
(in the class's own Python module) that takes the module's ``forward`` arguments.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from torch import nn

EQUIVALENT_FORWARDS: dict[str, str] = {
    # BLOOM's GELU: GeLUFunction wraps bloom_gelu_forward (tanh approximation) with bloom_gelu_back
    "transformers.models.bloom.modeling_bloom.BloomGelu": "bloom_gelu_forward",
}


def equivalent_forward(module: nn.Module) -> Callable[..., Any] | None:
    """The plain function to evaluate instead of ``module.forward`` (as a method: ``self`` first), or ``None``."""
    cls = type(module)
    name = EQUIVALENT_FORWARDS.get(f"{cls.__module__}.{cls.__qualname__}")
    function = None if name is None else getattr(sys.modules.get(cls.__module__), name, None)
    if function is None:
        return None

    def forward(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
        return function(*args, **kwargs)

    return forward
