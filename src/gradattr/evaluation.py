"""Sensitivity-n of several attribution methods over a data set, as one tidy table.

:func:`evaluate` streams the data in batches; for each batch it computes every method's attributions with
:func:`gradattr.attribute` and their Sensitivity-n (Ancona et al., ICLR 2018, Sec. 4.1, Def. 4) with
:func:`gradattr.metrics.sensitivity.measure`. The subsets are drawn once, from the seed, and shared by all
samples, batches and methods, so the output drops S_c(x) - S_c(x_[x_S = x̄]) of a batch are computed once
for all methods; only the attribution sums differ. Memory stays bounded by one batch: per-sample
correlations (a few numbers per sample) are all that is kept; a caller that wants more of each batch (the
maps, to measure agreement or completeness) passes ``on_batch``.

Text models take token ids, which have no gradient: with ``layer="embedding"`` the attributions are those of
the layer's output (as ``gradattr.attribute(..., layer=...)``), and Sensitivity-n removes features of that
output (e.g. whole tokens, ``feature_groups=torch.arange(L)``) by setting them to the baseline there, with
the model replayed from the layer on (:class:`LayerFunction`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from gradattr.engine import preserved_model
from gradattr.files import write_csv, write_text
from gradattr.groups import as_grouping
from gradattr.methods import METHODS, PAPER_METHODS, attribute
from gradattr.methods._problem import AttributionProblem, build_problem
from gradattr.metrics.sensitivity import SensitivityResult, SubsetPlan, measure

Data = Tensor | tuple[Tensor, Tensor] | Iterable[Any]
COLUMNS: tuple[str, ...] = ("method", "n", "mean", "std", "count")


@dataclass(frozen=True, eq=False)
class SensitivityTable:
    """Sensitivity-n of several methods on the same samples and subsets.

    Attributes:
        results: method -> :class:`SensitivityResult` over all evaluated samples (per-sample values kept).
        seconds: wall-clock time spent per method on attributions (``"attribute <method>"``) and on the
            forward passes of Sensitivity-n (``"sensitivity-n"``).
    """

    results: dict[str, SensitivityResult]
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def methods(self) -> list[str]:
        return list(self.results)

    @property
    def ns(self) -> list[int]:
        return next(iter(self.results.values())).ns

    @property
    def samples(self) -> int:
        return next(iter(self.results.values())).per_sample.shape[0]

    def rows(self) -> list[dict[str, Any]]:
        """One row per (method, n): ``{"method", "n", "mean", "std", "count"}`` (see :data:`COLUMNS`)."""
        return [{"method": method, **row} for method, result in self.results.items() for row in result.to_rows()]

    def pivot(self, value: Literal["mean", "std", "count"] = "mean") -> tuple[list[str], list[int], np.ndarray]:
        """``(methods, ns, array)`` with ``array[i, j]`` the ``value`` of method i at n = ns[j]."""
        if value not in ("mean", "std", "count"):
            raise ValueError(f"value must be 'mean', 'std' or 'count', got {value!r}")
        array = np.array([[row[value] for row in result.to_rows()] for result in self.results.values()])
        return self.methods, self.ns, array

    def to_csv(self, path: str | Path) -> Path:
        """Write :meth:`rows` as CSV with a header of :data:`COLUMNS` (NaN written as ``nan``)."""
        return write_csv(path, self.rows(), COLUMNS)

    def to_dict(self) -> dict[str, Any]:
        """Rows, settings and timings as JSON-ready values (NaN as ``None``)."""
        first = next(iter(self.results.values()))
        rows = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in self.rows()]
        settings = {
            "samples": self.samples,
            "ns": self.ns,
            "num_subsets": first.num_subsets,
            "num_features": first.num_features,
            "seed": first.seed,
        }
        return {"columns": list(COLUMNS), "rows": rows, "settings": settings, "seconds": dict(self.seconds)}

    def to_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON."""
        path = Path(path)
        write_text(path, json.dumps(self.to_dict(), indent=2))
        return path

    def __str__(self) -> str:
        """Mean correlation, methods as rows and n as columns, plus the number of valid samples."""
        methods, ns, means = self.pivot("mean")
        counts = self.pivot("count")[2]
        corner = "method \\ n"
        width = max(len(corner), *(len(m) for m in methods))
        lines = [f"{corner:<{width}} " + " ".join(f"{n:>6d}" for n in ns) + "   valid samples (min/max)"]
        for method, values, count in zip(methods, means, counts, strict=True):
            cells = " ".join(f"{v:6.3f}" if math.isfinite(v) else f"{'nan':>6}" for v in values)
            lines.append(f"{method:<{width}} {cells}   {int(count.min())}/{int(count.max())}")
        return "\n".join(lines)


