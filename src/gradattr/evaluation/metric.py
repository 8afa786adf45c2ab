"""The metric interface of the evaluation runner: a metric measures each batch's maps, per row label, as one
value per sample (B,) or one curve per sample (B, K); the runner keeps those per-sample values for the
finished batches -- in its checkpoint, and merged across Ray workers in data order -- and hands them back
as a :class:`MetricResult`. A metric therefore holds no state between batches, and any mix of metrics shares
the batch's attributions (and, where a metric computes them once for all labels, its perturbed forward
passes: Sensitivity-n's output drops serve every method).

:class:`SensitivityN` is Sensitivity-n (Ancona et al., ICLR 2018, Sec. 4.1, Def. 4); :class:`PerSampleMetric`
adapts any per-sample function of :mod:`gradattr.metrics` (complexity of a map, localisation against a mask,
faithfulness of a map to the model).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from gradattr.evaluation.batch import EvaluatedBatch
from gradattr.groups import as_grouping
from gradattr.metrics.sensitivity import SubsetPlan, check_fraction, measure


class Metric(ABC):
    """A quality measure of attribution maps, measured batch by batch.

    Attributes:
        name: the metric's key in :attr:`SensitivityTable.metrics <gradattr.evaluation.SensitivityTable>`.
    """

    name: str

    @abstractmethod
    def measure(self, batch: EvaluatedBatch) -> dict[str, Tensor]:
        """Row label -> float64 Tensor(B) (a value per sample) or Tensor(B, K) (a curve per sample)."""

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """Everything its values depend on besides the batch (part of the checkpoint's key)."""

    def for_samples(self, start: int, stop: int) -> Metric:
        """The metric for the samples ``start:stop`` of the data evaluated as a whole (a Ray shard); a metric
        that holds per-sample extras (ground-truth masks) cuts them, others are the same for every shard."""
        return self


Kind = Literal["map", "mask", "model", "method"]


@dataclass(eq=False)
class PerSampleMetric(Metric):
    """A per-sample function of :mod:`gradattr.metrics` as a :class:`Metric`, called per row label as

    - ``kind="map"``: ``function(R, **options)`` (complexity: sparseness, complexity, effective complexity);
    - ``kind="mask"``: ``function(R, masks[rows], **options)`` with ``masks`` (N, ...) the ground truth of the
      whole evaluated data, sliced to the batch's samples (localisation: pointing game, relevance mass, ...);
    - ``kind="model"``: ``function(f, x, R, target=c, **options)`` with f the model as a function of the
      attributed tensor x (faithfulness: deletion and insertion, region perturbation, ...);
    - ``kind="method"``: ``function(f, x, method=m, target=c, method_options=o, **options)`` with m and o the
      row's method and options: metrics that run the method themselves (random logit, input invariance), on
      the model's inputs (not at a layer, not with extra keyword arguments of the model).

    The function returns Tensor(B) or Tensor(B, K), or an object whose attribute ``read`` (default
    ``per_sample``; ``curve`` keeps a deletion curve rather than its AUC) is one. With ``groups`` (a
    group mask over the attributed tensor: patches, tokens), a ``"map"`` metric reads the group sums
    R_g = Σ_{i∈g} R_i (B, G): the sparseness of a text's per-token relevance, not of its embedding entries.
    """

    name: str
    function: Callable[..., Any]
    kind: Kind = "map"
    masks: Tensor | None = None
    options: dict[str, Any] = field(default_factory=dict)
    groups: Tensor | None = None
    read: str = "per_sample"

    def __post_init__(self) -> None:
        if self.kind not in ("map", "mask", "model", "method"):
            raise ValueError(
                f"metric {self.name!r}: kind must be 'map', 'mask', 'model' or 'method', got {self.kind!r}"
            )
        if (self.kind == "mask") != (self.masks is not None):
            raise ValueError(f"metric {self.name!r}: ground-truth masks go with kind='mask', and only there")
        if self.groups is not None and self.kind != "map":
            raise ValueError(f"metric {self.name!r}: groups sum the maps of kind='map' metrics only")

    def measure(self, batch: EvaluatedBatch) -> dict[str, Tensor]:
        rows = slice(batch.first, batch.first + batch.targets.shape[0])
        if self.masks is not None and rows.stop > self.masks.shape[0]:
            raise ValueError(
                f"metric {self.name!r}: masks for {self.masks.shape[0]} samples, but the data has more "
                f"(batch of samples {rows.start}..{rows.stop - 1})"
            )
        values = {}
        for label, r in batch.maps.items():
            if self.kind == "map":
                value = self.function(self._grouped(r), **self.options)
            elif self.kind == "mask":
                value = self.function(r, self.masks[rows], **self.options)  # type: ignore[index]
            elif self.kind == "method":
                value = self._with_method(batch, label)
            else:
                value = self._on_model(batch, r)
            values[label] = _per_sample(self.name, getattr(value, self.read, value), r.shape[0])
        return values

    def _grouped(self, r: Tensor) -> Tensor:
        """``r`` as group sums (B, G) with :attr:`groups`, else as it is."""
        if self.groups is None:
            return r
        flat = r.reshape(r.shape[0], -1)
        return as_grouping(self.groups, r.shape[1:], r.device).sums(flat)

    def _with_method(self, batch: EvaluatedBatch, label: str) -> Any:
        """The function running row ``label``'s method itself on the model and its inputs."""
        if batch.layer is not None or any(value is not None for value in batch.call.values()):
            raise ValueError(
                f"metric {self.name!r} runs each method on the model's inputs itself: not with layer=, "
                "forward_kwargs=, output= or position="
            )
        return self.function(batch.model, batch.model_inputs, method=batch.methods[label], target=batch.targets,
                             method_options=batch.method_options.get(label, {}), **self.options)  # fmt: skip

    def _on_model(self, batch: EvaluatedBatch, r: Tensor) -> Any:
        """The function on the model as a function of the attributed tensor; at a layer one sample at a time
        (each perturbed row is replayed with its own sample's model inputs, as Sensitivity-n does)."""
        if batch.layer is None:
            return self.function(batch.function, batch.inputs, r, target=batch.targets, **self.options)
        per_sample = []
        for i in range(batch.inputs.shape[0]):
            one = slice(i, i + 1)
            value = self.function(batch.function.for_sample(i), batch.inputs[one], r[one],  # type: ignore[operator]
                                  target=batch.targets[one], **self.options)  # fmt: skip
            per_sample.append(torch.as_tensor(getattr(value, self.read, value)))
        return torch.cat(per_sample)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "function": _qualified(self.function), "kind": self.kind, "masks": self.masks,
                "options": self.options, **({"groups": self.groups} if self.groups is not None else {}),
                **({"read": self.read} if self.read != "per_sample" else {})}  # fmt: skip

    def for_samples(self, start: int, stop: int) -> PerSampleMetric:
        if self.masks is None:
            return self
        return PerSampleMetric(self.name, self.function, self.kind, self.masks[start:stop], self.options, self.groups,
                               self.read)  # fmt: skip


