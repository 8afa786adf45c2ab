"""The quality metrics of :mod:`gradattr.metrics` by name, as :class:`~gradattr.evaluation.Metric` objects for
:func:`gradattr.evaluate`'s ``metrics=`` and ``gradattr evaluate --metrics``.

Every metric here reads one method's maps of a batch: complexity reads the map alone, localisation the map and
the ground-truth mask of each sample, faithfulness the map and the model; random logit and input invariance
run each row's method themselves (on the model's inputs).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor

from gradattr import metrics as m
from gradattr.evaluation.metric import Kind, PerSampleMetric

NAMED: dict[str, tuple[Callable[..., Any], Kind]] = {
    "sparseness": (m.sparseness, "map"),
    "complexity": (m.complexity, "map"),
    "effective_complexity": (m.effective_complexity, "map"),
    "pointing_game": (m.pointing_game, "mask"),
    "relevance_mass_accuracy": (m.relevance_mass_accuracy, "mask"),
    "relevance_rank_accuracy": (m.relevance_rank_accuracy, "mask"),
    "top_k_intersection": (m.top_k_intersection, "mask"),
    "attribution_localisation": (m.attribution_localisation, "mask"),
    "deletion_auc": (m.deletion_auc, "model"),
    "insertion_auc": (m.insertion_auc, "model"),
    "deletion_curve": (m.deletion_auc, "model"),
    "insertion_curve": (m.insertion_auc, "model"),
    "region_perturbation": (m.region_perturbation, "model"),
    "irof": (m.irof, "model"),
    "road": (m.road, "model"),
    "faithfulness_correlation": (m.faithfulness_correlation, "model"),
    "monotonicity": (m.monotonicity, "model"),
    "non_sensitivity": (m.non_sensitivity, "model"),
    "random_logit": (m.random_logit, "method"),
    "input_invariance": (m.input_invariance, "method"),
}
"""Metric name -> (its function in :mod:`gradattr.metrics`, how it is called: see :class:`PerSampleMetric`)."""
CURVES = frozenset({"deletion_curve", "insertion_curve"})
"""Metrics kept as a curve per sample (B, steps + 1): the target's probability after each deletion (insertion)
step, of which ``deletion_auc`` (``insertion_auc``) is the area; for the figures of the report."""
GIVEN: dict[Kind, int] = {"map": 1, "mask": 2, "model": 3, "method": 3}
"""How many leading parameters of a metric's function the runner passes, per kind (the map; the map and the
mask; the model, its inputs and the map; the model, its inputs and the method): the others are options."""
LOWER_IS_BETTER = frozenset(
    {"complexity", "effective_complexity", "deletion_auc", "road", "non_sensitivity", "random_logit",
     "input_invariance"}
)  # fmt: skip
"""Metrics where a lower value is the better explanation (the probability left after deleting the most relevant
features, with ROAD in its default most-relevant-first order; an entropy; a count of disagreements; the
similarity of the maps of two classes; the largest change of a map under a shift the model compensates);
higher is better for the others."""


def named_metric(
    name: str, *, masks: Tensor | None = None, groups: Tensor | None = None, **options: Any
) -> PerSampleMetric:
    """The metric ``name`` of :data:`NAMED` with ``options`` (its keyword arguments, e.g. ``steps=20``).

    Args:
        name: a key of :data:`NAMED`.
        masks: ground-truth masks of every evaluated sample (N, ...), for the localisation metrics only.
        groups: feature groups over the attributed tensor (patches, tokens): complexity reads the group sums,
            and the removal metrics that take ``feature_groups`` remove whole groups (as Sensitivity-n does);
            the localisation metrics compare features with their masks and ignore it.
        options: keyword arguments of the metric's function.

    Raises:
        ValueError: an unknown name (the known ones listed), masks missing for a localisation metric or given
            to another, or a required option missing (``shift`` of input invariance).
    """
    if name not in NAMED:
        raise ValueError(f"unknown metric {name!r}; choose from {', '.join(NAMED)}")
    function, kind = NAMED[name]
    if kind == "mask" and masks is None:
        raise ValueError(f"metric {name!r} measures against ground-truth masks: pass masks (one per sample)")
    if kind != "mask" and masks is not None:
        raise ValueError(f"metric {name!r} takes no ground-truth masks")
    options = dict(options)
    missing = [option for option in required_options(name) if option not in options]
    if missing:
        raise ValueError(f"metric {name!r} needs the option(s) {', '.join(missing)}")
    if groups is not None and kind == "model" and "feature_groups" in inspect.signature(function).parameters:
        options.setdefault("feature_groups", groups)
    read = "curve" if name in CURVES else "per_sample"
    return PerSampleMetric(name, function, kind, masks, options, groups if kind == "map" else None, read)


def required_options(name: str) -> list[str]:
    """The options metric ``name`` of :data:`NAMED` cannot do without (``shift`` of input invariance)."""
    function, kind = NAMED[name]
    passed = list(inspect.signature(function).parameters.values())[GIVEN[kind] :]
    return [p.name for p in passed if p.default is inspect.Parameter.empty]


def named_metrics(
    names: list[str],
    *,
    masks: Tensor | None = None,
    groups: Tensor | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[PerSampleMetric]:
    """:func:`named_metric` for each of ``names``; ``masks`` go to the localisation metrics, ``groups`` to all,
    ``options`` are per metric name (an option for a metric not in ``names`` is an error)."""
    options = dict(options or {})
    stray = sorted(set(options) - set(names))
    if stray:
        raise ValueError(f"options for metric(s) {', '.join(stray)}, which are not among {names}")
    chosen = []
    for name in names:
        wants_masks = name in NAMED and NAMED[name][1] == "mask"
        chosen.append(named_metric(name, masks=masks if wants_masks else None, groups=groups,
                                   **dict(options.get(name, {}))))  # fmt: skip
    return chosen