class LayerFunction(nn.Module):
    """The model as a function of one layer's output, the model inputs held fixed.

    ``forward(points)`` runs the model on ``model_inputs`` with the layer's output replaced by ``points``
    (rows: one per sample of ``model_inputs``, or, with ``sample``, any number of rows that all belong to that
    sample), so per-sample context after the layer (masks, lengths) stays each sample's own.

    Attributes:
        layer_output: the layer's own output for ``model_inputs`` (the point the attributions explain).
    """

    def __init__(self, problem: AttributionProblem, sample: int | None = None) -> None:
        super().__init__()
        self.model = problem.model
        self._problem = problem
        self._sample = sample

    @classmethod
    def of(cls, model: nn.Module, model_inputs: Tensor, layer: str | nn.Module) -> LayerFunction:
        """The function for a batch of ``model_inputs`` (rows of ``forward`` = the batch's samples)."""
        return cls(build_problem(model, model_inputs, None, None, layer))

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


@dataclass(frozen=True, eq=False)
class EvaluatedBatch:
    """One batch as :func:`evaluate` saw it, handed to its ``on_batch`` callback.

    Attributes:
        inputs: the attributed tensor (B, ...): the model inputs, or the layer's output with ``layer``.
        targets: LongTensor(B), the attributed and scored class of each sample.
        maps: method -> attributions of ``inputs``' shape.
        function: the model as a function of ``inputs`` (the model itself, or a :class:`LayerFunction`).
        model_inputs: the batch as the model takes it (token ids for a text model).
    """

    inputs: Tensor
    targets: Tensor
    maps: dict[str, Tensor]
    function: nn.Module
    model_inputs: Tensor


