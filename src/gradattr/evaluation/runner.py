"""Sensitivity-n of several attribution methods over a data set, as one tidy table.

:func:`evaluate` streams the data in batches; for each batch it computes every method's attributions with
:func:`gradattr.attribute` and their Sensitivity-n (Ancona et al., ICLR 2018, Sec. 4.1, Def. 4) with
:func:`gradattr.metrics.sensitivity.measure`. The subsets are drawn once, from the seed, and shared by all
samples, batches and methods, so the output drops S_c(x) - S_c(x_[x_S = x̄]) of a batch are computed once
for all methods; only the attribution sums differ. Memory stays bounded by one batch: per-sample
correlations (a few numbers per sample) are all that is kept; a caller that wants more of each batch (the
maps, to measure agreement or completeness) passes ``on_batch``.

Methods are rows under labels: a list of names labels each row by its method, and a mapping label -> method
name runs one method under several labels with their own ``method_options`` (occlusion of 4x4 patches and of
single pixels, say); the table, the checkpoint and the maps handed to ``on_batch`` use the labels.

Text models take token ids, which have no gradient: with ``layer="embedding"`` the attributions are those of
the layer's output (as ``gradattr.attribute(..., layer=...)``), and Sensitivity-n removes features of that
output (e.g. whole tokens, ``feature_groups=torch.arange(L)``) by setting them to the baseline there, with
the model replayed from the layer on (:class:`LayerFunction`).

Long evaluations resume: with ``checkpoint=``, the per-sample results of the finished batches (and the state
of a :class:`ResumableObserver` passed as ``on_batch``) are saved after every batch (:mod:`gradattr.progress`),
and a later call with the same model, data and settings skips those batches. Every batch is computed from
the same seeds and subsets either way, so the table is the one an uninterrupted run gives.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from gradattr.engine import preserved_model
from gradattr.evaluation.batch import EvaluatedBatch
from gradattr.evaluation.checkpoint import BatchResult, Checkpoint, batch_digest
from gradattr.evaluation.layer import LayerFunction
from gradattr.evaluation.metric import Metric
from gradattr.evaluation.settings import Data, EvaluationSettings, Methods, total_samples
from gradattr.evaluation.table import SensitivityTable
from gradattr.methods import attribute
from gradattr.methods._model_call import ForwardKwargs, ModelCall, OutputSelector, Position
from gradattr.methods._problem import build_problem


def evaluate(
    model: nn.Module,
    data: Data,
    methods: Methods | None = None,
    *,
    target: Literal["label", "predicted"] = "label",
    ns: Iterable[int] | None = None,
    num_subsets: int = 100,
    baseline: float | Tensor = 0.0,
    batch_size: int = 100,
    feature_groups: Tensor | None = None,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    seed: int = 0,
    progress: bool = True,
    max_samples: int | None = None,
    max_elements: int | None = None,
    layer: str | nn.Module | None = None,
    on_batch: Callable[[EvaluatedBatch], None] | None = None,
    checkpoint: str | Path | None = None,
    forward_kwargs: ForwardKwargs = None,
    output: OutputSelector = None,
    position: Position = None,
    max_fraction: float = 1.0,
    removal: Literal["layer", "input"] = "layer",
    metrics: Sequence[Metric] = (),
) -> SensitivityTable:
    """Sensitivity-n of each method's attributions over a data set (Ancona et al., ICLR 2018, Sec. 4.1).

    For every sample and n: the Pearson correlation over ``num_subsets`` random subsets S of n features (or
    groups) between Σ_{i ∈ S} R_i and S_c(x) - S_c(x_[x_S = x̄]); the table reports its mean, standard deviation
    and the number of samples where it is defined, per method and n.

    Args:
        model: the classifier (pre-softmax outputs); its modes are restored afterwards.
        data: ``(x, y)`` tensors (cut into batches of ``batch_size``), an iterable of ``(x, y)`` batches (e.g.
            a ``DataLoader``, used as it batches), or a tensor ``x`` alone with ``target="predicted"``.
        methods: names from :data:`gradattr.METHODS`, each the label of its row, or a mapping label -> method
            name, e.g. ``{"occlusion": "occlusion", "occlusion_pixels": "occlusion"}`` (one method under several
            labels, each with its own ``method_options``); default the paper's six (:data:`gradattr.PAPER_METHODS`).
        target: ``"label"`` attributes and scores the true class y, ``"predicted"`` the model's argmax.
        ns, num_subsets, baseline, feature_groups, seed, max_elements, max_fraction: as in
            :func:`gradattr.sensitivity_n` (the default grid runs up to n = N, where the correlation is NaN
            with no valid sample: Sensitivity-N is completeness; ``max_fraction=0.8`` gives the older grid);
            ``baseline`` is the value removed features are set to (each method keeps its own default baseline,
            zero, unless ``method_options`` say otherwise).
        batch_size: samples per batch for tensor data.
        method_options: method label -> keyword arguments of :func:`gradattr.attribute`, e.g.
            ``{"integrated_gradients": {"steps": 50}, "occlusion": {"window": (4, 4), "stride": (4, 4)}}``.
        progress: show a progress bar over the samples.
        max_samples: stop after this many samples.
        layer: attribute this submodule's output instead of the inputs (``"embedding"`` for the text models);
            Sensitivity-n then removes features of that output, ``feature_groups`` being a mask over its
            shape (e.g. ``torch.arange(L)`` for whole tokens of an (L, D) embedding).
        removal: with ``layer``, where Sensitivity-n removes a feature: ``"layer"`` (default) sets it to
            ``baseline`` in the layer's output; ``"input"`` sets the model's input feature to ``baseline``
            (e.g. a token id to the pad id: the model then sees the token as padding, masks included), the
            layer's attributions summed over its dimensions beyond the input's (R of token i = Σ_d R_{i,d});
            ``feature_groups`` then group the input's features.
        on_batch: called with an :class:`EvaluatedBatch` (inputs, targets, maps) after each batch computed
            (not for batches taken from the checkpoint); with ``checkpoint`` it must be a
            :class:`ResumableObserver`, whose state is saved and restored with the batches.
        checkpoint: a file for the finished batches, rewritten atomically after each one. If it holds
            batches of the same model (weights), data, methods and settings, they are not computed again:
            the evaluation resumes at the first unfinished batch, and the table equals that of an
            uninterrupted run. A checkpoint of other settings is replaced; an unreadable one is replaced
            with a :class:`~gradattr.progress.ProgressWarning`. Batches of an iterable are checked
            against the saved ones: they must come in the same order (not from a shuffling ``DataLoader``).
            The file is kept after the evaluation (a repeated call returns at once); delete it when done.
        forward_kwargs: extra keyword arguments of ``model.forward`` (as in :func:`gradattr.attribute`). With
            tensor data, a tensor whose first dimension is the number of samples is per-sample and cut into
            batches with the data; with an iterable of batches, the values are used for every batch, and a
            batch ``(x, y, kwargs)`` adds its own dict. Every attribution and Sensitivity-n pass gives each row
            its sample's values.
        output, position: as in :func:`gradattr.attribute` (``position`` may hold one int per sample of
            tensor data).

    Returns:
        A :class:`SensitivityTable`: ``rows()`` (method, n, mean, std, count), ``pivot()``, ``to_csv``,
        ``to_json``, the per-sample results in ``results``, and ``resumed``, the batches taken from the
        checkpoint.

    Raises:
        ValueError: bad arguments, no samples, or batches that differ from the checkpoint's after the first.
        TypeError: ``checkpoint`` with an ``on_batch`` that is not a :class:`ResumableObserver`.

    Example:
        >>> table = gradattr.evaluate(model, (data.test_x, data.test_y), ["deeplift", "occlusion"])
        >>> table.to_csv("sensitivity.csv")
        >>> rows = {"occlusion": "occlusion", "occlusion_pixels": "occlusion"}
        >>> patches = {"window": (4, 4), "stride": (4, 4)}
        >>> table = gradattr.evaluate(model, data, rows, method_options={"occlusion": patches},
        ...                           feature_groups=gradattr.patches((1, 28, 28), 4))
    """
    settings = EvaluationSettings(
        methods, target, ns, num_subsets, baseline, batch_size, feature_groups, method_options, seed, max_samples,
        max_elements, layer, forward_kwargs, output, position, max_fraction, removal, metrics,
    )  # fmt: skip
    return run(model, data, settings, progress=progress, on_batch=on_batch, checkpoint=checkpoint)


def run(
    model: nn.Module,
    data: Data,
    settings: EvaluationSettings,
    *,
    progress: bool = True,
    on_batch: Callable[[EvaluatedBatch], None] | None = None,
    checkpoint: str | Path | None = None,
) -> SensitivityTable:
    """:func:`evaluate` with its settings built: batch by batch, the batches a checkpoint holds skipped, each
    other one measured (:func:`measure_batch`) and added to the checkpoint."""
    finished = Checkpoint.open(checkpoint, settings, model, data, on_batch)
    bar = tqdm(total=total_samples(data, settings.max_samples), desc="sensitivity-n", unit="sample",
               disable=not progress)  # fmt: skip
    done = 0
    try:
        for index, (x, y, call) in enumerate(settings.batches(data)):
            if not finished.holds(index, x, y):
                finished.add([measure_batch(model, x, y, call, settings, first=done, on_batch=on_batch)])
            done += x.shape[0]
            bar.update(x.shape[0])
    finally:
        bar.close()
    return finished.table(settings.sensitivity)


def measure_batch(
    model: nn.Module,
    x: Tensor,
    y: Tensor | None,
    call: ModelCall,
    settings: EvaluationSettings,
    *,
    first: int = 0,
    on_batch: Callable[[EvaluatedBatch], None] | None = None,
    keep_maps: bool = False,
) -> BatchResult:
    """One batch: every row's attributions, their Sensitivity-n and the other metrics, then ``on_batch``.

    Args:
        x, y, call: the batch as :meth:`EvaluationSettings.batches` yields it.
        first: the index of its first sample in the evaluated data.
        keep_maps: keep the targets and maps in the result (for an ``on_batch`` called elsewhere).
    """
    options = call.as_options()
    classes = _targets(model, x, y if settings.target == "label" else None, options)
    seconds: dict[str, float] = {}
    maps = {}
    for label, method in settings.rows.items():
        start = time.perf_counter()
        maps[label] = attribute(model, x, method=method, target=classes, layer=settings.layer, **options,
                                **settings.options.get(label, {}))  # fmt: skip
        seconds[f"attribute {label}"] = time.perf_counter() - start
    evaluated = evaluated_batch(model, x, classes, maps, call, settings, first)
    start = time.perf_counter()
    sensitivity = settings.sensitivity.measure(evaluated)
    seconds["sensitivity-n"] = time.perf_counter() - start
    measured = {}
    for metric in settings.metric_list:
        start = time.perf_counter()
        measured[metric.name] = metric.measure(evaluated)
        seconds[f"metric {metric.name}"] = time.perf_counter() - start
    if on_batch is not None:
        on_batch(evaluated)
    num_features = settings.sensitivity.plan.num_features  # type: ignore[union-attr]
    kept = {"targets": classes.cpu(), "maps": {k: v.cpu() for k, v in maps.items()}} if keep_maps else {}
    return BatchResult(batch_digest(x, y), sensitivity, measured, seconds, num_features, **kept)


def evaluated_batch(
    model: nn.Module,
    x: Tensor,
    classes: Tensor,
    maps: dict[str, Tensor],
    call: ModelCall,
    settings: EvaluationSettings,
    first: int = 0,
) -> EvaluatedBatch:
    """The :class:`EvaluatedBatch` of model inputs ``x`` (attributed at the settings' ``layer``, or at the
    inputs) with its classes and maps, as the metrics and ``on_batch`` see it."""
    options, layer = call.as_options(), settings.layer
    bound = layer is not None or any(v is not None for v in options.values())  # kwargs or output=
    function: nn.Module = LayerFunction.of(model, x, layer, **options) if bound else model
    attributed = x if layer is None else function.layer_output  # type: ignore[union-attr]
    return EvaluatedBatch(attributed, classes, maps, function, x, first, model, options, layer, settings.rows,
                          settings.options)  # fmt: skip


def _targets(model: nn.Module, x: Tensor, y: Tensor | None, call: dict[str, Any]) -> Tensor:
    """The class to attribute and score: the label, or the model's argmax when ``y`` is None."""
    if y is not None:
        return y.to(device=x.device, dtype=torch.long)
    with preserved_model(model) as model, torch.no_grad():
        problem = build_problem(model, x, None, None, **call)
        problem.resolve_target()
    if problem.target is None:
        raise ValueError("target='predicted' needs a model with several outputs per sample (an argmax)")
    return problem.target
