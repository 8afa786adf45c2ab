"""Sensitivity-n of several attribution methods over a data set, as one tidy table.

:func:`evaluate` streams the data in batches; for each batch it computes every method's attributions with
:func:`gradattr.attribute` and their Sensitivity-n (Ancona et al., ICLR 2018, Sec. 4.1, Def. 4) with
:func:`gradattr.metrics.sensitivity.measure`. The subsets are drawn once, from the seed, and shared by all
samples, batches and methods, so the output drops S_c(x) - S_c(x_[x_S = x̄]) of a batch are computed once
for all methods; only the attribution sums differ. Memory stays bounded by one batch: per-sample
correlations (a few numbers per sample) are all that is kept; a caller that wants more of each batch (the
maps, to measure agreement or completeness) passes ``on_batch``.

Methods are rows under labels: a list of names labels each row by its method, and a mapping label -> method
name runs one method under several labels with their own ``method_options`` (occlusion of 4x4 patches and of
single pixels, say); the table, the checkpoint and the maps handed to ``on_batch`` use the labels.

Text models take token ids, which have no gradient: with ``layer="embedding"`` the attributions are those of
the layer's output (as ``gradattr.attribute(..., layer=...)``), and Sensitivity-n removes features of that
output (e.g. whole tokens, ``feature_groups=torch.arange(L)``) by setting them to the baseline there, with
the model replayed from the layer on (:class:`LayerFunction`).

Long evaluations resume: with ``checkpoint=``, the per-sample results of the finished batches (and the state
of a :class:`ResumableObserver` passed as ``on_batch``) are saved after every batch (:mod:`gradattr.progress`),
and a later call with the same model, data and settings skips those batches. Every batch is computed from
the same seeds and subsets either way, so the table is the one an uninterrupted run gives.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from gradattr.engine import preserved_model
from gradattr.evaluation.batch import EvaluatedBatch
from gradattr.evaluation.metric import Metric, MetricResult, SensitivityN
from gradattr.files import write_csv, write_text
from gradattr.methods import METHODS, PAPER_METHODS, attribute
from gradattr.methods._model_call import ForwardKwargs, ModelCall, OutputSelector, Position
from gradattr.methods._problem import AttributionProblem, build_problem
from gradattr.methods.labelled import labelled_entries
from gradattr.metrics.sensitivity import SensitivityResult
from gradattr.progress import as_floats, fingerprint, load_entry, save_entry

Data = Tensor | tuple[Tensor, Tensor] | Iterable[Any]
Methods = Sequence[str] | Mapping[str, str]
"""Method names (each labels its own row) or label -> method name (:func:`method_rows`)."""
COLUMNS: tuple[str, ...] = ("method", "n", "mean", "std", "count")


@dataclass(frozen=True, eq=False)
class SensitivityTable:
    """Sensitivity-n of several methods on the same samples and subsets.

    Attributes:
        results: method label -> :class:`SensitivityResult` over all evaluated samples (per-sample values kept).
        seconds: wall-clock time spent per method label on attributions (``"attribute <label>"``) and on the
            forward passes of Sensitivity-n (``"sensitivity-n"``), also of batches computed before a resume.
        resumed: batches taken from :func:`evaluate`'s checkpoint instead of computed.
        metrics: the other metrics measured beside Sensitivity-n (:func:`evaluate`'s ``metrics=``): name ->
            :class:`~gradattr.evaluation.MetricResult` (per label, the per-sample values of every sample).
    """

    results: dict[str, SensitivityResult]
    seconds: dict[str, float] = field(default_factory=dict)
    resumed: int = 0
    metrics: dict[str, MetricResult] = field(default_factory=dict)

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
        return {"columns": list(COLUMNS), "rows": rows, "settings": settings, "seconds": dict(self.seconds),
                **({"metrics": [m.to_dict() for m in self.metrics.values()]} if self.metrics else {})}  # fmt: skip

    def to_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON."""
        path = Path(path)
        write_text(path, json.dumps(self.to_dict(), indent=2))
        return path

    def to_state(self) -> dict[str, Any]:
        """The table as plain values (tensors, numbers, strings) for a progress entry; see :meth:`from_state`."""
        results = {
            name: {"ns": list(r.ns), "per_sample": r.per_sample, "num_subsets": r.num_subsets,
                   "num_features": r.num_features, "seed": r.seed}
            for name, r in self.results.items()
        }  # fmt: skip
        metrics = {name: dict(m.per_sample) for name, m in self.metrics.items()}
        return {"results": results, "seconds": dict(self.seconds), "metrics": metrics}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> SensitivityTable:
        """Inverse of :meth:`to_state`.

        Raises:
            ValueError: ``state`` is not such a table.
        """
        results = {}
        for name, result in state["results"].items():
            per_sample = result["per_sample"]
            if not isinstance(per_sample, Tensor) or per_sample.dim() != 2 or per_sample.shape[1] != len(result["ns"]):
                raise ValueError(f"per-sample values of {name!r} are not a (samples, ns) tensor")
            results[name] = SensitivityResult(
                [int(n) for n in result["ns"]], per_sample, int(result["num_subsets"]), int(result["num_features"]),
                int(result["seed"]),
            )  # fmt: skip
        if not results:
            raise ValueError("a Sensitivity-n table without methods")
        metrics = {}
        for name, per_sample in state.get("metrics", {}).items():
            if not all(isinstance(v, Tensor) and v.dim() in (1, 2) for v in per_sample.values()):
                raise ValueError(f"per-sample values of metric {name!r} are not tensors of one row per sample")
            metrics[str(name)] = MetricResult(str(name), dict(per_sample))
        return cls(results, as_floats(state["seconds"]), metrics=metrics)

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


@runtime_checkable
class ResumableObserver(Protocol):
    """An ``on_batch`` observer of :func:`evaluate` whose accumulated state goes into the checkpoint.

    ``state_dict()`` returns a copy of the state as plain values (tensors, numbers, strings, lists, dicts);
    ``load_state_dict(state)`` restores it and raises ``ValueError`` for a state that is not its own kind.
    """

    def __call__(self, batch: EvaluatedBatch) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class _Partial:
    """The batches :func:`evaluate` has finished, as its checkpoint holds them.

    Attributes:
        digests: per finished batch, the :func:`~gradattr.progress.fingerprint` of its inputs and labels.
        per_sample: method label -> per finished batch, Tensor(B, len(ns)) of per-sample correlations.
        seconds: accumulated timings, as :attr:`SensitivityTable.seconds`.
        num_features: N of the subset plan (None before the first batch).
        metrics: metric name -> per finished batch, row label -> its per-sample values (B,) or (B, K).
    """

    digests: list[str]
    per_sample: dict[str, list[Tensor]]
    seconds: dict[str, float]
    num_features: int | None = None
    metrics: dict[str, list[dict[str, Tensor]]] = field(default_factory=dict)

    @classmethod
    def start(cls, names: Sequence[str], metrics: Sequence[str] = ()) -> _Partial:
        seconds = {f"attribute {name}": 0.0 for name in names} | {"sensitivity-n": 0.0}
        seconds |= {f"metric {metric}": 0.0 for metric in metrics}
        return cls([], {name: [] for name in names}, seconds, metrics={metric: [] for metric in metrics})

    def reset(self) -> None:
        """Forget every finished batch (in place)."""
        self.digests.clear()
        for values in (*self.per_sample.values(), *self.metrics.values()):
            values.clear()
        self.seconds.update(dict.fromkeys(self.seconds, 0.0))
        self.num_features = None

    def to_state(self, observer: ResumableObserver | None) -> dict[str, Any]:
        return {
            "digests": self.digests, "per_sample": self.per_sample, "seconds": self.seconds,
            "num_features": self.num_features, "observer": observer.state_dict() if observer is not None else None,
            "metrics": self.metrics,
        }  # fmt: skip

    @classmethod
    def from_state(
        cls, state: Mapping[str, Any], names: Sequence[str], metrics: Sequence[str], observer: ResumableObserver | None
    ) -> _Partial:
        """The partial result in ``state`` (an entry's payload); restores ``observer``'s state from it.

        Raises:
            ValueError: ``state`` does not hold a partial evaluation of ``names`` and ``metrics``.
        """
        digests, per_sample = list(state["digests"]), dict(state["per_sample"])
        measured = dict(state.get("metrics", {}))
        if not all(isinstance(d, str) for d in digests) or list(per_sample) != list(names) or list(measured) != list(
            metrics
        ):
            raise ValueError("batch digests, methods or metrics do not match")
        for values in per_sample.values():
            if len(values) != len(digests) or not all(isinstance(v, Tensor) and v.dim() == 2 for v in values):
                raise ValueError("per-sample results do not match the finished batches")
        for batches in measured.values():
            if len(batches) != len(digests) or not all(
                isinstance(b, dict) and list(b) == list(names) and all(isinstance(v, Tensor) for v in b.values())
                for b in batches
            ):
                raise ValueError("per-sample metric values do not match the finished batches")
        num_features = state["num_features"]
        if digests and not isinstance(num_features, int):
            raise ValueError("no feature count for the finished batches")
        seconds = as_floats(state["seconds"])
        if observer is not None:
            observer.load_state_dict(state["observer"])
        values = {name: list(batches) for name, batches in per_sample.items()}
        return cls(digests, values, seconds, num_features, {name: list(b) for name, b in measured.items()})


def evaluate(
    model: nn.Module,
    data: Data,
    methods: Methods | None = None,
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
    checkpoint: str | Path | None = None,
    forward_kwargs: ForwardKwargs = None,
    output: OutputSelector = None,
    position: Position = None,
    max_fraction: float = 1.0,
    removal: Literal["layer", "input"] = "layer",
    metrics: Sequence[Metric] = (),
) -> SensitivityTable:
    """Sensitivity-n of each method's attributions over a data set (Ancona et al., ICLR 2018, Sec. 4.1).

    For every sample and n: the Pearson correlation over ``num_subsets`` random subsets S of n features (or
    groups) between Σ_{i ∈ S} R_i and S_c(x) - S_c(x_[x_S = x̄]); the table reports its mean, standard deviation
    and the number of samples where it is defined, per method and n.

    Args:
        model: the classifier (pre-softmax outputs); its modes are restored afterwards.
        data: ``(x, y)`` tensors (cut into batches of ``batch_size``), an iterable of ``(x, y)`` batches (e.g.
            a ``DataLoader``, used as it batches), or a tensor ``x`` alone with ``target="predicted"``.
        methods: names from :data:`gradattr.METHODS`, each the label of its row, or a mapping label -> method
            name, e.g. ``{"occlusion": "occlusion", "occlusion_pixels": "occlusion"}`` (one method under several
            labels, each with its own ``method_options``); default the paper's six (:data:`gradattr.PAPER_METHODS`).
        target: ``"label"`` attributes and scores the true class y, ``"predicted"`` the model's argmax.
        ns, num_subsets, baseline, feature_groups, seed, max_elements, max_fraction: as in
            :func:`gradattr.sensitivity_n` (the default grid runs up to n = N, where the correlation is NaN
            with no valid sample: Sensitivity-N is completeness; ``max_fraction=0.8`` gives the older grid);
            ``baseline`` is the value removed features are set to (each method keeps its own default baseline,
            zero, unless ``method_options`` say otherwise).
        batch_size: samples per batch for tensor data.
        method_options: method label -> keyword arguments of :func:`gradattr.attribute`, e.g.
            ``{"integrated_gradients": {"steps": 50}, "occlusion": {"window": (4, 4), "stride": (4, 4)}}``.
        progress: show a progress bar over the samples.
        max_samples: stop after this many samples.
        layer: attribute this submodule's output instead of the inputs (``"embedding"`` for the text models);
            Sensitivity-n then removes features of that output, ``feature_groups`` being a mask over its
            shape (e.g. ``torch.arange(L)`` for whole tokens of an (L, D) embedding).
        removal: with ``layer``, where Sensitivity-n removes a feature: ``"layer"`` (default) sets it to
            ``baseline`` in the layer's output; ``"input"`` sets the model's input feature to ``baseline``
            (e.g. a token id to the pad id: the model then sees the token as padding, masks included), the
            layer's attributions summed over its dimensions beyond the input's (R of token i = Σ_d R_{i,d});
            ``feature_groups`` then group the input's features.
        on_batch: called with an :class:`EvaluatedBatch` (inputs, targets, maps) after each batch computed
            (not for batches taken from the checkpoint); with ``checkpoint`` it must be a
            :class:`ResumableObserver`, whose state is saved and restored with the batches.
        checkpoint: a file for the finished batches, rewritten atomically after each one. If it holds
            batches of the same model (weights), data, methods and settings, they are not computed again:
            the evaluation resumes at the first unfinished batch, and the table equals that of an
            uninterrupted run. A checkpoint of other settings is replaced; an unreadable one is replaced
            with a :class:`~gradattr.progress.ProgressWarning`. Batches of an iterable are checked
            against the saved ones: they must come in the same order (not from a shuffling ``DataLoader``).
            The file is kept after the evaluation (a repeated call returns at once); delete it when done.
        forward_kwargs: extra keyword arguments of ``model.forward`` (as in :func:`gradattr.attribute`). With
            tensor data, a tensor whose first dimension is the number of samples is per-sample and cut into
            batches with the data; with an iterable of batches, the values are used for every batch, and a
            batch ``(x, y, kwargs)`` adds its own dict. Every attribution and Sensitivity-n pass gives each row
            its sample's values.
        output, position: as in :func:`gradattr.attribute` (``position`` may hold one int per sample of
            tensor data).

    Returns:
        A :class:`SensitivityTable`: ``rows()`` (method, n, mean, std, count), ``pivot()``, ``to_csv``,
        ``to_json``, the per-sample results in ``results``, and ``resumed``, the batches taken from the
        checkpoint.

    Raises:
        ValueError: bad arguments, no samples, or batches that differ from the checkpoint's after the first.
        TypeError: ``checkpoint`` with an ``on_batch`` that is not a :class:`ResumableObserver`.

    Example:
        >>> table = gradattr.evaluate(model, (data.test_x, data.test_y), ["deeplift", "occlusion"])
        >>> table.to_csv("sensitivity.csv")
        >>> rows = {"occlusion": "occlusion", "occlusion_pixels": "occlusion"}
        >>> patches = {"window": (4, 4), "stride": (4, 4)}
        >>> table = gradattr.evaluate(model, data, rows, method_options={"occlusion": patches},
        ...                           feature_groups=gradattr.patches((1, 28, 28), 4))
    """
    rows = method_rows(methods)
    names = list(rows)
    options = check_method_options(method_options, names)
    sensitivity = SensitivityN(ns, num_subsets, baseline, feature_groups, seed, max_fraction, removal, max_elements)
    metrics = check_metrics(metrics)
    if target not in ("label", "predicted"):
        raise ValueError(f"target must be 'label' or 'predicted', got {target!r}")
    if max_samples is not None and (
        isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 1
    ):
        raise ValueError(f"max_samples must be a positive int or None, got {max_samples!r}")
    resume = _Resume.open(
        checkpoint, names, [metric.name for metric in metrics], on_batch,
        {"model": repr(model), "weights": model.state_dict(), "data": _fixed(data), "methods": rows,
         "options": options, "target": target, **sensitivity.config(), "batch_size": batch_size,
         "max_samples": max_samples, "layer": layer, "forward_kwargs": forward_kwargs, "output": _named(output),
         "position": position, **({"metrics": [m.config() for m in metrics]} if metrics else {})},
    )  # fmt: skip
    partial = resume.partial
    done = 0
    bar = tqdm(total=_total(data, max_samples), desc="sensitivity-n", unit="sample", disable=not progress)
    try:
        given = {"forward_kwargs": forward_kwargs, "output": output, "position": position}
        for index, (x, y, batch_call) in enumerate(_batches(data, batch_size, target, given)):
            if max_samples is not None:
                x, y = x[: max_samples - done], None if y is None else y[: max_samples - done]
            call = batch_call.rows(torch.arange(x.shape[0])).as_options()
            if not resume.finished(index, x, y):
                bound = layer is not None or any(v is not None for v in call.values())  # kwargs or output=
                function: nn.Module = LayerFunction.of(model, x, layer, **call) if bound else model
                attributed = x if layer is None else function.layer_output
                classes = _targets(model, x, y if target == "label" else None, call)
                maps = {}
                for name in names:
                    start = time.perf_counter()
                    maps[name] = attribute(
                        model, x, method=rows[name], target=classes, layer=layer, **call, **options.get(name, {})
                    )
                    partial.seconds[f"attribute {name}"] += time.perf_counter() - start
                evaluated = EvaluatedBatch(attributed, classes, maps, function, x, done, model, call, layer)
                start = time.perf_counter()
                batch = sensitivity.measure(evaluated)
                partial.num_features = sensitivity.plan.num_features  # type: ignore[union-attr]
                partial.seconds["sensitivity-n"] += time.perf_counter() - start
                measured = {}
                for metric in metrics:
                    start = time.perf_counter()
                    measured[metric.name] = metric.measure(evaluated)
                    partial.seconds[f"metric {metric.name}"] += time.perf_counter() - start
                if on_batch is not None:
                    on_batch(evaluated)
                resume.save(x, y, batch, measured)
            done += x.shape[0]
            bar.update(x.shape[0])
            if max_samples is not None and done >= max_samples:
                break
    finally:
        bar.close()
    if partial.num_features is None:
        raise ValueError("data yielded no samples")
    plan = sensitivity.plan_for(partial.num_features)  # drawn anew when every batch came from the checkpoint
    results = {
        name: SensitivityResult(list(plan.ns), torch.cat(values), plan.num_subsets, plan.num_features, seed)
        for name, values in partial.per_sample.items()
    }
    quality = {name: MetricResult.concat(name, parts) for name, parts in partial.metrics.items()}
    return SensitivityTable(results, dict(partial.seconds), resume.skipped, quality)


class _Resume:
    """:func:`evaluate`'s checkpoint: which batches are finished, and saving each new one."""

    def __init__(
        self, path: Path | None, key: str, partial: _Partial, observer: ResumableObserver | None, initial: Any
    ) -> None:
        self.path = path
        self.key = key
        self.partial = partial
        self.observer = observer
        self.initial = initial
        self.skipped = 0

    @classmethod
    def open(
        cls,
        path: str | Path | None,
        names: list[str],
        metrics: list[str],
        on_batch: Callable[[EvaluatedBatch], None] | None,
        settings: dict[str, Any],
    ) -> _Resume:
        """The checkpoint at ``path`` (None: no checkpoint), keyed by ``settings`` and the observer's initial
        state; its finished batches if it holds batches of the same key, else nothing finished."""
        if path is None:
            return cls(None, "", _Partial.start(names, metrics), None, None)
        if on_batch is not None and not isinstance(on_batch, ResumableObserver):
            raise TypeError(
                "with checkpoint=, on_batch must be a ResumableObserver (with state_dict() and load_state_dict()) "
                f"so that its state resumes too; got {type(on_batch).__name__}"
            )
        observer = on_batch
        initial = observer.state_dict() if observer is not None else None
        key = fingerprint(settings | {"observer": initial})
        partial = load_entry(path, key, lambda state: _Partial.from_state(state, names, metrics, observer))
        resume = cls(Path(path), key, partial or _Partial.start(names, metrics), observer, initial)
        if partial is None:
            resume.restart()
        return resume

    def restart(self) -> None:
        """Forget the finished batches; the observer returns to its initial state."""
        self.partial.reset()
        if self.observer is not None:
            self.observer.load_state_dict(self.initial)

    def finished(self, index: int, x: Tensor, y: Tensor | None) -> bool:
        """Whether batch ``index`` is in the checkpoint (then it is counted as skipped).

        Raises:
            ValueError: the checkpoint holds a different batch ``index`` after matching earlier ones.
        """
        digests = self.partial.digests
        if self.path is None or index >= len(digests):
            return False
        if _digest(x, y) == digests[index]:
            self.skipped += 1
            return True
        if index > 0:
            raise ValueError(
                f"{self.path}: batch {index} differs from the one checkpointed; resuming needs the same batches "
                "in the same order (not a shuffling DataLoader); delete the checkpoint to start over"
            )
        self.restart()  # other data from the first batch on: nothing to reuse
        return False

    def save(
        self, x: Tensor, y: Tensor | None, batch: Mapping[str, Tensor], measured: Mapping[str, dict[str, Tensor]]
    ) -> None:
        """Add a computed batch (its Sensitivity-n and other metrics' values) and, with a checkpoint, write every
        finished batch to it."""
        for name, values in batch.items():
            self.partial.per_sample[name].append(values)
        for name, values in measured.items():
            self.partial.metrics[name].append(values)
        if self.path is None:
            return
        self.partial.digests.append(_digest(x, y))
        save_entry(self.path, self.key, self.partial.to_state(self.observer))


def _digest(x: Tensor, y: Tensor | None) -> str:
    return fingerprint({"x": x, "y": y})


def _fixed(data: Data) -> Data | None:
    """Tensor data (hashed into the checkpoint key); None for an iterable of batches (checked per batch)."""
    return data if isinstance(data, Tensor) or _is_pair(data) else None


def check_metrics(metrics: Sequence[Metric]) -> list[Metric]:
    """``metrics`` as a list of :class:`Metric` with distinct names (TypeError/ValueError naming the culprit)."""
    if isinstance(metrics, Metric):
        metrics = [metrics]
    checked = list(metrics)
    for metric in checked:
        if not isinstance(metric, Metric):
            raise TypeError(f"metrics must be gradattr.evaluation.Metric objects, got {type(metric).__name__}")
    names = [metric.name for metric in checked]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated or "sensitivity_n" in names:
        raise ValueError(f"metric names must be distinct, and not 'sensitivity_n' (always measured): {names}")
    return checked


def method_rows(methods: Methods | str | None) -> dict[str, str]:
    """Label -> method name of each row (default the paper's six, each under its own name).

    A name, or each name of a sequence, labels its own row (:func:`~gradattr.methods.labelled.labelled_entries`,
    the convention of the robustness checks); a mapping gives the labels.

    Raises:
        ValueError: no methods, an unknown method (named with its label), a name listed twice, an empty label.
        TypeError: a label or method that is not a string.
    """
    if methods is None:
        return {name: name for name in PAPER_METHODS}
    rows = labelled_entries(methods)
    for label, name in rows.items():
        if not isinstance(label, str) or not isinstance(name, str):
            raise TypeError(f"methods must map labels to method names (strings), got {label!r}: {name!r}")
        if not label:
            raise ValueError(f"an empty label for method {name!r}")
    unknown = {label: name for label, name in rows.items() if name not in METHODS}
    if unknown or not rows:
        labels = [label for label, name in unknown.items() if label != name]
        under = f" (under the labels {labels})" if labels else ""
        raise ValueError(f"unknown or no methods {list(unknown.values())}{under}; choose from {', '.join(METHODS)}")
    return rows


def check_method_options(
    options: Mapping[str, Mapping[str, Any]] | None, names: list[str]
) -> dict[str, dict[str, Any]]:
    """Per-row options as dicts, only for the method labels among ``names``."""
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


def _batches(
    data: Data, batch_size: int, target: str, call: dict[str, Any]
) -> Iterator[tuple[Tensor, Tensor | None, ModelCall]]:
    """(x, y, how the model is called) batches from tensors or from an iterable of batches; y is None for bare
    inputs. ``call`` holds :func:`evaluate`'s ``forward_kwargs``, ``output`` and ``position``: with tensor
    data, per-sample values (first dimension = the number of samples) are cut with the batch; with an
    iterable, they are used for every batch, and a batch ``(x, y, kwargs)`` adds its own keyword arguments."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if isinstance(data, Tensor) or _is_pair(data):
        yield from _slices(*((data, None) if isinstance(data, Tensor) else data), batch_size, target, call)
        return
    for item in data:
        x, y = _unpack(item)
        if y is None and target == "label":
            raise ValueError("target='label' needs labels: pass (x, y) or batches of (x, y), or use target='predicted'")
        own = item[2] if isinstance(item, (tuple, list)) and len(item) >= 3 and isinstance(item[2], Mapping) else {}
        kwargs = {**(call["forward_kwargs"] or {}), **own}
        if x.shape[0]:
            yield x, y, ModelCall.build(kwargs, call["output"], call["position"], x.shape[0])


def _slices(
    inputs: Tensor, labels: Tensor | None, batch_size: int, target: str, call: dict[str, Any]
) -> Iterator[tuple[Tensor, Tensor | None, ModelCall]]:
    if labels is None and target == "label":
        raise ValueError("target='label' needs labels: pass (x, y) or batches of (x, y), or use target='predicted'")
    if labels is not None and labels.shape[0] != inputs.shape[0]:
        raise ValueError(f"data has {inputs.shape[0]} inputs but {labels.shape[0]} labels")
    total = inputs.shape[0]
    every = ModelCall.build(call["forward_kwargs"], call["output"], call["position"], total)
    for start in range(0, total, batch_size):
        rows = slice(start, start + batch_size)
        call_rows = every.rows(torch.arange(start, min(start + batch_size, total)))
        yield inputs[rows], None if labels is None else labels[rows], call_rows


def _unpack(item: Any) -> tuple[Tensor, Tensor | None]:
    if isinstance(item, Tensor):
        return item, None
    if isinstance(item, (tuple, list)) and len(item) >= 2 and isinstance(item[0], Tensor):
        return item[0], torch.as_tensor(item[1])
    raise TypeError(f"each batch must be a tensor x or a pair (x, y) of tensors, got {type(item).__name__}")


def _named(output: OutputSelector) -> Any:
    """``output`` for the checkpoint key: a callable by its qualified name (its repr holds an address)."""
    if callable(output):
        return f"{getattr(output, '__module__', '')}.{getattr(output, '__qualname__', type(output).__name__)}"
    return output


def _targets(model: nn.Module, x: Tensor, y: Tensor | None, call: dict[str, Any]) -> Tensor:
    """The class to attribute and score: the label, or the model's argmax when ``y`` is None."""
    if y is not None:
        return y.to(device=x.device, dtype=torch.long)
    with preserved_model(model) as model, torch.no_grad():
        problem = build_problem(model, x, None, None, **call)
        problem.resolve_target()
    if problem.target is None:
        raise ValueError("target='predicted' needs a model with several outputs per sample (an argmax)")
    return problem.target
