"""One batch of an evaluation as the metrics and observers see it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn


@dataclass(frozen=True, eq=False)
class EvaluatedBatch:
    """One batch as :func:`~gradattr.evaluation.evaluate` saw it, handed to its metrics and its ``on_batch``
    callback.

    Attributes:
        inputs: the attributed tensor (B, ...): the model inputs, or the layer's output with ``layer``.
        targets: LongTensor(B), the attributed and scored class of each sample.
        maps: method label -> attributions of ``inputs``' shape.
        function: the model as a function of ``inputs`` (the model itself, or a
            :class:`~gradattr.evaluation.LayerFunction`).
        model_inputs: the batch as the model takes it (token ids for a text model).
        first: the index of the batch's first sample in the evaluated data (to slice per-sample extras, such
            as ground-truth masks, that a metric holds for the whole data).
        model: the user's model, as it takes ``model_inputs``.
        call: the model's extra keyword arguments and output reading for this batch (``forward_kwargs``,
            ``output``, ``position``, as :func:`gradattr.attribute` takes them).
        layer: the attributed layer, or None (the inputs).
        methods: row label -> the method name that made its maps.
        method_options: row label -> that method's options (keyword arguments of :func:`gradattr.attribute`).
    """

    inputs: Tensor
    targets: Tensor
    maps: dict[str, Tensor]
    function: nn.Module
    model_inputs: Tensor
    first: int = 0
    model: nn.Module | None = None
    call: dict[str, Any] = field(default_factory=dict)
    layer: str | nn.Module | None = None
    methods: dict[str, str] = field(default_factory=dict)
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
