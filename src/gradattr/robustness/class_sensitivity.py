"""Class sensitivity: does a method explain the class it is asked about? (Nielsen et al., "Robust
Explainability", IEEE SPM 2022, and its companion code; the idea goes back to Rebuffi et al., CVPR 2020.)

For each sample x, take the k classes with the largest logits c_1..c_k (k = 5 in Nielsen et al.'s code),
compute the maps R^{c_1}(x) .. R^{c_k}(x) and compare every pair by Spearman rank correlation (and by the
top-k intersection of their most important features). Different classes rely on different evidence, so a
useful method gives different maps for different classes: a low correlation. A method whose map is the same
whatever the class (an edge detector; in practice methods dominated by the input, or by the layers shared by
all classes) scores near 1.

All k targets of all samples are explained in one call of the method: the batch is repeated k times
(sample-major) with an explicit target per row.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from gradattr.files import write_csv
from gradattr.robustness._explainers import Methods, check_inputs, model_output, resolve_explainers
from gradattr.robustness._similarity import MEASURES, check_measures, default_measures, pairwise, resolve_top

COLUMNS: tuple[str, ...] = ("method", "measure", "mean", "std", "count")


@dataclass(frozen=True, eq=False)
class ClassSensitivityResult:
    """Pairwise similarity of the maps of each sample's top-k classes.

    Attributes:
        classes: LongTensor(B, k): each sample's k most likely classes, most likely first.
        matrices: method -> measure -> Tensor(B, k, k) float64, symmetric: entry [b, i, j] compares the
            maps of classes[b, i] and classes[b, j] (NaN where a map is constant).
        top_features: k of the top-k intersection.
        maps: with ``keep_maps``, method -> Tensor(B, k, ...) the maps of each sample's top-k classes.
    """

    classes: Tensor
    matrices: dict[str, dict[str, Tensor]]
    top_features: int
    maps: dict[str, Tensor] | None = None

    @property
    def methods(self) -> list[str]:
        return list(self.matrices)

    @property
    def measures(self) -> list[str]:
        return list(next(iter(self.matrices.values())))

    def per_sample(self, method: str, measure: str = "spearman") -> Tensor:
        """Tensor(B): each sample's mean over its k(k-1)/2 distinct class pairs (NaN pairs skipped)."""
        matrix = self._matrix(method, measure)
        count = matrix.shape[-1]
        first, second = torch.triu_indices(count, count, offset=1, device=matrix.device)
        return matrix[:, first, second].nanmean(dim=1)

    def mean(self, method: str, measure: str = "spearman") -> float:
        """The mean of :meth:`per_sample` over the samples where it is defined (NaN if none is)."""
        return float(self.per_sample(method, measure).nanmean())

    def mean_matrix(self, method: str, measure: str = "spearman") -> Tensor:
        """Tensor(k, k): the matrices averaged over samples (NaN skipped), rank 1 vs rank 2, ... ."""
        return self._matrix(method, measure).nanmean(dim=0)

    def rows(self) -> list[dict[str, Any]]:
        """One row per (method, measure) with the keys of :data:`COLUMNS`: mean, sample standard deviation
        (ddof 1) and count of the defined per-sample values."""
        rows = []
        for method in self.methods:
            for measure in self.measures:
                values = self.per_sample(method, measure)
                valid = values[~values.isnan()]
                mean = float(valid.mean()) if valid.numel() else math.nan
                std = float(valid.std()) if valid.numel() >= 2 else math.nan
                rows.append(dict(zip(COLUMNS, (method, measure, mean, std, valid.numel()), strict=True)))
        return rows

    def to_csv(self, path: str | Path) -> Path:
        """Write :meth:`rows` as CSV with a header of :data:`COLUMNS`."""
        return write_csv(path, self.rows(), COLUMNS)

    def __str__(self) -> str:
        """Mean pairwise similarity, methods as rows and measures as columns."""
        width = max(len("method"), *(len(m) for m in self.methods))
        lines = [f"{'method':<{width}}  " + "  ".join(f"{m:>17}" for m in self.measures)]
        for method in self.methods:
            cells = "  ".join(f"{self.mean(method, m):>17.3f}" for m in self.measures)
            lines.append(f"{method:<{width}}  {cells}")
        return "\n".join(lines)

    def _matrix(self, method: str, measure: str) -> Tensor:
        if method not in self.matrices:
            raise ValueError(f"unknown method {method!r}; this result has {self.methods}")
        if measure not in self.matrices[method]:
            raise ValueError(f"unknown measure {measure!r}; this result has {self.measures}")
        return self.matrices[method][measure]


