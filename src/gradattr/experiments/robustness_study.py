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
from gradattr.experiments.recipes import DATASETS, ModelRecipe
from gradattr.experiments.study import Training
from gradattr.methods import LAYER_METHODS, attribute
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
        methods: the methods whose maps are shown and sanity-checked.
        cam_layer: the layer Grad-CAM reads (the paper's CNN: its last convolution).
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
    methods: tuple[str, ...] = (
        "saliency", "smoothgrad", "guided_backprop", "gradcam", "integrated_gradients", "deeplift",
    )  # fmt: skip
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
        """Per-method options of :func:`gradattr.attribute` (the Grad-CAM layer)."""
        return {m: {"layer": self.cam_layer} for m in self.methods if m in LAYER_METHODS}


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
    start = time.perf_counter()
    load, recipe, title = _cnn_recipe(settings.dataset)
    data = data if data is not None else load(None)
    attack = PGD(settings.epsilon, steps=settings.eval_steps, seed=settings.seed)
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
    models = {name: model for name, (model, _) in trained.items()}
    comparison = compare_models(
        models["standard"], models["robust"], data, attack=attack, samples=settings.samples,
        explanation_epsilon=settings.explanation_epsilon, seed=settings.seed,
    )  # fmt: skip
    shown = data.test_x[: settings.display]
    probe = data.test_x[: settings.sanity_samples]
    options = settings.method_options()
    predictions, maps, sanity, classes = {}, {}, {}, {}
    for name, model in models.items():
        with torch.no_grad():
            predictions[name] = model(shown).argmax(1)
        maps[name] = {
            m: attribute(model, shown, m, target=predictions[name], **options.get(m, {})) for m in settings.methods
        }
        sanity[name] = model_randomisation(model, probe, list(settings.methods), seed=settings.seed,
                                           method_options=options)  # fmt: skip
        classes[name] = class_sensitivity(model, probe, list(settings.methods), method_options=options)
    return RobustnessStudy(
        dataset=title,
        settings=settings,
        training={name: _training(result) for name, (_, result) in trained.items()},
        inputs=shown,
        labels=data.test_y[: settings.display],
        class_names=data.class_names,
        predictions=predictions,
        maps=maps,
        comparison=comparison,
        sanity=sanity,
        classes=classes,
        seconds=time.perf_counter() - start,
    )