@dataclass(eq=False)
class SensitivityN(Metric):
    """Sensitivity-n (Ancona et al., ICLR 2018, Sec. 4.1, Def. 4): per sample and n, the Pearson correlation
    over ``num_subsets`` random subsets S of n features (or groups) between Σ_{i∈S} R_i and
    S_c(x) − S_c(x_[x_S = x̄]). The subsets are drawn once from the seed (:class:`SubsetPlan`) and serve
    every sample, batch and method; a batch's output drops are computed once for all its methods.

    Attributes: as :func:`gradattr.evaluate` takes them (``ns``, ``num_subsets``, ``baseline``,
    ``feature_groups``, ``seed``, ``max_fraction``, ``removal``, ``max_elements``); ``plan`` is drawn on the
    first batch, when the number of features is known.
    """

    ns: Iterable[int] | None = None
    num_subsets: int = 100
    baseline: float | Tensor = 0.0
    feature_groups: Tensor | None = None
    seed: int = 0
    max_fraction: float = 1.0
    removal: Literal["layer", "input"] = "layer"
    max_elements: int | None = None
    plan: SubsetPlan | None = None
    name: str = "sensitivity_n"

    def __post_init__(self) -> None:
        check_fraction(self.max_fraction, "max_fraction")
        check_removal(self.removal)
        if self.ns is not None and not isinstance(self.ns, (Sequence, Tensor, int)):
            self.ns = list(self.ns)  # an iterator is read once: for the checkpoint key and for the plan

    def plan_for(self, num_features: int) -> SubsetPlan:
        """The subset plan over ``num_features`` features (or groups), drawn once."""
        if self.plan is None or self.plan.num_features != num_features:
            self.plan = SubsetPlan.draw(num_features, self.ns, self.num_subsets, self.seed,
                                        max_fraction=self.max_fraction)  # fmt: skip
        return self.plan

    def measure(self, batch: EvaluatedBatch) -> dict[str, Tensor]:
        x = batch.model_inputs
        at_input = batch.layer is None or self.removal == "input"
        removed = x if at_input else batch.inputs
        grouping = as_grouping(self.feature_groups, removed.shape[1:], x.device)
        plan = self.plan_for(grouping.num_groups)
        if at_input:
            maps = {label: summed_to(r, x, label) for label, r in batch.maps.items()}
            return measure(batch.model, x, maps, target=batch.targets, plan=plan, baseline=self.baseline,
                           grouping=grouping, max_elements=self.max_elements, **batch.call)  # fmt: skip
        return _measure_per_sample(batch, plan, self.baseline, grouping, self.max_elements)

    def config(self) -> dict[str, Any]:
        removal = {"removal": self.removal} if self.removal != "layer" else {}
        return {"ns": self.ns, "num_subsets": self.num_subsets, "baseline": self.baseline,
                "feature_groups": self.feature_groups, "seed": self.seed, "max_fraction": self.max_fraction,
                "max_elements": self.max_elements, **removal}  # fmt: skip