def top_classes(model: nn.Module, inputs: Tensor, k: int) -> Tensor:
    """LongTensor(B, k): the k classes of largest output per sample, largest first.

    Raises:
        ValueError: the model does not output (B, C) scores, or k is not in 2..C.
    """
    output = model_output(model, inputs)
    if output.dim() != 2:
        raise ValueError(f"class sensitivity needs (B, C) class scores; the model returned {tuple(output.shape)}")
    classes = output.shape[1]
    if isinstance(k, bool) or not isinstance(k, int) or not 2 <= k <= classes:
        raise ValueError(f"k must be an int in 2..{classes} (the model's classes), got {k!r}")
    return output.topk(k, dim=1).indices


def class_sensitivity(
    model: nn.Module,
    inputs: Tensor,
    methods: Methods = "saliency",
    *,
    k: int = 5,
    measures: Sequence[str] | None = None,
    top_features: int | None = None,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    keep_maps: bool = False,
) -> ClassSensitivityResult:
    """Pairwise similarity of the maps of each sample's k most likely classes (Nielsen et al. 2022).

    Procedure: c_1..c_k = the k largest logits of x; R^{c_i}(x) for i = 1..k from one call of each method on
    the batch repeated k times (rows b*k + i explain class c_i of sample b); then measure(R^{c_i}, R^{c_j}) for
    every pair, per sample. Low Spearman = the method is class sensitive. The method sees B·k rows at once:
    pass fewer samples where B·k rows of the method's work do not fit in memory.

    Args:
        model: a classifier with (B, C) outputs (pre-softmax); it is not modified.
        inputs: Tensor (B, ...) of samples.
        methods: a method name, a list of names from :data:`gradattr.METHODS`, or label -> name or callable
            ``(model, inputs, target) -> maps``.
        k: number of top classes compared, 2 <= k <= C (Nielsen et al. use 5).
        measures: names from ``MEASURES``: ``"spearman"``, ``"spearman_abs"``, ``"ssim"`` (maps scaled to [0, 1],
            image maps only), ``"topk_intersection"``; default all that apply to the maps.
        top_features: k of the top-k intersection; default 10 % of the features per sample.
        method_options: label -> keyword arguments of :func:`gradattr.attribute` for the named methods.
        keep_maps: keep the maps, method -> Tensor(B, k, ...).

    Returns:
        A :class:`ClassSensitivityResult`: ``classes`` (B, k), ``matrices`` method -> measure -> (B, k, k),
        ``mean(method, measure)``, ``rows()``/``to_csv``.

    Example:
        >>> result = class_sensitivity(model, data.test_x[:32], ["saliency", "gradient_x_input"], k=5)
        >>> result.mean("saliency", "spearman")      # mean over samples and class pairs
        >>> result.matrices["saliency"]["spearman"].shape
        torch.Size([32, 5, 5])
    """
    explainers, names = resolve_explainers(methods, method_options), check_measures(measures)
    check_inputs(inputs)
    classes = top_classes(model, inputs, k)
    repeated = inputs.repeat_interleave(k, dim=0)
    targets = classes.reshape(-1)
    maps = {
        label: _class_maps(label, explain(model, repeated, targets), classes) for label, explain in explainers.items()
    }
    first = next(iter(maps.values()))
    features = resolve_top(first[0, 0].numel(), top_features)
    names = names or default_measures((first.shape[0], *first.shape[2:]))
    matrices = {label: {m: pairwise(values, MEASURES[m], features) for m in names} for label, values in maps.items()}
    return ClassSensitivityResult(classes, matrices, features, maps if keep_maps else None)


def _class_maps(label: str, maps: Tensor, classes: Tensor) -> Tensor:
    """The maps of the repeated batch (B*k, ...) as (B, k, ...)."""
    batch, k = classes.shape
    if not isinstance(maps, Tensor) or maps.dim() == 0 or maps.shape[0] != batch * k:
        shape = tuple(maps.shape) if isinstance(maps, Tensor) else type(maps).__name__
        raise ValueError(f"method {label!r} returned {shape}; expected maps with {batch * k} rows (B*k)")
    return maps.reshape(batch, k, *maps.shape[1:])
