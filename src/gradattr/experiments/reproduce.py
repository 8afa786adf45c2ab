"""The paper's study end to end: train (or load) every model on every available data set and study it.

``gradattr reproduce`` calls :func:`reproduce`, then writes the :class:`~gradattr.experiments.results.Study`
with :func:`gradattr.report.write_study` (report.html, results.json, CSVs).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from gradattr.data import Dataset, TextDataset
from gradattr.experiments.recipes import DATASETS, DatasetRecipe, ModelRecipe, evaluation_set, features_of
from gradattr.experiments.results import Study
from gradattr.experiments.robustness_study import RobustnessSettings, run_robustness
from gradattr.experiments.study import StudySettings, Subject, Training, study_model
from gradattr.training import train_or_load

ROBUSTNESS_DATASET = "digits"
"""The data set of the robustness study: adversarial training costs several times a normal training, and on
8x8 digits both CNNs train in seconds."""
QUICK_SAMPLES = {"pixels": 450, "tokens": 64, "patches": 100}
"""Evaluation samples per model with ``--quick``, by what a feature is."""
FULL_SAMPLES = {"pixels": 450, "tokens": 100, "patches": 200}
"""Evaluation samples per model in the full run ([A] used 1000 on MNIST)."""


class StudyConfigError(ValueError):
    """The requested data sets or models do not exist or cannot be loaded as asked (a usage error)."""


@dataclass(frozen=True)
class ReproduceOptions:
    """What to run.

    Attributes:
        quick: digits and drug reviews only, fewer samples (the five-minute run).
        datasets: data set keys to run (None: all available; with ``quick``, the quick ones).
        models: model keys to keep (None: all of each data set's models).
        samples: evaluation samples per model (None: :data:`QUICK_SAMPLES` / :data:`FULL_SAMPLES`).
        directories: data set key -> directory of its files (``mnist``, ``cifar10``, ``imdb``).
        cache: model cache directory (None: the user cache directory).
        retrain: train even when a cached model exists.
        settings: how each model is studied.
        command: the command line, recorded in the report.
        robustness: also run the robustness study (standard vs adversarially trained CNN, Nielsen et al.
            2022) when its data set (:data:`ROBUSTNESS_DATASET`) is selected.
    """

    quick: bool = False
    datasets: Sequence[str] | None = None
    models: Sequence[str] | None = None
    samples: int | None = None
    directories: dict[str, Path] = field(default_factory=dict)
    cache: Path | None = None
    retrain: bool = False
    settings: StudySettings = field(default_factory=StudySettings)
    command: str = "gradattr reproduce"
    robustness: bool = True


def select(options: ReproduceOptions) -> list[tuple[DatasetRecipe, list[ModelRecipe]]]:
    """The data sets and models a run will study, in report order.

    Raises:
        StudyConfigError: an unknown data set or model key, a data set whose files are missing or need a
            directory that was not given, or a selection with no model left.
    """
    known = {recipe.key: recipe for recipe in DATASETS}
    if options.datasets:
        unknown = [key for key in options.datasets if key not in known]
        if unknown:
            raise StudyConfigError(f"unknown data set(s) {', '.join(unknown)}; choose from {', '.join(known)}")
        chosen = [known[key] for key in dict.fromkeys(options.datasets)]
        for recipe in chosen:
            if recipe.needs_directory and recipe.key not in options.directories:
                raise StudyConfigError(f"{recipe.key} needs its files: pass --{recipe.key} DIR")
            if not recipe.available():
                raise StudyConfigError(f"{recipe.key}: data files not installed ({recipe.description})")
    else:
        chosen = [
            r
            for r in DATASETS
            if (r.quick or not options.quick) and (r.key in options.directories if r.needs_directory else r.available())
        ]
    selection = []
    for recipe in chosen:
        models = [m for m in recipe.models if not options.models or m.key in options.models]
        if models:
            selection.append((recipe, models))
    if options.models:
        offered = {m.key for recipe in chosen for m in recipe.models}
        missing = [key for key in options.models if key not in offered]
        if missing:
            raise StudyConfigError(
                f"model(s) {', '.join(missing)} not among the selected data sets' models: {', '.join(sorted(offered))}"
            )
    if not selection:
        raise StudyConfigError("nothing to run: no data set and model selected")
    return selection


def samples_for(features: str, options: ReproduceOptions) -> int:
    """Evaluation samples for a model whose features are ``features`` (pixels, tokens, 4x4 patches)."""
    if options.samples is not None:
        return options.samples
    kind = "patches" if "patches" in features else features
    return (QUICK_SAMPLES if options.quick else FULL_SAMPLES)[kind]


def reproduce(options: ReproduceOptions) -> Study:
    """Train or load each selected model, study it (:func:`study_model`) and collect the :class:`Study`.

    Models are cached with :func:`gradattr.training.train_or_load` under ``options.cache``.
    """
    start = time.perf_counter()
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    selection = select(options)
    settings = options.settings
    studies = []
    samples: dict[str, int] = {}
    bar = tqdm(total=sum(len(models) for _, models in selection), desc="reproduce", unit="model",
               disable=not settings.progress)  # fmt: skip
    try:
        for recipe, models in selection:
            bar.set_description(f"reproduce: loading {recipe.key}")
            data = recipe.load(options.directories.get(recipe.key))
            for model_recipe in models:
                bar.set_description(f"reproduce: {recipe.key} {model_recipe.key}")
                subject = _subject(recipe, model_recipe, data, options)
                samples[f"{recipe.title} / {model_recipe.title}"] = int(subject.inputs.shape[0])
                studies.append(study_model(subject, settings))
                bar.update()
    finally:
        bar.close()
    robustness = None
    if options.robustness and any(recipe.key == ROBUSTNESS_DATASET for recipe, _ in selection):
        robustness = run_robustness(
            _robustness_settings(options),
            cache=options.cache,
            retrain=options.retrain,
            progress=settings.progress,
        )
    run_options: dict[str, Any] = {
        "quick": options.quick,
        "datasets": [recipe.key for recipe, _ in selection],
        "models": sorted({m.key for _, models in selection for m in models}),
        "evaluation_samples": samples,
        "cache": str(options.cache) if options.cache else "user cache directory ($GRADATTR_CACHE)",
        "training_seed": settings.seed,
    }
    return Study(
        title="Ancona et al. (ICLR 2018), reproduced with gradattr",
        command=options.command,
        settings=settings,
        models=studies,
        datasets={recipe.title: recipe.description for recipe, _ in selection},
        options=run_options,
        started=started,
        seconds=time.perf_counter() - start,
        robustness=robustness,
    )


def _robustness_settings(options: ReproduceOptions) -> RobustnessSettings:
    """The robustness study's settings for this run: ``--samples`` and ``--display`` bound its sample counts."""
    defaults = RobustnessSettings(dataset=ROBUSTNESS_DATASET, seed=options.settings.seed)
    if options.samples is None:
        return replace(defaults, display=options.settings.display)
    return replace(
        defaults,
        samples=min(defaults.samples, options.samples),
        sanity_samples=min(defaults.sanity_samples, options.samples),
        display=options.settings.display,
    )


def _subject(recipe: DatasetRecipe, model_recipe: ModelRecipe, data: Dataset, options: ReproduceOptions) -> Subject:
    settings = options.settings
    model, trained = train_or_load(
        f"{recipe.key}-{model_recipe.key}",
        lambda: model_recipe.build(data),
        data,
        seed=settings.seed,
        cache=options.cache,
        retrain=options.retrain,
        progress=settings.progress,
        **model_recipe.training,
    )
    features = features_of(data, model)
    inputs, labels = evaluation_set(data, samples_for(features.description, options))
    return Subject(
        dataset=recipe.title,
        model_name=model_recipe.title,
        model=model,
        inputs=inputs,
        labels=labels,
        class_names=data.class_names,
        features=features,
        training=Training(trained.test_accuracy, trained.majority_rate, trained.seconds, len(trained.history)),
        relu_only=model_recipe.relu_only,
        gated=model_recipe.gated,
        tokens=data.vocab.decode if isinstance(data, TextDataset) else None,
    )
