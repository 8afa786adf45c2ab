"""The model as a function of the attributed tensor: a layer's output (the embedding of a text model), or the
input with the model's extra keyword arguments held fixed."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gradattr.methods._model_call import ForwardKwargs, OutputSelector, Position
from gradattr.methods._problem import AttributionProblem, build_problem


class LayerFunction(nn.Module):
    """The model as a function of one layer's output, the model inputs held fixed (or, without a layer, of
    its input, its extra keyword arguments held fixed).

    ``forward(points)`` runs the model on ``model_inputs`` with the layer's output replaced by ``points``
    (rows: one per sample of ``model_inputs``, or, with ``sample``, any number of rows that all belong to that
    sample), so per-sample context after the layer (masks, lengths, ``forward_kwargs``) stays each sample's
    own; its output is the tensor ``output=`` and ``position=`` pick, (rows, C) or (rows,).

    Attributes:
        layer_output: the layer's own output for ``model_inputs`` (the point the attributions explain).
    """

    def __init__(self, problem: AttributionProblem, sample: int | None = None) -> None:
        super().__init__()
        self.model = problem.model
        self._problem = problem
        self._sample = sample

    @classmethod
    def of(
        cls,
        model: nn.Module,
        model_inputs: Tensor,
        layer: str | nn.Module | None,
        *,
        forward_kwargs: ForwardKwargs = None,
        output: OutputSelector = None,
        position: Position = None,
    ) -> LayerFunction:
        """The function for a batch of ``model_inputs`` (rows of ``forward`` = the batch's samples); with
        ``layer=None``, of the model's input."""
        call = {"forward_kwargs": forward_kwargs, "output": output, "position": position}
        return cls(build_problem(model, model_inputs, None, None, layer, **call))

    @property
    def layer_output(self) -> Tensor:
        return self._problem.inputs[0]

    def for_sample(self, sample: int) -> LayerFunction:
        """The function of sample ``sample`` alone: every row of ``forward`` is a variant of that sample."""
        return LayerFunction(self._problem, sample)

    def forward(self, points: Tensor) -> Tensor:
        rows = points.shape[0]
        if self._sample is not None:
            index = torch.full((rows,), self._sample, dtype=torch.long, device=points.device)
        elif rows == self._problem.batch_size:
            index = torch.arange(rows, device=points.device)
        else:
            raise ValueError(f"{rows} rows given for a batch of {self._problem.batch_size} samples")
        return self._problem.output((points,), index)
