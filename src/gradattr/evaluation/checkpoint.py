"""The finished batches of an evaluation, in memory and in its checkpoint file.

One format for :func:`gradattr.evaluate` and its Ray executor: per finished batch, in data order, the
fingerprint of its inputs and labels, every method's per-sample Sensitivity-n and every metric's per-sample
values, plus the summed timings and the state of a :class:`ResumableObserver`. The entry is keyed by
:meth:`EvaluationSettings.key <gradattr.evaluation.settings.EvaluationSettings.key>` and the observer's
initial state (:mod:`gradattr.progress`), so a run resumes a checkpoint written by the same settings with
any number of workers, or by none.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from gradattr.evaluation.batch import EvaluatedBatch
from gradattr.evaluation.metric import MetricResult, SensitivityN
from gradattr.evaluation.settings import Data, EvaluationSettings
from gradattr.evaluation.table import SensitivityTable
from gradattr.metrics.sensitivity import SensitivityResult
from gradattr.progress import as_floats, fingerprint, load_entry, save_entry


@runtime_checkable
class ResumableObserver(Protocol):
    """An ``on_batch`` observer of :func:`~gradattr.evaluate` whose accumulated state goes into the checkpoint.

    ``state_dict()`` returns a copy of the state as plain values (tensors, numbers, strings, lists, dicts);
    ``load_state_dict(state)`` restores it and raises ``ValueError`` for a state that is not its own kind.
    """

    def __call__(self, batch: EvaluatedBatch) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class BatchResult:
    """One computed batch.

    Attributes:
        digest: :func:`batch_digest` of its inputs and labels.
        sensitivity: method label -> Tensor(B, len(ns)) of per-sample Sensitivity-n.
        metrics: metric name -> label -> per-sample values (B,) or curves (B, K).
        seconds: the time it took, keyed as :attr:`SensitivityTable.seconds`.
        num_features: N of Sensitivity-n's subset plan.
        targets, maps: the attributed classes and the maps, kept only for an ``on_batch`` called elsewhere
            (on the driver of a Ray run).
    """

    digest: str
    sensitivity: dict[str, Tensor]
    metrics: dict[str, dict[str, Tensor]]
    seconds: dict[str, float]
    num_features: int
    targets: Tensor | None = None
    maps: dict[str, Tensor] | None = None


@dataclass
class Finished:
    """The finished batches, as the checkpoint holds them (see the module docstring).

    Attributes:
        digests: per finished batch, the :func:`batch_digest` of its inputs and labels.
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
    def start(cls, names: Sequence[str], metrics: Sequence[str] = ()) -> Finished:
        seconds = {f"attribute {name}": 0.0 for name in names} | {"sensitivity-n": 0.0}
        seconds |= {f"metric {metric}": 0.0 for metric in metrics}
        return cls([], {name: [] for name in names}, seconds, metrics={metric: [] for metric in metrics})

    def add(self, batch: BatchResult) -> None:
        """Append the next batch in data order."""
        self.digests.append(batch.digest)
        for name, values in batch.sensitivity.items():
            self.per_sample[name].append(values)
        for name, values in batch.metrics.items():
            self.metrics[name].append(values)
        for key, value in batch.seconds.items():
            self.seconds[key] += value
        self.num_features = batch.num_features

    def reset(self) -> None:
        """Forget every finished batch (in place)."""
        self.digests.clear()
        for values in (*self.per_sample.values(), *self.metrics.values()):
            values.clear()
        self.seconds.update(dict.fromkeys(self.seconds, 0.0))
        self.num_features = None

    def table(self, sensitivity: SensitivityN, resumed: int) -> SensitivityTable:
        """The table of every finished batch (``resumed`` of them taken from a checkpoint).

        Raises:
            ValueError: no batch was finished (the data yielded no samples).
        """
        if self.num_features is None:
            raise ValueError("data yielded no samples")
        plan = sensitivity.plan_for(self.num_features)  # drawn anew when every batch came from the checkpoint
        results = {
            name: SensitivityResult(
                list(plan.ns), torch.cat(values), plan.num_subsets, plan.num_features, sensitivity.seed
            )
            for name, values in self.per_sample.items()
        }
        quality = {name: MetricResult.concat(name, parts) for name, parts in self.metrics.items()}
        return SensitivityTable(results, dict(self.seconds), resumed, quality)

    def to_state(self, observer: ResumableObserver | None) -> dict[str, Any]:
        return {
            "digests": self.digests, "per_sample": self.per_sample, "seconds": self.seconds,
            "num_features": self.num_features, "observer": observer.state_dict() if observer is not None else None,
            "metrics": self.metrics,
        }  # fmt: skip

    @classmethod
    def from_state(
        cls, state: Mapping[str, Any], names: Sequence[str], metrics: Sequence[str], observer: ResumableObserver | None
    ) -> Finished:
        """The finished batches in ``state`` (an entry's payload); restores ``observer``'s state from it.

        Raises:
            ValueError: ``state`` does not hold finished batches of ``names`` and ``metrics``.
        """
        digests, per_sample = list(state["digests"]), dict(state["per_sample"])
        measured = dict(state.get("metrics", {}))
        if (
            not all(isinstance(d, str) for d in digests)
            or list(per_sample) != list(names)
            or list(measured) != list(metrics)
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


class Checkpoint:
    """An evaluation's finished batches: which of the data's batches are done, adding new ones, and with a file
    saving them after each addition."""

    def __init__(
        self, path: Path | None, key: str, finished: Finished, observer: ResumableObserver | None, initial: Any
    ) -> None:
        self.path = path
        self.key = key
        self.finished = finished
        self.observer = observer
        self.initial = initial
        self.skipped = 0

    @classmethod
    def open(
        cls,
        path: str | Path | None,
        settings: EvaluationSettings,
        model: nn.Module,
        data: Data,
        on_batch: Callable[[EvaluatedBatch], None] | None,
    ) -> Checkpoint:
        """The checkpoint at ``path`` (None: none, everything kept in memory), keyed by the settings, the model,
        tensor data and the observer's initial state; its finished batches if it holds some of the same key.

        Raises:
            TypeError: a checkpoint with an ``on_batch`` that is not a :class:`ResumableObserver`.
        """
        names, metrics = settings.labels, [metric.name for metric in settings.metric_list]
        if path is None:
            return cls(None, "", Finished.start(names, metrics), None, None)
        if on_batch is not None and not isinstance(on_batch, ResumableObserver):
            raise TypeError(
                "with checkpoint=, on_batch must be a ResumableObserver (with state_dict() and load_state_dict()) "
                f"so that its state resumes too; got {type(on_batch).__name__}"
            )
        observer = on_batch
        initial = observer.state_dict() if observer is not None else None
        key = fingerprint(settings.key(model, data) | {"observer": initial})
        finished = load_entry(path, key, lambda state: Finished.from_state(state, names, metrics, observer))
        checkpoint = cls(Path(path), key, finished or Finished.start(names, metrics), observer, initial)
        if finished is None:
            checkpoint.restart()
        return checkpoint

    def restart(self) -> None:
        """Forget the finished batches; the observer returns to its initial state."""
        self.finished.reset()
        if self.observer is not None:
            self.observer.load_state_dict(self.initial)

    def holds(self, index: int, x: Tensor, y: Tensor | None) -> bool:
        """Whether batch ``index`` is in the checkpoint (then it is counted as skipped).

        Raises:
            ValueError: the checkpoint holds a different batch ``index`` after matching earlier ones.
        """
        digests = self.finished.digests
        if self.path is None or index >= len(digests):
            return False
        if batch_digest(x, y) == digests[index]:
            self.skipped += 1
            return True
        if index > 0:
            raise ValueError(
                f"{self.path}: batch {index} differs from the one checkpointed; resuming needs the same batches "
                "in the same order (not a shuffling DataLoader); delete the checkpoint to start over"
            )
        self.restart()  # other data from the first batch on: nothing to reuse
        return False

    def add(self, batches: Sequence[BatchResult]) -> None:
        """Add the next computed batches in data order and, with a file, save every finished batch to it."""
        for batch in batches:
            self.finished.add(batch)
        if self.path is not None:
            save_entry(self.path, self.key, self.finished.to_state(self.observer))

    def table(self, sensitivity: SensitivityN) -> SensitivityTable:
        """The table of every finished batch; ``resumed`` counts those taken from the file."""
        return self.finished.table(sensitivity, self.skipped)


def batch_digest(x: Tensor, y: Tensor | None) -> str:
    """The fingerprint of a batch's inputs and labels (to recognise the checkpoint's batches)."""
    return fingerprint({"x": x, "y": y})
