"""What changes when the study's methods meet transformers: each transformer of a run (ViT, text transformer)
beside the paper's models trained on the same data (MLPs and CNN on images, text CNN and LSTM on text).

Everything here is read off the measured :class:`~gradattr.experiments.study.ModelStudy` objects, nothing is
measured again: Sensitivity-n averaged over the n grid and at its ends, the completeness gaps, the agreement
of the pairs that the paper relates (DeepLIFT and Integrated Gradients, Sec. 4; ε-LRP and Gradient*Input,
Prop. 1) and which methods could not run. The report turns it into its "transformers against the CNN/LSTM"
section; ``results.json`` keeps the numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gradattr.experiments.study import ModelStudy

PAIRS: tuple[tuple[str, str], ...] = (("deeplift", "integrated_gradients"), ("epsilon_lrp", "gradient_x_input"))
"""Method pairs whose agreement (mean per-sample Pearson correlation of the maps) is compared."""
GAP_METHODS: tuple[str, ...] = ("deeplift", "integrated_gradients", "epsilon_lrp", "gradient_x_input")
"""Methods whose completeness gap is compared: DeepLIFT (exact by construction), Integrated Gradients (up to
its Riemann error), ε-LRP and Gradient*Input (complete only on special networks, so their gap measures how
far the model is from them)."""


def pair_key(first: str, second: str) -> str:
    """The name of a method pair in :attr:`ModelFacts.agreement`, e.g. ``"deeplift vs integrated_gradients"``."""
    return f"{first} vs {second}"


@dataclass(frozen=True)
class ModelFacts:
    """The numbers of one model that the comparison uses.

    Attributes:
        model: model title, e.g. ``"ViT"``.
        transformer: whether it is one of the transformers.
        accuracy, majority: test accuracy and majority-class rate (None when unknown).
        samples: evaluation samples.
        unavailable: method -> one-line reason it did not run on this model.
        ns: the Sensitivity-n grid.
        sensitivity: method -> mean Pearson correlation at each n of ``ns`` (NaN where no sample was valid).
        completeness: method -> relative completeness gap, for the methods of :data:`GAP_METHODS` that ran.
        agreement: :func:`pair_key` -> mean per-sample Pearson correlation, for the :data:`PAIRS` that ran.
    """

    model: str
    transformer: bool
    accuracy: float | None
    majority: float | None
    samples: int
    unavailable: dict[str, str]
    ns: list[int]
    sensitivity: dict[str, list[float]]
    completeness: dict[str, float]
    agreement: dict[str, float]

    @classmethod
    def of(cls, study: ModelStudy) -> ModelFacts:
        """The facts of one model's study."""
        subject = study.subject
        ns: list[int] = []
        sensitivity: dict[str, list[float]] = {}
        if study.sensitivity is not None:
            methods, ns, means = study.sensitivity.pivot("mean")
            sensitivity = {m: [float(v) for v in row] for m, row in zip(methods, means, strict=True)}
        agreement = {}
        for first, second in PAIRS:
            if first in study.methods and second in study.methods:
                i, j = study.methods.index(first), study.methods.index(second)
                agreement[pair_key(first, second)] = float(study.correlation[i][j])
        return cls(
            model=subject.model_name,
            transformer=subject.transformer,
            accuracy=subject.training.test_accuracy if subject.training else None,
            majority=subject.training.majority_rate if subject.training else None,
            samples=int(subject.inputs.shape[0]),
            unavailable=dict(study.unavailable),
            ns=[int(n) for n in ns],
            sensitivity=sensitivity,
            completeness={m: float(study.completeness[m]) for m in GAP_METHODS if m in study.completeness},
            agreement=agreement,
        )

    def sensitivity_mean(self, method: str) -> float:
        """``method``'s Sensitivity-n averaged over the n grid (NaN when not measured)."""
        values = np.array(self.sensitivity.get(method, []), dtype=float)
        return float(np.nanmean(values)) if np.isfinite(values).any() else math.nan

    def sensitivity_at(self, method: str, end: int) -> float:
        """``method``'s Sensitivity-n at the smallest (``end=0``) or largest (``end=-1``) n (NaN when not
        measured)."""
        values = self.sensitivity.get(method, [])
        return float(values[end]) if values else math.nan

    def best_method(self) -> tuple[str, float] | None:
        """The method with the highest Sensitivity-n averaged over n, and that average."""
        scores = {m: self.sensitivity_mean(m) for m in self.sensitivity}
        scores = {m: v for m, v in scores.items() if math.isfinite(v)}
        if not scores:
            return None
        best = max(scores, key=scores.__getitem__)
        return best, scores[best]

    def to_dict(self) -> dict[str, object]:
        return {
            "model": self.model, "transformer": self.transformer, "test_accuracy": self.accuracy,
            "majority_rate": self.majority, "evaluation_samples": self.samples, "unavailable": self.unavailable,
            "ns": self.ns, "sensitivity_n_mean_over_n": {m: self.sensitivity_mean(m) for m in self.sensitivity},
            "sensitivity_n_smallest_n": {m: self.sensitivity_at(m, 0) for m in self.sensitivity},
            "sensitivity_n_largest_n": {m: self.sensitivity_at(m, -1) for m in self.sensitivity},
            "completeness_relative_gap": self.completeness, "agreement_pearson": self.agreement,
        }  # fmt: skip


@dataclass(frozen=True)
class ArchitectureComparison:
    """The transformers of one data set beside the paper's models on the same data.

    Attributes:
        dataset: data set title.
        features: what a feature is (what Sensitivity-n's n counts).
        methods: the study's methods, in order.
        transformers: the transformers' facts.
        baselines: the paper's models' facts (MLP, CNN, text CNN, LSTM).
    """

    dataset: str
    features: str
    methods: list[str]
    transformers: list[ModelFacts]
    baselines: list[ModelFacts]

    @property
    def models(self) -> list[ModelFacts]:
        """Transformers first, then the paper's models."""
        return [*self.transformers, *self.baselines]

    def lower_sensitivity(self, transformer: ModelFacts) -> list[str]:
        """The methods whose Sensitivity-n averaged over n is lower on ``transformer`` than on every paper
        model where both were measured."""
        lower = []
        for method in self.methods:
            mine = transformer.sensitivity_mean(method)
            theirs = [b.sensitivity_mean(method) for b in self.baselines]
            theirs = [v for v in theirs if math.isfinite(v)]
            if math.isfinite(mine) and theirs and mine < min(theirs):
                lower.append(method)
        return lower

    def to_dict(self) -> dict[str, object]:
        return {
            "dataset": self.dataset,
            "features": self.features,
            "methods": self.methods,
            "models": [m.to_dict() for m in self.models],
            "sensitivity_n_lower_on_transformer": {t.model: self.lower_sensitivity(t) for t in self.transformers},
        }


def compare_architectures(studies: Sequence[ModelStudy], methods: Sequence[str]) -> list[ArchitectureComparison]:
    """One comparison per data set that has at least one transformer and one of the paper's models, in the
    order of ``studies``; ``methods`` are the study's methods."""
    datasets = list(dict.fromkeys(s.subject.dataset for s in studies))
    comparisons = []
    for dataset in datasets:
        mine = [s for s in studies if s.subject.dataset == dataset]
        transformers = [ModelFacts.of(s) for s in mine if s.subject.transformer]
        baselines = [ModelFacts.of(s) for s in mine if not s.subject.transformer]
        if transformers and baselines:
            features = mine[0].subject.features.description
            comparisons.append(ArchitectureComparison(dataset, features, list(methods), transformers, baselines))
    return comparisons
