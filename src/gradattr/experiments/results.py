"""A whole study (several models) and every number in it, as ``results.json`` and CSV files."""

from __future__ import annotations

import json
import math
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch

from gradattr.experiments.architectures import ArchitectureComparison, compare_architectures
from gradattr.experiments.claims import Claim, paper_claims
from gradattr.experiments.class_activation_maps import token_grid
from gradattr.experiments.language_model import LanguageModelStudy
from gradattr.experiments.protocol import Protocol, paper_differences
from gradattr.experiments.robustness_study import RobustnessStudy
from gradattr.experiments.study import ModelStudy, StudySettings
from gradattr.files import write_csv, write_text


def environment() -> dict[str, Any]:
    """Versions and machine facts needed to rerun a study and compare its timings."""
    from gradattr import __version__

    return {
        "gradattr": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "matplotlib": matplotlib.__version__,
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
    }


@dataclass(eq=False)
class Study:
    """The models studied in one run, with the settings and environment to rerun it.

    Attributes:
        title: report title.
        command: the command line that produced it.
        settings: how each model was studied.
        models: one :class:`ModelStudy` per (data set, model), in report order.
        datasets: data set title -> one-line description (source, features).
        options: run options beyond ``settings`` (quick, samples per data set, cache directory, ...).
        started: ISO timestamp of the start.
        seconds: wall-clock time of the run, training included.
        environment: see :func:`environment`.
        robustness: the robustness study of Nielsen et al. (2022), when it was run.
        language_model: the language-model section (a decoder trained on the drug reviews, its continuations
            explained), when it was run.
        reused: the progress entries loaded instead of measured in this run (e.g. ``"digits-cnn"``,
            ``"robustness"``); not part of the results, which are the same either way.
    """

    title: str
    command: str
    settings: StudySettings
    models: list[ModelStudy]
    datasets: dict[str, str]
    options: dict[str, Any]
    started: str
    seconds: float = 0.0
    environment: dict[str, Any] = field(default_factory=environment)
    robustness: RobustnessStudy | None = None
    language_model: LanguageModelStudy | None = None
    reused: list[str] = field(default_factory=list)

    def claims(self, study: ModelStudy) -> list[Claim]:
        """The paper's claims checked on one model of this study."""
        return paper_claims(study)

    def architectures(self) -> list[ArchitectureComparison]:
        """The transformers of each data set beside the paper's models on the same data (see
        :mod:`gradattr.experiments.architectures`); empty when the run has no transformer."""
        return compare_architectures(self.models, self.settings.methods)

    def protocol(self, study: ModelStudy) -> Protocol:
        """The Sensitivity-n protocol one model of this study was measured with."""
        return Protocol.of(study, self.settings.num_subsets)

    def differences(self) -> list[str]:
        """How this run differs from the paper's study, in plain sentences (see :func:`paper_differences`)."""
        return paper_differences(self.models, self.settings.num_subsets)

    def to_dict(self) -> dict[str, Any]:
        """Everything the report shows, as JSON-ready values (NaN as None)."""
        return _finite(
            {
                "title": self.title,
                "command": self.command,
                "started": self.started,
                "seconds": self.seconds,
                "settings": self.settings.to_dict(),
                "options": self.options,
                "environment": self.environment,
                "datasets": self.datasets,
                "differences_from_paper": self.differences(),
                "models": [self._model_dict(m) for m in self.models],
                "transformers_vs_paper_models": [c.to_dict() for c in self.architectures()],
                "robustness": self.robustness.to_dict() if self.robustness is not None else None,
                "language_model": self.language_model.to_dict() if self.language_model is not None else None,
            }
        )

    def _model_dict(self, study: ModelStudy) -> dict[str, Any]:
        subject = study.subject
        features = subject.features
        return {
            "dataset": subject.dataset,
            "model": subject.model_name,
            "training": subject.training.to_dict() if subject.training else None,
            "evaluation_samples": int(subject.inputs.shape[0]),
            "protocol": self.protocol(study).to_dict(),
            "features": {
                "description": features.description,
                "layer": features.layer,
                "method_options": features.method_options,
            },
            "methods": study.methods,
            "unavailable": study.unavailable,
            "sensitivity_n": study.sensitivity.to_dict() if study.sensitivity is not None else None,
            "quality": {name: result.mean() for name, result in study.sensitivity.metrics.items()}
            if study.sensitivity is not None
            else {},
            "correlation": {"methods": study.methods, "pearson": study.correlation},
            "completeness_relative_gap": study.completeness,
            "equalities_max_relative_difference": study.equalities,
            "ops_met": study.ops.to_dict(),
            "seconds_per_sample": study.seconds_per_sample,
            "claims": [claim.to_dict() for claim in self.claims(study)],
            **({"class_activation_maps": _cams_dict(study)} if study.cam_maps else {}),
            **({"lrp_composite_shown": study.subject.lrp_composite} if study.lrp_maps else {}),
        }

    def write(self, out: str | Path) -> list[Path]:
        """Write ``results.json`` and the CSV files (models, sensitivity_n, correlation, claims, timings,
        transformers, and the robustness and language-model sections' tables when they were run)."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        path = out / "results.json"
        write_text(path, json.dumps(self.to_dict(), indent=2, ensure_ascii=False))
        tables = self.tables().items()
        return [
            path,
            *(write_csv(out / f"{name}.csv", rows, None if rows else ["dataset", "model"]) for name, rows in tables),
        ]

    def tables(self) -> dict[str, list[dict[str, Any]]]:
        """The CSV tables as rows, each beginning with its data set and model."""
        tables: dict[str, list[dict[str, Any]]] = {
            "models": [], "sensitivity_n": [], "correlation": [], "claims": [], "timings": [], "transformers": [],
        }  # fmt: skip
        for study in self.models:
            key = {"dataset": study.subject.dataset, "model": study.subject.model_name}
            training = study.subject.training.to_dict() if study.subject.training else {}
            tables["models"].append(
                key | training | {"evaluation_samples": int(study.subject.inputs.shape[0])}
                | {"unavailable": "; ".join(f"{m}: {r}" for m, r in study.unavailable.items())}
            )  # fmt: skip
            if study.sensitivity is not None:
                tables["sensitivity_n"] += [key | row for row in study.sensitivity.rows()]
            tables["correlation"] += [
                key | {"method_a": a, "method_b": b, "pearson": study.correlation[i][j]}
                for i, a in enumerate(study.methods)
                for j, b in enumerate(study.methods)
            ]
            tables["claims"] += [key | claim.to_dict() for claim in self.claims(study)]
            tables["timings"] += [
                key | {"method": method, "ms_per_sample": seconds * 1e3}
                for method, seconds in study.seconds_per_sample.items()
            ]
        for comparison in self.architectures():
            tables["transformers"] += _architecture_rows(comparison)
        if self.robustness is not None:
            tables |= self.robustness.tables()
        if self.language_model is not None:
            tables |= self.language_model.tables()
        return tables


def _cams_dict(study: ModelStudy) -> dict[str, Any]:
    """Where the displayed class activation maps of ``study`` were computed: the layer, its token grid, the
    methods."""
    subject = study.subject
    layer = str(subject.cam_layer)
    grid = token_grid(subject.model, study.display_inputs, layer)
    return {"layer": layer, "grid": list(grid), "methods": list(study.cam_maps)}


def _architecture_rows(comparison: ArchitectureComparison) -> list[dict[str, Any]]:
    """The comparison's numbers, one row per (model, measure, method or pair)."""
    rows = []
    for facts in comparison.models:
        values: list[tuple[str, str, float]] = []
        for method in facts.sensitivity:
            values += [
                ("sensitivity_n_mean_over_n", method, facts.sensitivity_mean(method)),
                ("sensitivity_n_smallest_n", method, facts.sensitivity_at(method, 0)),
                ("sensitivity_n_largest_n", method, facts.sensitivity_at(method, -1)),
            ]
        values += [("completeness_relative_gap", method, gap) for method, gap in facts.completeness.items()]
        values += [("agreement_pearson", pair, r) for pair, r in facts.agreement.items()]
        key = {"dataset": comparison.dataset, "model": facts.model, "transformer": facts.transformer}
        rows += [key | {"measure": measure, "method": name, "value": value} for measure, name, value in values]
    return rows


def _finite(value: Any) -> Any:
    """NaN and infinities as None, recursively (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
