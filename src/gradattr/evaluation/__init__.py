"""Evaluating attribution methods over a data set: one runner (:func:`evaluate`) computes every method's maps
batch by batch and hands each batch to the metrics (:mod:`.metric`): Sensitivity-n (Ancona et al., ICLR 2018)
always, and any mix of the quality metrics of :mod:`gradattr.metrics` beside it, with one checkpoint.
"""

from gradattr.evaluation.metric import (
    Metric,
    MetricResult,
    PerSampleMetric,
    SensitivityN,
    check_removal,
    summed_to,
)
from gradattr.evaluation.named import LOWER_IS_BETTER, NAMED, named_metric, named_metrics
from gradattr.evaluation.runner import (
    COLUMNS,
    Data,
    EvaluatedBatch,
    LayerFunction,
    Methods,
    ResumableObserver,
    SensitivityTable,
    check_method_options,
    check_metrics,
    evaluate,
    method_rows,
)

__all__ = [
    "COLUMNS",
    "LOWER_IS_BETTER",
    "NAMED",
    "Data",
    "EvaluatedBatch",
    "LayerFunction",
    "Methods",
    "Metric",
    "MetricResult",
    "PerSampleMetric",
    "ResumableObserver",
    "SensitivityN",
    "SensitivityTable",
    "check_method_options",
    "check_metrics",
    "check_removal",
    "evaluate",
    "method_rows",
    "named_metric",
    "named_metrics",
    "summed_to",
]