def evaluate(
    model: nn.Module,
    data: Data,
    methods: Sequence[str] | None = None,
    *,
    target: Literal["label", "predicted"] = "label",
    ns: Iterable[int] | None = None,
    num_subsets: int = 100,
    baseline: float | Tensor = 0.0,
    batch_size: int = 100,
    feature_groups: Tensor | None = None,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    seed: int = 0,
    progress: bool = True,
    max_samples: int | None = None,
    max_elements: int | None = None,
    layer: str | nn.Module | None = None,
    on_batch: Callable[[EvaluatedBatch], None] | None = None,
) -> SensitivityTable:
    """Sensitivity-n of each method's attributions over a data set (Ancona et al., ICLR 2018, Sec. 4.1).

    For every sample and n: the Pearson correlation over ``num_subsets`` random subsets S of n features (or
    groups) between Σ_{i ∈ S} R_i and S_c(x) - S_c(x_[x_S = x̄]); the table reports its mean, standard deviation
    and the number of samples where it is defined, per method and n.

    Args:
        model: the classifier (pre-softmax outputs); its modes are restored afterwards.
        data: ``(x, y)`` tensors (cut into batches of ``batch_size``), an iterable of ``(x, y)`` batches (e.g.
            a ``DataLoader``, used as it batches), or a tensor ``x`` alone with ``target="predicted"``.
        methods: names from :data:`gradattr.METHODS`; default the paper's six (:data:`gradattr.PAPER_METHODS`).
        target: ``"label"`` attributes and scores the true class y, ``"predicted"`` the model's argmax.
        ns, num_subsets, baseline, feature_groups, seed, max_elements: as in :func:`gradattr.sensitivity_n`;
            ``baseline`` is the value removed features are set to (each method keeps its own default baseline,
            zero, unless ``method_options`` say otherwise).
        batch_size: samples per batch for tensor data.
        method_options: method -> keyword arguments of :func:`gradattr.attribute`, e.g.
            ``{"integrated_gradients": {"steps": 50}, "occlusion": {"window": 2}}``.
        progress: show a progress bar over the samples.
        max_samples: stop after this many samples.
        layer: attribute this submodule's output instead of the inputs (``"embedding"`` for the text models);
            Sensitivity-n then removes features of that output, ``feature_groups`` being a mask over its
            shape (e.g. ``torch.arange(L)`` for whole tokens of an (L, D) embedding).
        on_batch: called with an :class:`EvaluatedBatch` (inputs, targets, maps) after each batch.

    Returns:
        A :class:`SensitivityTable`: ``rows()`` (method, n, mean, std, count), ``pivot()``, ``to_csv``,
        ``to_json``, and the per-sample results in ``results``.

    Example:
        >>> table = gradattr.evaluate(model, (data.test_x, data.test_y), ["deeplift", "occlusion"])
        >>> table.to_csv("sensitivity.csv")
    """
    names = _check_methods(methods)
    options = _check_options(method_options, names)
    if target not in ("label", "predicted"):
        raise ValueError(f"target must be 'label' or 'predicted', got {target!r}")
    if max_samples is not None and (
        isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 1
    ):
        raise ValueError(f"max_samples must be a positive int or None, got {max_samples!r}")
    per_sample: dict[str, list[Tensor]] = {name: [] for name in names}
    seconds = {f"attribute {name}": 0.0 for name in names} | {"sensitivity-n": 0.0}
    plan: SubsetPlan | None = None
    done = 0
    bar = tqdm(total=_total(data, max_samples), desc="sensitivity-n", unit="sample", disable=not progress)
    try:
        for x, y in _batches(data, batch_size, target):
            if max_samples is not None:
                x, y = x[: max_samples - done], None if y is None else y[: max_samples - done]
            function: nn.Module = model if layer is None else LayerFunction.of(model, x, layer)
            attributed = x if layer is None else function.layer_output
            grouping = as_grouping(feature_groups, attributed.shape[1:], x.device)
            if plan is None:
                plan = SubsetPlan.draw(grouping.num_groups, ns, num_subsets, seed)
            classes = _targets(model, x, y if target == "label" else None)
            maps = {}
            for name in names:
                start = time.perf_counter()
                maps[name] = attribute(model, x, method=name, target=classes, layer=layer, **options.get(name, {}))
                seconds[f"attribute {name}"] += time.perf_counter() - start
            start = time.perf_counter()
            if layer is None:
                batch = measure(
                    model, x, maps, target=classes, plan=plan, baseline=baseline, grouping=grouping,
                    max_elements=max_elements,
                )  # fmt: skip
            else:
                batch = _measure_per_sample(function, maps, classes, plan, baseline, grouping, max_elements)
            seconds["sensitivity-n"] += time.perf_counter() - start
            for name, values in batch.items():
                per_sample[name].append(values)
            if on_batch is not None:
                on_batch(EvaluatedBatch(attributed, classes, maps, function, x))
            done += x.shape[0]
            bar.update(x.shape[0])
            if max_samples is not None and done >= max_samples:
                break
    finally:
        bar.close()
    if plan is None:
        raise ValueError("data yielded no samples")
    results = {
        name: SensitivityResult(list(plan.ns), torch.cat(values), plan.num_subsets, plan.num_features, seed)
        for name, values in per_sample.items()
    }
    return SensitivityTable(results, seconds)