@dataclass(frozen=True)
class MetricResult:
    """One metric over every evaluated sample: row label -> float64 Tensor(samples) or Tensor(samples, K)."""

    name: str
    per_sample: dict[str, Tensor]

    def mean(self) -> dict[str, float | list[float]]:
        """Row label -> the mean over samples where the value is defined (NaN skipped); per point for curves."""
        means: dict[str, float | list[float]] = {}
        for label, values in self.per_sample.items():
            averaged = values.double().nanmean(0)
            means[label] = float(averaged) if averaged.dim() == 0 else [float(v) for v in averaged]
        return means

    def to_dict(self) -> dict[str, Any]:
        """The means as JSON-ready values (NaN as None) and the number of samples."""

        def clean(value: float) -> float | None:
            return None if math.isnan(value) else value

        means = {label: [clean(v) for v in m] if isinstance(m, list) else clean(m) for label, m in self.mean().items()}
        samples = next(iter(self.per_sample.values())).shape[0] if self.per_sample else 0
        return {"metric": self.name, "mean": means, "samples": samples}

    @classmethod
    def concat(cls, name: str, parts: Sequence[Mapping[str, Tensor]]) -> MetricResult:
        """The result of batches (or shards) ``parts`` in data order: per label, their values concatenated."""
        labels = list(parts[0]) if parts else []
        return cls(name, {label: torch.cat([part[label] for part in parts]) for label in labels})


def check_removal(removal: str) -> None:
    """``removal`` is where Sensitivity-n removes features: ``"layer"`` or ``"input"`` (ValueError otherwise)."""
    if removal not in ("layer", "input"):
        raise ValueError(f"removal must be 'layer' or 'input', got {removal!r}")


def summed_to(attributions: Tensor, inputs: Tensor, label: str) -> Tensor:
    """A layer's ``attributions`` (B, *S, ...) summed over the dimensions beyond ``inputs``' (B, *S): one value
    per input feature (a token's relevance = the sum over its embedding vector)."""
    if attributions.shape[: inputs.dim()] != inputs.shape:
        raise ValueError(
            f"{label}: attributions of shape {tuple(attributions.shape)} do not extend the inputs' shape "
            f"{tuple(inputs.shape)}; removal='input' needs a layer whose output starts with the input's dimensions"
        )
    extra = tuple(range(inputs.dim(), attributions.dim()))
    return attributions.sum(dim=extra) if extra else attributions


def _measure_per_sample(
    batch: EvaluatedBatch, plan: SubsetPlan, baseline: float | Tensor, grouping: Any, max_elements: int | None
) -> dict[str, Tensor]:
    """Sensitivity-n on a layer's output, one sample at a time (the replayed model needs each variant's own
    model inputs, which are those of the one sample all its rows belong to)."""
    function, inputs = batch.function, batch.inputs
    rows = []
    for i in range(inputs.shape[0]):
        sample = slice(i, i + 1)
        rows.append(
            measure(
                function.for_sample(i),  # type: ignore[operator]
                inputs[sample],
                {name: r[sample] for name, r in batch.maps.items()},
                target=batch.targets[sample],
                plan=plan,
                baseline=baseline,
                grouping=grouping,
                max_elements=max_elements,
            )
        )
    return {name: torch.cat([row[name] for row in rows]) for name in batch.maps}


def _per_sample(name: str, value: Any, batch: int) -> Tensor:
    """A metric's value as float64 Tensor(B) or Tensor(B, K), checked."""
    if not isinstance(value, Tensor):
        value = torch.as_tensor(value)
    if value.dim() not in (1, 2) or value.shape[0] != batch:
        raise ValueError(f"metric {name!r} gave shape {tuple(value.shape)}, not one value or curve per sample")
    return value.detach().to("cpu", torch.float64)


def _qualified(function: Callable[..., Any]) -> str:
    return f"{getattr(function, '__module__', '?')}.{getattr(function, '__qualname__', repr(function))}"
