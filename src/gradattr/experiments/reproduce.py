"""The paper's study end to end: train (or load) every model on every available data set and study it.

``gradattr reproduce`` calls :func:`reproduce`, then writes the :class:`~gradattr.experiments.results.Study`
with :func:`gradattr.report.write_study` (report.html, results.json, CSVs).

Long runs resume: with ``ReproduceOptions.progress_dir`` (``OUT/.progress`` for the command), each finished
model study, the robustness study and the language-model section are saved there
(:class:`gradattr.progress.ProgressStore`), keyed by a hash
of everything that determines it (:func:`~gradattr.experiments.study.study_key`,
:meth:`~gradattr.experiments.robustness_study.RobustnessModels.key`), and the batches of the model being
studied are checkpointed. A later run with the same folder loads what matches instead of measuring it again
and measures the rest; models come from the model cache, so nothing is trained again either.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from torch import nn

from gradattr.data import Dataset, TextDataset
from gradattr.experiments.language_model import (
    LanguageModelSettings,
    LanguageModelStudy,
    language_model,
    measure_language_model,
)
from gradattr.experiments.recipes import (
    DATASETS,
    DatasetRecipe,
    ModelRecipe,
    TokenRemoval,
    evaluation_masks,
    evaluation_set,
    feature_kind,
    features_of,
)
from gradattr.experiments.results import Study
from gradattr.experiments.robustness_study import (
    RobustnessSettings,
    RobustnessStudy,
    measure_robustness,
    robustness_models,
)
from gradattr.experiments.schedule import LANGUAGE_MODEL_SECONDS, ROBUSTNESS_SECONDS, Schedule, Stage, model_stages
from gradattr.experiments.study import Features, ModelStudy, StudySettings, Subject, Training, study_key, study_model
from gradattr.progress import ProgressStore
from gradattr.training import is_cached, train_or_load

T = TypeVar("T")

QUALITY_METRICS = ("deletion_auc", "insertion_auc", "sparseness", "complexity", "deletion_curve", "insertion_curve")
"""Quality metrics of every model of ``reproduce`` beside Sensitivity-n (``--metrics``): deletion and insertion
(Petsiuk et al. 2018) over the features Sensitivity-n removes, with their mean curves for the report's figure,
sparseness and complexity of the maps; each costs a small part of Sensitivity-n's forward passes."""
ROBUSTNESS_DATASET = "digits"
"""The data set of the robustness study: adversarial training costs several times a normal training, and on
8x8 digits both CNNs train in seconds."""
LANGUAGE_MODEL_DATASET = "drugreview"
"""The data set whose reviews the language-model section's tokenizer and decoder are trained on."""
QUICK_SAMPLES = {"pixels": 450, "tokens": 64, "patches": 100}
"""Evaluation samples per model with ``--quick``, by what a feature is."""
FULL_SAMPLES = {"pixels": 1000, "tokens": 1000, "patches": 1000}
"""Evaluation samples per model in the full run, drawn at random as [A] did (1000), or the whole test split
where it has fewer (digits: 450; drug reviews: the test reviews of at least 64 tokens)."""


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
        progress_dir: folder of finished studies: what a previous run with the same settings finished there
            is reused, and what this run finishes is saved there (None: nothing is saved).
        fresh: delete the entries in ``progress_dir`` first, and measure everything.
        token_removal: how Sensitivity-n removes a token of a text model: ``"embedding"`` (its embedding vector
            set to 0) or ``"pad"`` (its id replaced by the pad id); see :func:`features_of`.
        language_model: also run the language-model section (a decoder trained on the reviews, its continuations
            explained) when its data set (:data:`LANGUAGE_MODEL_DATASET`) is selected.
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
    progress_dir: Path | None = None
    fresh: bool = False
    token_removal: TokenRemoval = "embedding"
    language_model: bool = True


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


def samples_for(kind: str, options: ReproduceOptions, quick: int | None = None) -> int:
    """Evaluation samples for a model whose features are of ``kind`` (:func:`feature_kind`: pixels, tokens,
    patches); ``quick``: the model's own count with ``--quick`` (:attr:`ModelRecipe.quick_samples`), if any."""
    if options.samples is not None:
        return options.samples
    if options.quick and quick is not None:
        return quick
    return (QUICK_SAMPLES if options.quick else FULL_SAMPLES)[kind]


def reproduce(options: ReproduceOptions) -> Study:
    """Train or load each selected model, study it (:func:`study_model`) and collect the :class:`Study`.

    Models are cached with :func:`gradattr.training.train_or_load` under ``options.cache``; finished studies
    are kept in and reused from ``options.progress_dir`` (listed in :attr:`Study.reused`).
    """
    start = time.perf_counter()
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    selection = select(options)
    settings = options.settings
    store = ProgressStore(options.progress_dir) if options.progress_dir is not None else None
    if store is not None and options.fresh:
        store.clear()
    plan = [(recipe, model_recipe, recipe.load(options.directories.get(recipe.key)))
            for recipe, models in selection for model_recipe in models]  # fmt: skip
    per_model = [_stages(recipe, model_recipe, data, options) for recipe, model_recipe, data in plan]
    stages = [stage for pair in per_model for stage in pair]
    robust = options.robustness and any(recipe.key == ROBUSTNESS_DATASET for recipe, _ in selection)
    if robust:
        stages.append(Stage("robustness study", ROBUSTNESS_SECONDS))
    reviews = next((data for recipe, _, data in plan if recipe.key == LANGUAGE_MODEL_DATASET), None)
    if options.language_model and isinstance(reviews, TextDataset):
        stages.append(Stage("language model", LANGUAGE_MODEL_SECONDS))
    else:
        reviews = None
    schedule = Schedule(stages, progress=settings.progress)
    studies, reused = [], []
    samples: dict[str, int] = {}
    robustness, lm = None, None
    try:
        for (recipe, model_recipe, data), (train, study) in zip(plan, per_model, strict=True):
            name = f"{recipe.key}-{model_recipe.key}"
            with schedule.stage(train.label):
                subject = _subject(recipe, model_recipe, data, options)
            samples[f"{recipe.title} / {model_recipe.title}"] = int(subject.inputs.shape[0])
            with schedule.stage(study.label):
                model_study, loaded = _model_study(subject, name, settings, store)
            studies.append(model_study)
            reused += [name] if loaded else []
        if robust:
            with schedule.stage("robustness study"):
                robustness, loaded = _robustness_study(options, store)
            reused += ["robustness"] if loaded else []
        if reviews is not None:
            with schedule.stage("language model"):
                lm, loaded = _language_model_study(reviews, options, store)
            reused += ["language-model"] if loaded else []
    finally:
        schedule.close()
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
        language_model=lm,
        reused=reused,
    )


