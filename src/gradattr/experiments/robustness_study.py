"""The robustness study of Nielsen et al. (IEEE SPM 2022): a standard and an adversarially trained CNN.

Both models share the architecture, the data and the seed; the robust one is trained with PGD (Madry et al.
2018) on every batch. The study measures what the tutorial asks a practitioner to report:

* the maps of several methods on the same test images, side by side for both models;
* sanity checks (Adebayo et al. 2018): cascading parameter randomisation, top layer first, and how similar
  each method's maps stay (a useful method's maps change);
* class sensitivity: how different the maps of the five most likely classes are;
* accuracy and robust accuracy (PGD), and the robustness of the explanations themselves: the explanation
  attack of Ghorbani et al. (2019) against random noise of the same size, max-sensitivity and infidelity
  (Yeh et al. 2019), via :func:`gradattr.robustness.compare_models`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from gradattr.data import Dataset
from gradattr.experiments.class_activation_maps import CAM_METHODS
from gradattr.experiments.recipes import DATASETS, ModelRecipe
from gradattr.experiments.study import Training
from gradattr.methods import LAYER_METHODS, attribute
from gradattr.progress import as_tensor, fingerprint
from gradattr.robustness import (
    PGD,
    ClassSensitivityResult,
    ModelComparison,
    SanityResult,
    class_sensitivity,
    compare_models,
    model_randomisation,
)
from gradattr.training import TrainResult, train_or_load

MODELS: tuple[str, ...] = ("standard", "robust")
"""The two models of the study, in report order."""


@dataclass(frozen=True)
class RobustnessSettings:
    """How the robustness study is run.

    Attributes:
        dataset: key of an image data set in :data:`~gradattr.experiments.recipes.DATASETS`.
        methods: the methods whose maps are shown and sanity-checked: the gradient methods, then Grad-CAM and its
            family (:data:`~gradattr.experiments.class_activation_maps.CAM_METHODS`).
        cam_layer: the layer the class activation maps read (the paper's CNN: its last convolution).
        epsilon: L∞ radius of PGD, for adversarial training and for robust accuracy (inputs in [-1, 1]).
        train_steps: PGD steps per training batch.
        eval_steps: PGD steps for robust accuracy.
        explanation_epsilon: L∞ radius of the explanation attack, max-sensitivity's ball and the noise.
        samples: test samples for accuracy, robust accuracy and the explanation measures.
        sanity_samples: test samples for the sanity checks and class sensitivity.
        display: test samples shown as heatmaps.
        seed: training and measurement seed.
    """

    dataset: str = "digits"
    methods: tuple[str, ...] = ("saliency", "smoothgrad", "guided_backprop", "integrated_gradients", "deeplift",
                                *CAM_METHODS)  # fmt: skip
    cam_layer: str = "conv2"
    epsilon: float = 0.3
    train_steps: int = 3
    eval_steps: int = 10
    explanation_epsilon: float = 0.1
    samples: int = 200
    sanity_samples: int = 64
    display: int = 4
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def method_options(self) -> dict[str, dict[str, Any]]:
        """Per-method options of :func:`gradattr.attribute`: the class activation maps' layer; Integrated
        Gradients without its completeness check (robustness compares maps; the study of each model reports the
        gap)."""
        options = {m: {"layer": self.cam_layer} for m in self.methods if m in LAYER_METHODS}
        if "integrated_gradients" in self.methods:
            options["integrated_gradients"] = {"gap_tolerance": None}
        return options


@dataclass(eq=False)
class RobustnessStudy:
    """Everything the robustness section of the report shows.

    Attributes:
        dataset: the data set's title.
        settings: how it was run.
        training: model -> accuracy and training record (``"standard"``, ``"robust"``).
        inputs: the displayed test images (D, C, H, W); ``labels`` their true classes.
        predictions: model -> LongTensor(D), the predicted classes the maps explain.
        maps: model -> method -> Tensor(D, C, H, W).
        comparison: accuracy, robust accuracy and explanation robustness, standard vs robust.
        sanity: model -> cascading parameter randomisation result.
        classes: model -> class sensitivity result.
        seconds: wall time, training included.
    """

    dataset: str
    settings: RobustnessSettings
    training: dict[str, Training]
    inputs: Tensor
    labels: Tensor
    class_names: tuple[str, ...]
    predictions: dict[str, Tensor]
    maps: dict[str, dict[str, Tensor]]
    comparison: ModelComparison
    sanity: dict[str, SanityResult]
    classes: dict[str, ClassSensitivityResult]
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def sanity_passes(self, model: str) -> dict[str, bool]:
        """Method -> whether its maps changed under cascading randomisation of ``model``."""
        return self.sanity[model].passes()

    def to_dict(self) -> dict[str, Any]:
        """The numbers of the section, JSON-ready (maps are in the figures, not here)."""
        return {
            "dataset": self.dataset,
            "settings": self.settings.to_dict(),
            "training": {name: t.to_dict() for name, t in self.training.items()},
            "comparison": self.comparison.to_dict(),
            "sanity_checks": {name: {"layers": list(r.steps), "passes": r.passes()} for name, r in self.sanity.items()},
            "class_sensitivity": {
                name: {m: r.mean(m, "spearman") for m in r.methods} for name, r in self.classes.items()
            },
            "seconds": self.seconds,
            "notes": self.notes,
        }

    def tables(self) -> dict[str, list[dict[str, Any]]]:
        """CSV tables: the comparison, the sanity checks and class sensitivity, with a ``model`` column."""
        return {
            "robustness_comparison": list(self.comparison.to_dict()["rows"]),
            "sanity_checks": [{"model": name} | row for name, r in self.sanity.items() for row in r.rows()],
            "class_sensitivity": [{"model": name} | row for name, r in self.classes.items() for row in r.rows()],
        }

    def to_state(self) -> dict[str, Any]:
        """Everything measured, as plain values (tensors, numbers, strings) for a progress entry; the settings
        are not included (see :meth:`from_state`)."""
        return {
            "dataset": self.dataset,
            "training": {name: asdict(t) for name, t in self.training.items()},
            "inputs": self.inputs, "labels": self.labels, "class_names": list(self.class_names),
            "predictions": dict(self.predictions), "maps": {name: dict(m) for name, m in self.maps.items()},
            "comparison": {"rows": self.comparison.rows, "settings": self.comparison.settings},
            "sanity": {
                name: {"test": r.test, "steps": list(r.steps), "scores": r.scores, "top_features": r.top_features,
                       "seed": r.seed}
                for name, r in self.sanity.items()
            },
            "classes": {
                name: {"classes": r.classes, "matrices": r.matrices, "top_features": r.top_features}
                for name, r in self.classes.items()
            },
            "seconds": self.seconds, "notes": list(self.notes),
        }  # fmt: skip

    @classmethod
    def from_state(cls, settings: RobustnessSettings, state: dict[str, Any]) -> RobustnessStudy:
        """The study run with ``settings`` and saved by :meth:`to_state`.

        Raises:
            ValueError: ``state`` is not a saved robustness study (wrong fields or types).
        """
        if set(state["training"]) != set(MODELS) or set(state["maps"]) != set(MODELS):
            raise ValueError(f"a robustness study has the models {', '.join(MODELS)}")
        return cls(
            dataset=str(state["dataset"]),
            settings=settings,
            training={name: Training(**record) for name, record in state["training"].items()},
            inputs=as_tensor(state["inputs"], "displayed inputs"),
            labels=as_tensor(state["labels"], "displayed labels"),
            class_names=tuple(str(name) for name in state["class_names"]),
            predictions={name: as_tensor(p, f"predictions of {name}") for name, p in state["predictions"].items()},
            maps={
                name: {m: as_tensor(t, f"{m} map of {name}") for m, t in maps.items()}
                for name, maps in state["maps"].items()
            },
            comparison=ModelComparison(list(state["comparison"]["rows"]), dict(state["comparison"]["settings"])),
            sanity={
                name: SanityResult(r["test"], tuple(r["steps"]), r["scores"], int(r["top_features"]), int(r["seed"]))
                for name, r in state["sanity"].items()
            },
            classes={
                name: ClassSensitivityResult(as_tensor(r["classes"], "classes"), r["matrices"], int(r["top_features"]))
                for name, r in state["classes"].items()
            },
            seconds=float(state["seconds"]),
            notes=[str(note) for note in state["notes"]],
        )


def _cnn_recipe(dataset: str) -> tuple[Callable[[Path | None], Dataset], ModelRecipe, str]:
    """The data loader, the paper's CNN recipe and the title of ``dataset``."""
    for recipe in DATASETS:
        if recipe.key == dataset:
            cnn = next((m for m in recipe.models if m.key == "cnn"), None)
            if cnn is not None:
                return recipe.load, cnn, recipe.title
    images = [r.key for r in DATASETS if any(m.key == "cnn" for m in r.models)]
    raise ValueError(f"the robustness study needs an image data set with a CNN: one of {', '.join(images)}")


def _training(result: TrainResult) -> Training:
    return Training(result.test_accuracy, result.majority_rate, result.seconds, len(result.history))


@dataclass(eq=False)
class RobustnessModels:
    """The two CNNs of the robustness study, trained or loaded from the cache, with their data.

    Attributes:
        dataset: the data set's title.
        data: the data set.
        trained: ``"standard"`` / ``"robust"`` -> (model in eval mode, training record).
        seconds: wall time of loading the data and training or loading the models.
    """

    dataset: str
    data: Dataset
    trained: dict[str, tuple[nn.Module, TrainResult]]
    seconds: float

    def key(self, settings: RobustnessSettings) -> str:
        """A :func:`~gradattr.progress.fingerprint` of everything the study measures depends on: the settings,
        both models' weights and the test data."""
        return fingerprint({
            "study": "robustness", "settings": settings.to_dict(),
            "weights": {name: model.state_dict() for name, (model, _) in self.trained.items()},
            "test": [self.data.test_x, self.data.test_y], "classes": list(self.data.class_names),
        })  # fmt: skip


def robustness_models(
    settings: RobustnessSettings = RobustnessSettings(),
    *,
    data: Dataset | None = None,
    cache: str | Path | None = None,
    retrain: bool = False,
    progress: bool = True,
) -> RobustnessModels:
    """Train (or load from the cache) the standard and the PGD-trained CNN of :func:`run_robustness`.

    The standard CNN is the main study's (same cache entry); the robust one adds ``perturb=PGD(...)``.
    """
    start = time.perf_counter()
    load, recipe, title = _cnn_recipe(settings.dataset)
    data = data if data is not None else load(None)
    trained: dict[str, tuple[nn.Module, TrainResult]] = {
        "standard": train_or_load(
            f"{settings.dataset}-cnn", lambda: recipe.build(data), data, seed=settings.seed, cache=cache,
            retrain=retrain, progress=progress, **recipe.training,
        ),
        "robust": train_or_load(
            f"{settings.dataset}-cnn-pgd", lambda: recipe.build(data), data, seed=settings.seed, cache=cache,
            retrain=retrain, progress=progress, perturb=PGD(settings.epsilon, steps=settings.train_steps),
            **recipe.training,
        ),
    }  # fmt: skip
    return RobustnessModels(title, data, trained, time.perf_counter() - start)


def measure_robustness(settings: RobustnessSettings, models: RobustnessModels) -> RobustnessStudy:
    """Measure both models of ``models`` (see :func:`run_robustness`)."""
    start = time.perf_counter()
    data = models.data
    networks = {name: model for name, (model, _) in models.trained.items()}
    attack = PGD(settings.epsilon, steps=settings.eval_steps, seed=settings.seed)
    comparison = compare_models(
        networks["standard"], networks["robust"], data, attack=attack, samples=settings.samples,
        explanation_epsilon=settings.explanation_epsilon, seed=settings.seed,
    )  # fmt: skip
    shown = data.test_x[: settings.display]
    probe = data.test_x[: settings.sanity_samples]
    options = settings.method_options()
    predictions, maps, sanity, classes = {}, {}, {}, {}
    for name, model in networks.items():
        with torch.no_grad():
            predictions[name] = model(shown).argmax(1)
        maps[name] = {
            m: attribute(model, shown, m, target=predictions[name], **options.get(m, {})) for m in settings.methods
        }
        sanity[name] = model_randomisation(model, probe, list(settings.methods), seed=settings.seed,
                                           method_options=options)  # fmt: skip
        classes[name] = class_sensitivity(model, probe, list(settings.methods), method_options=options)
    return RobustnessStudy(
        dataset=models.dataset,
        settings=settings,
        training={name: _training(result) for name, (_, result) in models.trained.items()},
        inputs=shown,
        labels=data.test_y[: settings.display],
        class_names=data.class_names,
        predictions=predictions,
        maps=maps,
        comparison=comparison,
        sanity=sanity,
        classes=classes,
        seconds=models.seconds + time.perf_counter() - start,
    )


def run_robustness(
    settings: RobustnessSettings = RobustnessSettings(),
    *,
    data: Dataset | None = None,
    cache: str | Path | None = None,
    retrain: bool = False,
    progress: bool = True,
) -> RobustnessStudy:
    """Train (or load from the cache) the standard and the PGD-trained CNN and measure both.

    The standard CNN is the main study's (same cache entry); the robust one adds ``perturb=PGD(...)``.

    Args:
        settings: what to run.
        data: the loaded data set (default: load ``settings.dataset``).
        cache: model cache directory (None: the user cache directory).
        retrain: train even when cached models exist.
        progress: progress bars while training.

    Returns:
        A :class:`RobustnessStudy`.
    """
    models = robustness_models(settings, data=data, cache=cache, retrain=retrain, progress=progress)
    return measure_robustness(settings, models)
