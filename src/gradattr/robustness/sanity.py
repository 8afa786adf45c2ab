"""Sanity checks for attribution maps (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018), as
summarised in Nielsen et al., "Robust Explainability", IEEE SPM 2022, Sec. "Sanity checks".

An explanation of a model should depend on the model. Two randomisation tests check that it does:

* **Model parameter randomisation** (:func:`model_randomisation`). The parameterised layers are
  re-initialised one at a time from the top (output) layer down to the input, with each layer's own
  initialiser (``reset_parameters``), and the maps of the randomised model are compared with the original
  maps. *Cascading*: the randomisation accumulates (step l has the top l layers random). *Independent*: only
  layer l is random at step l, the others keep their trained weights.
* **Data (label) randomisation** (:func:`data_randomisation`). A copy of the architecture is trained on
  permuted training labels, which it can only memorise; its maps are compared with those of the model
  trained on the true labels.

A method passes when its maps change: a low rank correlation with the original maps
(:meth:`SanityResult.passes`). A method whose maps survive the randomisation (Guided Backprop in Adebayo et
al.'s experiments, or anything dominated by the input image, like an edge detector) explains the input, not
the model. Similarity is measured per sample by the measures of :mod:`gradattr.robustness._similarity`:
Spearman rank correlation of the signed and of the absolute maps, SSIM of the maps scaled to [0, 1] (image
maps), and the top-k intersection.

The user's model is never modified: every randomisation happens on a ``copy.deepcopy`` (so memory for one
more copy of the model is needed), and the global random state is restored after each re-initialisation.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from gradattr.data.dataset import Dataset
from gradattr.engine.hygiene import original
from gradattr.files import write_csv
from gradattr.methods._problem import Target
from gradattr.robustness._explainers import (
    Explainer,
    Methods,
    check_inputs,
    fixed_target,
    model_output,
    resolve_explainers,
)
from gradattr.robustness._similarity import MEASURES, check_measures, default_measures, resolve_top
from gradattr.training import TrainResult, train

Mode = Literal["cascading", "independent"]
MODES: tuple[str, ...] = ("cascading", "independent")
COLUMNS: tuple[str, ...] = ("method", "step", "layer", "measure", "mean", "std", "count")
LABELS_STEP = "permuted labels"
"""The name of the one step of :func:`data_randomisation`."""

PASS_THRESHOLD = 0.5
"""Default bound on |mean Spearman| for :meth:`SanityResult.passes` (our choice, see there)."""


@dataclass(frozen=True, eq=False)
class SanityResult:
    """Similarity of each method's maps to its original maps after each randomisation step.

    Attributes:
        test: ``"cascading"``, ``"independent"`` (model randomisation) or ``"labels"`` (data randomisation).
        steps: what was randomised at each step: layer names, top (output) layer first, or
            ``("permuted labels",)``. ``"(model)"`` names parameters of the model's own module.
        scores: method -> measure -> Tensor(len(steps), B) float64, the per-sample similarity to the
            original map (NaN where a map is constant).
        top_features: k of the top-k intersection.
        seed: the seed of the randomisation.
        maps: with ``keep_maps``, method -> Tensor(1 + len(steps), B, ...): the original maps, then each
            step's; otherwise ``None``.
        training: data randomisation only: ``"true labels"`` / ``"permuted labels"`` -> the training record
            (accuracies show whether the permuted-label model memorised its training data).
    """

    test: str
    steps: tuple[str, ...]
    scores: dict[str, dict[str, Tensor]]
    top_features: int
    seed: int
    maps: dict[str, Tensor] | None = None
    training: dict[str, TrainResult] = field(default_factory=dict)

    @property
    def methods(self) -> list[str]:
        return list(self.scores)

    @property
    def measures(self) -> list[str]:
        return list(next(iter(self.scores.values())))

    def mean(self, method: str, measure: str = "spearman_abs") -> Tensor:
        """Tensor(len(steps)): the mean over samples (NaN skipped) of ``measure`` for ``method``."""
        return self._scores(method, measure).nanmean(dim=1)

    def rows(self) -> list[dict[str, Any]]:
        """One row per (method, step, measure) with the keys of :data:`COLUMNS`; ``step`` counts from 1."""
        rows = []
        for method, by_measure in self.scores.items():
            for step, layer in enumerate(self.steps):
                for measure, values in by_measure.items():
                    mean, std, count = _summary(values[step])
                    row = (method, step + 1, layer, measure, mean, std, count)
                    rows.append(dict(zip(COLUMNS, row, strict=True)))
        return rows

    def to_csv(self, path: str | Path) -> Path:
        """Write :meth:`rows` as CSV with a header of :data:`COLUMNS` (NaN written as ``nan``)."""
        return write_csv(path, self.rows(), COLUMNS)

    def passes(self, threshold: float = PASS_THRESHOLD, measure: str = "spearman_abs") -> dict[str, bool]:
        """Method -> whether its maps changed: |mean ``measure``| < ``threshold`` at the decisive steps.

        The decisive step of the cascading test is the last one (every layer random, Adebayo et al.'s
        endpoint); the independent test needs every layer to matter, so every step is decisive; the label test
        has one step. A step where no sample has a defined value (all maps constant) does not pass.

        The default, |ρ| < 0.5 on the absolute maps, is our choice: Adebayo et al. read their curves by eye and
        set no bound. 0.5 lies halfway between unrelated maps (ρ ≈ 0) and unchanged ones (ρ = 1). Measured on
        digits (64 test images, models trained 2-3 epochs), after the full cascade: a 32-32 MLP's saliency maps
        fall to ρ ≈ 0.0 and Gradient*Input/IG/DeepLIFT to ≈ 0.2 (their magnitude keeps following |x|, the
        input-dominated part Adebayo et al. point out); the paper's CNN keeps more (saliency ≈ 0.4,
        Gradient*Input ≈ 0.45: convolutions of random weights still see the strokes), while its Guided Backprop
        maps stay at ≈ 0.7 and fail, as in Adebayo et al.; a model-independent edge detector stays at 1.
        Results near the bound are borderline whatever the bound.

        Args:
            threshold: bound on the absolute mean correlation, in (0, 1].
            measure: one of :attr:`measures` (a Spearman measure by default; SSIM and top-k work alike).

        Returns:
            method -> True when its maps changed enough at every decisive step.
        """
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must lie in (0, 1], got {threshold}")
        decisive = slice(-1, None) if self.test == "cascading" else slice(None)
        verdicts = {}
        for method in self.methods:
            means = self.mean(method, measure)[decisive]
            verdicts[method] = bool(((means.abs() < threshold) & ~means.isnan()).all())
        return verdicts

    def __str__(self) -> str:
        """Mean similarity per (method, measure) as rows, steps as columns."""
        head = ["method", "measure", *self.steps]
        body = [
            [method, measure, *(_cell(v) for v in self.mean(method, measure).tolist())]
            for method in self.methods
            for measure in self.measures
        ]
        widths = [max(len(str(row[i])) for row in [head, *body]) for i in range(len(head))]
        return "\n".join(
            "  ".join(f"{cell:>{w}}" for cell, w in zip(row, widths, strict=True)) for row in [head, *body]
        )

    def _scores(self, method: str, measure: str) -> Tensor:
        if method not in self.scores:
            raise ValueError(f"unknown method {method!r}; this result has {self.methods}")
        if measure not in self.scores[method]:
            raise ValueError(f"unknown measure {measure!r}; this result has {self.measures}")
        return self.scores[method][measure]


def _summary(values: Tensor) -> tuple[float, float, int]:
    """Mean, sample standard deviation (ddof 1) and count of the non-NaN entries; NaN where undefined."""
    valid = values[~values.isnan()]
    count = valid.numel()
    mean = float(valid.mean()) if count else math.nan
    std = float(valid.std()) if count >= 2 else math.nan
    return mean, std, count


def _cell(value: float) -> str:
    return f"{value:.3f}" if math.isfinite(value) else "nan"


# -- which layers, and how they are re-initialised -----------------------------------------------------------
def randomisation_order(model: nn.Module, inputs: Tensor) -> list[tuple[str, nn.Module]]:
    """The parameterised layers of ``model`` in the order they are randomised: top (output) layer first.

    A layer is a module with parameters of its own (``module.parameters(recurse=False)``). The order is the
    reverse of each layer's first completed call in a forward pass on ``inputs`` (recorded with forward
    hooks), so it follows the computation, not the definition order or an ``nn.Sequential``; a module called
    several times counts at its first call. A parameterised module that the forward pass never calls (its
    parameters unused, or used directly by another module) is left out with a warning.

    Args:
        model: the model (left unchanged; hooks are removed afterwards).
        inputs: a batch (B, ...) the model accepts.

    Returns:
        ``[(name, module), ...]`` with dotted names from ``model.named_modules()`` (``"(model)"`` for the
        model's own parameters).

    Example:
        >>> model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
        >>> [name for name, _ in randomisation_order(model, torch.ones(1, 4))]
        ['2', '0']
    """
    owners = {module: name or "(model)" for name, module in model.named_modules() if _has_own_parameters(module)}
    called: dict[nn.Module, None] = {}  # insertion-ordered set of completed calls

    def record(module: nn.Module, args: Any, output: Any) -> None:
        called.setdefault(original(module), None)  # the forward pass runs on a view of the model

    handles = [module.register_forward_hook(record) for module in owners]
    try:
        model_output(model, inputs)
    finally:
        for handle in handles:
            handle.remove()
    unused = [name for module, name in owners.items() if module not in called]
    if unused:
        warnings.warn(
            f"parameterised modules never called in the forward pass are not randomised: {', '.join(unused)}",
            stacklevel=3,
        )
    if not called:
        raise ValueError(f"{type(model).__name__} has no parameterised module that its forward pass calls")
    return [(owners[module], module) for module in reversed(called)]


def _has_own_parameters(module: nn.Module) -> bool:
    return next(module.parameters(recurse=False), None) is not None


def _layer_seed(seed: int, index: int) -> int:
    """The seed of the index-th layer's re-initialisation: the same in both modes, so the first cascading
    step equals the first independent step, and distinct across layers and seeds."""
    return (seed * 1_000_003 + index) % (2**63)


def reinitialise(module: nn.Module, seed: int) -> None:
    """Re-draw ``module``'s own parameters with its initialiser, seeded, leaving the global RNG as it was.

    ``module.reset_parameters()`` where the module has one (Linear, Conv, BatchNorm, LSTM, ...: the original
    initialiser, as Adebayo et al. do; it resets whatever that method resets). Otherwise each own floating
    parameter is redrawn from N(0, σ²) with σ its current standard deviation over its entries (1 for a single
    entry or a constant), keeping the layer's scale (our choice; the paper's models all have initialisers).
    Deterministic initialisers are not random: a BatchNorm or LayerNorm layer goes back to weight 1, bias 0
    (and BatchNorm to running mean 0, variance 1), so on an untrained model its step changes nothing.

    Args:
        module: the layer; changed in place.
        seed: seed of the draw.
    """
    devices = sorted({p.device.index or 0 for p in module.parameters() if p.is_cuda})
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(seed)
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()
            return
        for parameter in module.parameters(recurse=False):
            if parameter.is_floating_point():
                std = float(parameter.std()) if parameter.numel() > 1 else 0.0
                parameter.normal_(0.0, std if std > 0 else 1.0)


def _randomised_states(
    work: nn.Module, layers: Sequence[tuple[str, nn.Module]], mode: Mode, seed: int
) -> Iterator[tuple[str, nn.Module]]:
    """Randomise ``work`` layer by layer, top first; yield ``(layer name, work)`` in each step's state.

    Cascading keeps every re-initialisation; independent restores the layer's state (bit-exact, from a
    clone of its state dict) before the next one.
    """
    for index, (name, layer) in enumerate(layers):
        saved = {k: v.clone() for k, v in layer.state_dict().items()} if mode == "independent" else None
        reinitialise(layer, _layer_seed(seed, index))
        yield name, work
        if saved is not None:
            layer.load_state_dict(saved)


# -- the tests ----------------------------------------------------------------------------------------------
def model_randomisation(
    model: nn.Module,
    inputs: Tensor,
    methods: Methods,
    target: Target = None,
    *,
    mode: Mode = "cascading",
    seed: int = 0,
    measures: Sequence[str] | None = None,
    top_features: int | None = None,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    keep_maps: bool = False,
) -> SanityResult:
    """Model parameter randomisation test (Adebayo et al. 2018, Sec. 3.1; Nielsen et al. 2022).

    Procedure: fix the target classes c (``target``, or the model's prediction); compute the original maps
    R^m(x) of every method m; then for each parameterised layer l = 1..L in :func:`randomisation_order` (top
    first) re-initialise layer l with its own initialiser (seeded by ``seed`` and l), compute the maps
    R^m_l(x) and measure their similarity to R^m(x) per sample. ``mode="cascading"`` keeps layers 1..l random
    at step l; ``mode="independent"`` randomises only layer l and restores it afterwards. All of it runs on a
    deep copy: ``model`` is never modified, also when a method raises.

    Args:
        model: the trained classifier (pre-softmax outputs).
        inputs: Tensor (B, ...) of samples to explain.
        methods: a method name, a list of names from :data:`gradattr.METHODS`, or label -> name or callable
            ``(model, inputs, target) -> maps (B, ...)`` (e.g. a reference that ignores the model).
        target: int, B ints, LongTensor(B) or ``None`` (the original model's predicted classes, kept fixed
            through all steps).
        mode: ``"cascading"`` or ``"independent"``.
        seed: seed of the re-initialisations.
        measures: names from ``MEASURES``: ``"spearman"``, ``"spearman_abs"``, ``"ssim"`` (maps scaled to [0, 1],
            image maps only), ``"topk_intersection"``; default all that apply to the maps.
        top_features: k of the top-k intersection; default 10 % of the features per sample.
        method_options: label -> keyword arguments of :func:`gradattr.attribute` for the named methods, e.g.
            ``{"integrated_gradients": {"steps": 32}}``.
        keep_maps: keep all maps in the result (for figures).

    Returns:
        A :class:`SanityResult` with one step per layer: ``rows()``/``to_csv`` (method, step, layer, measure,
        mean, std, count), ``passes(threshold)``, per-sample ``scores``.

    Example:
        >>> result = model_randomisation(model, data.test_x[:32], ["saliency", "gradient_x_input"])
        >>> print(result)          # mean similarity per method and measure, one column per layer
        >>> result.passes()        # method -> True where its maps changed
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    explainers, names = resolve_explainers(methods, method_options), check_measures(measures)
    check_inputs(inputs)
    work = copy.deepcopy(model)
    classes = fixed_target(work, inputs, target)
    layers = randomisation_order(work, inputs)
    return _compare(
        explainers, work, _randomised_states(work, layers, mode, seed), inputs, classes,
        test=mode, measures=names, top=top_features, seed=seed, keep_maps=keep_maps,
    )  # fmt: skip


def permuted_labels(data: Dataset, seed: int = 0) -> Dataset:
    """``data`` with its training labels randomly permuted (seeded); inputs and test split unchanged.

    A permutation keeps the class frequencies, so the only thing lost is the link between input and label.
    """
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(data.train_y), generator=generator)
    return Dataset(
        name=f"{data.name}-permuted-labels",
        train_x=data.train_x,
        train_y=data.train_y[order],
        test_x=data.test_x,
        test_y=data.test_y,
        class_names=data.class_names,
    )