def _model_study(
    subject: Subject, name: str, settings: StudySettings, store: ProgressStore | None
) -> tuple[ModelStudy, bool]:
    """``subject``'s study and whether it came from ``store``: loaded if saved there with the same
    :func:`study_key`, else measured (its batches checkpointed in ``store``) and saved."""
    if store is None:
        return study_model(subject, settings), False
    batches = f"{name}.batches"
    study, loaded = store.load_or_run(
        name,
        study_key(subject, settings),
        lambda: study_model(subject, settings, checkpoint=store.path(batches)),
        ModelStudy.to_state,
        lambda state: ModelStudy.from_state(subject, state),
    )
    store.remove(batches)
    return study, loaded


def _robustness_study(options: ReproduceOptions, store: ProgressStore | None) -> tuple[RobustnessStudy, bool]:
    """The robustness study and whether it came from ``store`` (see :func:`_model_study`)."""
    settings = _robustness_settings(options)
    models = robustness_models(settings, cache=options.cache, retrain=options.retrain,
                               progress=options.settings.progress)  # fmt: skip
    return _stored(
        store,
        "robustness",
        models.key(settings),
        lambda: measure_robustness(settings, models),
        RobustnessStudy.to_state,
        lambda state: RobustnessStudy.from_state(settings, state),
    )


def _language_model_study(
    reviews: TextDataset, options: ReproduceOptions, store: ProgressStore | None
) -> tuple[LanguageModelStudy, bool]:
    """The language-model section and whether it came from ``store`` (see :func:`_model_study`)."""
    settings = LanguageModelSettings(seed=options.settings.seed)
    lm = language_model(reviews, settings, cache=options.cache, retrain=options.retrain,
                        progress=options.settings.progress)  # fmt: skip
    return _stored(
        store,
        "language-model",
        lm.key(settings),
        lambda: measure_language_model(lm, settings),
        LanguageModelStudy.to_state,
        lambda state: LanguageModelStudy.from_state(settings, lm.record, state),
    )


def _stored(
    store: ProgressStore | None,
    name: str,
    key: str,
    run: Callable[[], T],
    encode: Callable[[T], Any],
    decode: Callable[[Any], T],
) -> tuple[T, bool]:
    """``run()`` without a progress store; else the store's entry ``name`` for ``key``, run and saved when it
    is missing (:meth:`ProgressStore.load_or_run`); and whether it was loaded."""
    if store is None:
        return run(), False
    return store.load_or_run(name, key, run, encode, decode)


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


def _stages(
    recipe: DatasetRecipe, model_recipe: ModelRecipe, data: Dataset, options: ReproduceOptions
) -> tuple[Stage, Stage]:
    """Training (or loading) and studying one model, with their expected costs (:mod:`.schedule`)."""
    settings = options.settings
    cached = not options.retrain and is_cached(
        f"{recipe.key}-{model_recipe.key}", lambda: model_recipe.build(data), data, seed=settings.seed,
        cache=options.cache, **model_recipe.training,
    )  # fmt: skip
    count = samples_for(feature_kind(data), options, model_recipe.quick_samples)
    return model_stages(recipe.key, model_recipe.key, count, cached=cached, subsets=settings.num_subsets)


def model_features(
    data: Dataset, model: nn.Module, model_recipe: ModelRecipe, token_removal: TokenRemoval = "embedding"
) -> Features:
    """The features of ``data`` (:func:`features_of`), their method options joined by the recipe's own."""
    features = features_of(data, model, token_removal)
    own, extra = features.method_options, model_recipe.method_options
    merged = {name: {**own.get(name, {}), **extra.get(name, {})} for name in (*own, *extra)}
    return replace(features, method_options=merged)


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
    features = model_features(data, model, model_recipe, options.token_removal)
    count = samples_for(feature_kind(data), options, model_recipe.quick_samples)
    inputs, labels = evaluation_set(data, count, seed=settings.seed)
    masks = evaluation_masks(data, count, seed=settings.seed)
    return Subject(
        dataset=recipe.title,
        model_name=model_recipe.title,
        model=model,
        inputs=inputs,
        labels=labels,
        class_names=data.class_names,
        features=features,
        training=Training(trained.test_accuracy, trained.majority_rate, trained.seconds, len(trained.history)),
        transformer=model_recipe.transformer,
        tokens=data.vocab.decode if isinstance(data, TextDataset) else None,
        sample_seed=settings.seed,
        masks=masks,
        cam_layer=model_recipe.cam_layer,
        lrp_composite=model_recipe.lrp_composite,
    )
