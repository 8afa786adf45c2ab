"""The result of an evaluation: Sensitivity-n of every method per sample and n, and the other metrics'
per-sample values, as one tidy table (rows, pivot, CSV, JSON) and as a state for checkpoints."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from torch import Tensor

from gradattr.evaluation.metric import MetricResult
from gradattr.files import write_csv, write_text
from gradattr.metrics.sensitivity import SensitivityResult
from gradattr.progress import as_floats

COLUMNS: tuple[str, ...] = ("method", "n", "mean", "std", "count")


@dataclass(frozen=True, eq=False)
class SensitivityTable:
    """Sensitivity-n of several methods on the same samples and subsets.

    Attributes:
        results: method label -> :class:`SensitivityResult` over all evaluated samples (per-sample values kept).
        seconds: wall-clock time spent per method label on attributions (``"attribute <label>"``) and on the
            forward passes of Sensitivity-n (``"sensitivity-n"``), also of batches computed before a resume.
        resumed: batches taken from :func:`~gradattr.evaluate`'s checkpoint instead of computed.
        metrics: the other metrics measured beside Sensitivity-n (:func:`~gradattr.evaluate`'s ``metrics=``): name ->
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