def data_randomisation(
    factory: Callable[[], nn.Module],
    data: Dataset,
    methods: Methods,
    inputs: Tensor | None = None,
    target: Target = None,
    *,
    model: nn.Module | None = None,
    samples: int = 100,
    seed: int = 0,
    measures: Sequence[str] | None = None,
    top_features: int | None = None,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    keep_maps: bool = False,
    progress: bool = False,
    **train_options: Any,
) -> SanityResult:
    """Data (label) randomisation test (Adebayo et al. 2018, Sec. 3.2; Nielsen et al. 2022).

    Procedure: train ``factory()`` on the true labels (unless a trained ``model`` is given) and a second
    ``factory()`` on :func:`permuted_labels`, both with :func:`gradattr.train`, the same ``seed`` (so the same
    initial weights and batch order) and the same ``train_options``; explain the same samples and classes with
    both models and measure the similarity of the maps per sample. A model trained on permuted labels can only
    memorise, so maps that still look alike do not reflect what the model learned.

    Note: :func:`gradattr.train` keeps the weights of the epoch with the best validation metric; on permuted
    labels validation is at chance, so that epoch may be early. ``result.training`` holds both training
    records (training and test accuracy) to judge how far the permuted-label model got.

    Args:
        factory: builds the untrained architecture, e.g. ``lambda: mnist_mlp((1, 8, 8), 10)``.
        data: the data set (images); its training labels are permuted for the second model.
        methods: as in :func:`model_randomisation`.
        inputs: Tensor (B, ...) to explain; default the first ``samples`` test inputs.
        target: classes to explain; default the true test labels when ``inputs`` is ``None``, else the true-label
            model's predictions.
        model: an already trained true-label model (used as is, not modified) instead of training one.
        samples: how many test inputs to explain when ``inputs`` is ``None``.
        seed: seed of the permutation, the initial weights and the training.
        measures, top_features, method_options, keep_maps: as in :func:`model_randomisation`.
        progress: show training progress bars.
        train_options: passed to :func:`gradattr.train` for both models (``epochs``, ``lr``, ...).

    Returns:
        A :class:`SanityResult` with the single step ``"permuted labels"`` and ``training`` records.

    Example:
        >>> data = gradattr.data.load_digits()
        >>> result = data_randomisation(lambda: mnist_mlp((1, 8, 8), 10), data, ["saliency"], epochs=5)
        >>> result.passes()
    """
    explainers, names = resolve_explainers(methods, method_options), check_measures(measures)
    if inputs is None:
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise ValueError(f"samples must be a positive int, got {samples!r}")
        inputs = data.test_x[:samples]
        target = data.test_y[:samples] if target is None else target
    check_inputs(inputs)
    training = {}
    if model is None:
        model, training["true labels"] = _train_fresh(factory, data, seed, progress, train_options)
    random_model, training[LABELS_STEP] = _train_fresh(
        factory, permuted_labels(data, seed), seed, progress, train_options
    )
    classes = fixed_target(model, inputs, target)
    return _compare(
        explainers, model, [(LABELS_STEP, random_model)], inputs, classes,
        test="labels", measures=names, top=top_features, seed=seed, keep_maps=keep_maps, training=training,
    )  # fmt: skip


