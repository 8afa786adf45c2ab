"""Evaluating attribution methods over a data set: one runner (:func:`evaluate`) computes every method's maps
batch by batch and hands each batch to the metrics (:mod:`.metric`): Sensitivity-n (Ancona et al., ICLR 2018)
always, and any mix of the quality metrics of :mod:`gradattr.metrics` beside it, with one checkpoint.
"""

from gradattr.evaluation.batch import EvaluatedBatch
from gradattr.evaluation.checkpoint import BatchResult, Checkpoint, ResumableObserver
from gradattr.evaluation.layer import LayerFunction
from gradattr.evaluation.metric import (
    Metric,
    MetricResult,
    PerSampleMetric,
    SensitivityN,
    check_removal,
    summed_to,
)
from gradattr.evaluation.named import CURVES, LOWER_IS_BETTER, NAMED, named_metric, named_metrics, required_options
from gradattr.evaluation.runner import evaluate, evaluated_batch, measure_batch, run
from gradattr.evaluation.settings import (
    Data,
    EvaluationSettings,
    Methods,
    check_method_options,
    check_metrics,
    method_rows,
)
from gradattr.evaluation.table import COLUMNS, SensitivityTable

__all__ = [
    "COLUMNS",
    "CURVES",
    "LOWER_IS_BETTER",
    "NAMED",
    "BatchResult",
    "Checkpoint",
    "Data",
    "EvaluatedBatch",
    "EvaluationSettings",
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
    "evaluated_batch",
    "measure_batch",
    "method_rows",
    "named_metric",
    "named_metrics",
    "required_options",
    "run",
    "summed_to",
]
