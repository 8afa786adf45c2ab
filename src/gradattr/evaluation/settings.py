"""What an evaluation computes, checked once: the methods (rows), their options, Sensitivity-n's settings, the
other metrics, which class is attributed, how the data is batched and how the model is called.

:func:`gradattr.evaluate` and its Ray executor (:func:`gradattr.distributed.evaluate`) both build an
:class:`EvaluationSettings` from their keyword arguments and hand it to the same runner; the checkpoint is
keyed by it (:meth:`EvaluationSettings.key`), so either of them resumes the other's checkpoint.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn

from gradattr.evaluation.metric import Metric, SensitivityN
from gradattr.methods import METHODS, PAPER_METHODS
from gradattr.methods._model_call import ForwardKwargs, ModelCall, OutputSelector, Position
from gradattr.methods.labelled import labelled_entries

Data = Tensor | tuple[Tensor, Tensor] | Iterable[Any]
Methods = Sequence[str] | Mapping[str, str]
"""Method names (each labels its own row) or label -> method name (:func:`method_rows`)."""


@dataclass(eq=False)
class EvaluationSettings:
    """The keyword arguments of :func:`gradattr.evaluate` (see there for each), checked when built.

    Derived attributes: ``rows`` (label -> method name, :func:`method_rows`), ``options`` (label -> keyword
    arguments of :func:`gradattr.attribute`), ``sensitivity`` (the :class:`SensitivityN` metric) and
    ``metric_list`` (the checked ``metrics``).

    Raises:
        ValueError / TypeError: an argument out of range or of the wrong kind, naming it.
    """

    methods: Methods | None = None
    target: Literal["label", "predicted"] = "label"
    ns: Iterable[int] | None = None
    num_subsets: int = 100
    baseline: float | Tensor = 0.0
    batch_size: int = 100
    feature_groups: Tensor | None = None
    method_options: Mapping[str, Mapping[str, Any]] | None = None
    seed: int = 0
    max_samples: int | None = None
    max_elements: int | None = None
    layer: str | nn.Module | None = None
    forward_kwargs: ForwardKwargs = None
    output: OutputSelector = None
    position: Position = None
    max_fraction: float = 1.0
    removal: Literal["layer", "input"] = "layer"
    metrics: Sequence[Metric] = ()
    rows: dict[str, str] = field(init=False)
    options: dict[str, dict[str, Any]] = field(init=False)
    sensitivity: SensitivityN = field(init=False)
    metric_list: list[Metric] = field(init=False)

    def __post_init__(self) -> None:
        self.rows = method_rows(self.methods)
        self.options = check_method_options(self.method_options, list(self.rows))
        if self.ns is not None and not isinstance(self.ns, (Sequence, Tensor, int)):
            self.ns = list(self.ns)  # an iterator is read once: for the key and for the plan
        self.sensitivity = SensitivityN(self.ns, self.num_subsets, self.baseline, self.feature_groups, self.seed,
                                        self.max_fraction, self.removal, self.max_elements)  # fmt: skip
        self.metric_list = check_metrics(self.metrics)
        if self.target not in ("label", "predicted"):
            raise ValueError(f"target must be 'label' or 'predicted', got {self.target!r}")
        check_positive("batch_size", self.batch_size, optional=False)
        check_positive("max_samples", self.max_samples)

    @classmethod
    def of(cls, methods: Methods | None, settings: Mapping[str, Any]) -> EvaluationSettings:
        """The settings of ``methods`` and the keyword arguments ``settings`` of :func:`gradattr.evaluate`.

        Raises:
            TypeError: a keyword that :func:`gradattr.evaluate` does not take (the known ones listed).
        """
        known = [f.name for f in dataclasses.fields(cls) if f.init and f.name != "methods"]
        unknown = sorted(set(settings) - set(known))
        if unknown:
            raise TypeError(f"unknown evaluation argument(s) {', '.join(unknown)}; known: {', '.join(known)}")
        return cls(methods, **settings)

    @property
    def labels(self) -> list[str]:
        return list(self.rows)

    def key(self, model: nn.Module, data: Data) -> dict[str, Any]:
        """Everything the per-sample results depend on, for the checkpoint's key: the model (architecture and
        weights), tensor data (an iterable's batches are checked one by one instead), methods and settings."""
        fixed = (data, None) if isinstance(data, Tensor) else tuple(data) if _is_pair(data) else None
        return {
            "model": repr(model), "weights": model.state_dict(), "data": fixed, "methods": self.rows,
            "options": self.options, "target": self.target, **self.sensitivity.config(),
            "batch_size": self.batch_size, "max_samples": self.max_samples, "layer": self.layer,
            "forward_kwargs": self.forward_kwargs, "output": _named(self.output), "position": self.position,
            **({"metrics": [m.config() for m in self.metric_list]} if self.metric_list else {}),
        }  # fmt: skip

    def batches(self, data: Data) -> Iterator[tuple[Tensor, Tensor | None, ModelCall]]:
        """``(x, y, how the model is called)`` per batch, up to ``max_samples`` samples; y is None for bare
        inputs. With tensor data, per-sample ``forward_kwargs``/``position`` (first dimension = the number of
        samples) are cut with the batch; with an iterable, they are used for every batch, and a batch
        ``(x, y, kwargs)`` adds its own keyword arguments."""
        done = 0
        for x, y, call in _batches(data, self.batch_size, self.target, self._call()):
            if self.max_samples is not None:
                x, y = x[: self.max_samples - done], None if y is None else y[: self.max_samples - done]
                call = call.rows(torch.arange(x.shape[0]))
            yield x, y, call
            done += x.shape[0]
            if self.max_samples is not None and done >= self.max_samples:
                return

    def for_samples(self, start: int, stop: int, total: int) -> EvaluationSettings:
        """The settings for the samples ``start:stop`` of ``total`` tensor samples evaluated as a whole (a Ray
        shard): per-sample ``forward_kwargs``, ``position`` and metric extras (masks) cut to them, no
        ``max_samples`` (the shard is already cut)."""
        index = torch.arange(start, stop)
        call = ModelCall.build(self.forward_kwargs, self.output, self.position, total).rows(index)
        return dataclasses.replace(
            self, forward_kwargs=dict(call.kwargs) or None, position=call.position, max_samples=None,
            metrics=[metric.for_samples(start, stop) for metric in self.metric_list],
        )  # fmt: skip

    def _call(self) -> dict[str, Any]:
        return {"forward_kwargs": self.forward_kwargs, "output": self.output, "position": self.position}


def check_positive(name: str, value: Any, optional: bool = True) -> None:
    """``value`` is a positive int (or None where ``optional``); ValueError naming ``name`` otherwise."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int{' or None' if optional else ''}, got {value!r}")


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


def total_samples(data: Data, max_samples: int | None) -> int | None:
    """Number of samples the evaluation will see, when it can be known without iterating (for progress)."""
    if isinstance(data, Tensor):
        known: int | None = data.shape[0] if data.dim() else 0
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
    """(x, y, how the model is called) batches from tensors or from an iterable of batches (see
    :meth:`EvaluationSettings.batches`)."""
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
    if inputs.dim() == 0:
        raise ValueError("data yielded no samples: the inputs are a 0-d tensor, not a batch of samples")
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