def _measure_per_sample(
    function: LayerFunction,
    maps: Mapping[str, Tensor],
    classes: Tensor,
    plan: SubsetPlan,
    baseline: float | Tensor,
    grouping: Any,
    max_elements: int | None,
) -> dict[str, Tensor]:
    """Sensitivity-n on a layer's output, one sample at a time (the replayed model needs each variant's own
    model inputs, which are those of the one sample all its rows belong to)."""
    inputs = function.layer_output
    rows = []
    for i in range(inputs.shape[0]):
        sample = slice(i, i + 1)
        rows.append(
            measure(
                function.for_sample(i),
                inputs[sample],
                {name: r[sample] for name, r in maps.items()},
                target=classes[sample],
                plan=plan,
                baseline=baseline,
                grouping=grouping,
                max_elements=max_elements,
            )
        )
    return {name: torch.cat([row[name] for row in rows]) for name in maps}


def _check_methods(methods: Sequence[str] | None) -> list[str]:
    if methods is None:
        return list(PAPER_METHODS)
    if isinstance(methods, str):
        methods = [methods]
    names = list(methods)
    unknown = [m for m in names if m not in METHODS]
    if unknown or not names:
        raise ValueError(f"unknown or no methods {unknown}; choose from {', '.join(METHODS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"methods are listed twice: {names}")
    return names


def _check_options(options: Mapping[str, Mapping[str, Any]] | None, names: list[str]) -> dict[str, dict[str, Any]]:
    if options is None:
        return {}
    stray = sorted(set(options) - set(names))
    if stray:
        raise ValueError(f"method_options for {', '.join(stray)}, which are not among the methods {names}")
    return {name: dict(values) for name, values in options.items()}


def _total(data: Data, max_samples: int | None) -> int | None:
    """Number of samples the progress bar expects, when it can be known without iterating."""
    if isinstance(data, Tensor):
        known: int | None = data.shape[0]
    elif _is_pair(data):
        known = data[0].shape[0]
    else:
        dataset = getattr(data, "dataset", None)
        known = len(dataset) if hasattr(dataset, "__len__") else None
    if known is None:
        return max_samples
    return known if max_samples is None else min(known, max_samples)


def _is_pair(data: Any) -> bool:
    return isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, Tensor) for t in data)


def _batches(data: Data, batch_size: int, target: str) -> Iterator[tuple[Tensor, Tensor | None]]:
    """(x, y) batches from tensors or from an iterable of batches; y is None for bare inputs."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if isinstance(data, Tensor) or _is_pair(data):
        batches: Iterable[Any] = _slices(*((data, None) if isinstance(data, Tensor) else data), batch_size)
    else:
        batches = data
    for item in batches:
        x, y = _unpack(item)
        if y is None and target == "label":
            raise ValueError("target='label' needs labels: pass (x, y) or batches of (x, y), or use target='predicted'")
        if x.shape[0]:
            yield x, y


def _slices(inputs: Tensor, labels: Tensor | None, batch_size: int) -> Iterator[Tensor | tuple[Tensor, Tensor]]:
    if labels is not None and labels.shape[0] != inputs.shape[0]:
        raise ValueError(f"data has {inputs.shape[0]} inputs but {labels.shape[0]} labels")
    for start in range(0, inputs.shape[0], batch_size):
        rows = slice(start, start + batch_size)
        yield inputs[rows] if labels is None else (inputs[rows], labels[rows])


def _unpack(item: Any) -> tuple[Tensor, Tensor | None]:
    if isinstance(item, Tensor):
        return item, None
    if isinstance(item, (tuple, list)) and len(item) >= 2 and isinstance(item[0], Tensor):
        return item[0], torch.as_tensor(item[1])
    raise TypeError(f"each batch must be a tensor x or a pair (x, y) of tensors, got {type(item).__name__}")


def _targets(model: nn.Module, x: Tensor, y: Tensor | None) -> Tensor:
    """The class to attribute and score: the label, or the model's argmax when ``y`` is None."""
    if y is not None:
        return y.to(device=x.device, dtype=torch.long)
    with preserved_model(model), torch.no_grad():
        return model(x).argmax(dim=1)
