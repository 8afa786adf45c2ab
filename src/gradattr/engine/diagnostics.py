"""Where a NaN or infinity first appears in a forward pass, so an error can name the op and the module.

Attributions of finite inputs that come out non-finite are an error (:func:`gradattr.attribute` raises
``FloatingPointError``). The cause is either in the forward pass — an op producing NaN/inf, e.g. ``log`` of
0, a division by 0, an overflowing ``exp`` — or in the backward pass (a derivative that is infinite where the
function is finite, ``sqrt`` at 0). :func:`first_non_finite` replays the forward pass under a
``TorchFunctionMode`` that checks every op's result and reports the first non-finite one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from gradattr.engine.interception import current_module_path, op_name


class _FirstNonFinite(TorchFunctionMode):
    """Records the first op call whose floating result holds a NaN or an infinity."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.found: tuple[str, str] | None = None

    def __torch_function__(
        self, func: Callable[..., Any], types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        result = func(*args, **(kwargs or {}))
        if (
            self.found is None
            and isinstance(result, Tensor)
            and result.is_floating_point()
            and result.numel()
            and not bool(torch.isfinite(result).all())
        ):
            self.found = (op_name(func), current_module_path(self.model))
        return result


def first_non_finite(model: nn.Module, forward: Callable[[], Any]) -> str:
    """Run ``forward()`` (a forward pass of ``model``, without gradients) and describe where the first
    non-finite value appears: ``"'torch.log' in module 'head'"``, or a sentence saying the forward pass is
    finite (so the backward pass produced it)."""
    mode = _FirstNonFinite(model)
    with torch.no_grad(), mode:
        forward()
    if mode.found is None:
        return (
            "the forward pass is finite, so the backward pass produced it (a derivative that is infinite where "
            "the function is finite, such as sqrt or a power below 1 at 0)"
        )
    name, where = mode.found
    return f"the first NaN/inf of the forward pass comes from '{name}' in module '{where}'"