def _train_fresh(
    factory: Callable[[], nn.Module], data: Dataset, seed: int, progress: bool, options: dict[str, Any]
) -> tuple[nn.Module, TrainResult]:
    """``factory()`` built after ``torch.manual_seed(seed)`` (global RNG restored), trained on ``data``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = factory()
        if not isinstance(model, nn.Module):
            raise TypeError(f"factory must return a torch.nn.Module, got {type(model).__name__}")
        return train(model, data, seed=seed, progress=progress, **options)


def _compare(
    explainers: Mapping[str, Explainer],
    original_model: nn.Module,
    states: Iterable[tuple[str, nn.Module]],
    inputs: Tensor,
    classes: Tensor | None,
    *,
    test: str,
    measures: Sequence[str] | None,
    top: int | None,
    seed: int,
    keep_maps: bool,
    training: dict[str, TrainResult] | None = None,
) -> SanityResult:
    """Explain with ``original_model``, then with each state's model (computed lazily: a state may be
    undone after its step), and measure every map against the original one."""
    original = {label: explain(original_model, inputs, classes) for label, explain in explainers.items()}
    shape = next(iter(original.values())).shape
    k = resolve_top(shape[1:].numel(), top)
    measures = measures or default_measures(shape)
    steps: list[str] = []
    scores: dict[str, dict[str, list[Tensor]]] = {label: {m: [] for m in measures} for label in explainers}
    kept: dict[str, list[Tensor]] = {label: [maps] for label, maps in original.items()}
    for name, state in states:
        steps.append(name)
        for label, explain in explainers.items():
            maps = explain(state, inputs, classes)
            for measure in measures:
                scores[label][measure].append(MEASURES[measure](original[label], maps, k).double())
            if keep_maps:
                kept[label].append(maps)
    return SanityResult(
        test=test,
        steps=tuple(steps),
        scores={label: {m: torch.stack(v) for m, v in by_measure.items()} for label, by_measure in scores.items()},
        top_features=k,
        seed=seed,
        maps={label: torch.stack(v) for label, v in kept.items()} if keep_maps else None,
        training=training or {},
    )
