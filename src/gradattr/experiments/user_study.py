"""The study of one user model on the user's labelled data (``gradattr evaluate``): the same measurements
and report as the paper's study, for one model."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import Tensor, nn

from gradattr.evaluation import LayerFunction, SensitivityTable, evaluate
from gradattr.experiments.results import Study
from gradattr.experiments.study import Features, StudySettings, Subject, Training, study_model
from gradattr.groups import patches


def user_features(model: nn.Module, x: Tensor, patch: int, layer: str | None) -> Features:
    """Features for a user model: with ``layer``, positions along the layer output's first feature dimension
    (tokens of an embedding; Occlusion-1 occludes one position); else ``patch`` x ``patch`` patches over the
    last two dimensions, or (``patch`` = 0) every input feature alone."""
    if layer is not None:
        shape = LayerFunction.of(model, x[:1], layer).layer_output.shape[1:]
        window = (1, *shape[1:])
        return Features(
            f"positions of {layer}", groups=torch.arange(shape[0]), layer=layer,
            method_options={"occlusion": {"window": window}},
        )  # fmt: skip
    if patch:
        return Features(f"{patch}x{patch} patches", groups=patches(x.shape[1:], patch))
    return Features("features")


def user_study(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    model_name: str,
    data_name: str,
    methods: tuple[str, ...],
    patch: int = 0,
    layer: str | None = None,
    num_subsets: int = 100,
    display: int = 4,
    seed: int = 0,
    batch_size: int = 50,
    progress: bool = True,
    command: str = "gradattr evaluate",
    checkpoint: str | Path | None = None,
    evaluator: Callable[..., SensitivityTable] = evaluate,
    metrics: tuple[str, ...] = (),
    masks: Tensor | None = None,
) -> Study:
    """Study ``model`` on ``(x, y)`` (Sensitivity-n, agreement, completeness, the paper's claims).

    Which claims apply is read off the ops the model calls (:class:`~gradattr.experiments.study.OpsMet`):
    Prop. 1 and 2 where its only nonlinearities are ReLUs, whatever its modules are named.

    With ``checkpoint``, the batches measured so far are saved in that file after each batch of
    ``batch_size`` samples, and a call with the same model, data and settings resumes after them with the same
    result (see :func:`gradattr.evaluate`). ``evaluator`` runs the evaluation (default
    :func:`gradattr.evaluate`; ``functools.partial(gradattr.distributed.evaluate, workers=4)`` for Ray).
    ``metrics`` (names of :data:`gradattr.evaluation.NAMED`) are measured beside Sensitivity-n, the localisation
    ones against ``masks`` (one per sample).
    """
    start = time.perf_counter()
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    classes = int(y.max()) + 1
    with torch.no_grad():
        classes = max(classes, int(model(x[:1]).shape[1]))
    with torch.no_grad():  # the accuracy on the labelled samples (the majority rate: of the same labels)
        predicted = torch.cat([model(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])
    accuracy = float((predicted == y).double().mean())
    majority = float((y == y.mode().values).double().mean())
    subject = Subject(
        dataset=data_name,
        model_name=model_name,
        model=model,
        inputs=x,
        labels=y,
        class_names=[str(i) for i in range(classes)],
        features=user_features(model, x, patch, layer),
        tokens=(lambda ids: [str(int(i)) for i in ids]) if layer is not None else None,
        training=Training(test_accuracy=accuracy, majority_rate=majority, seconds=0.0, epochs=0),  # not trained here
        masks=masks,
    )
    settings = StudySettings(
        methods=methods, num_subsets=num_subsets, display=display, seed=seed, batch_size=batch_size,
        progress=progress, metrics=metrics,
    )
    studied = study_model(subject, settings, checkpoint, evaluator)
    return Study(
        title=f"gradattr evaluate: {model_name}",
        command=command,
        settings=settings,
        models=[studied],
        datasets={data_name: f"{x.shape[0]} samples of shape {tuple(x.shape[1:])}"},
        options={"patch": patch, "layer": layer, "evaluation_samples": {data_name: len(x)}},
        started=started,
        seconds=time.perf_counter() - start,
    )
