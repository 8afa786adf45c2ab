"""One trained model studied as in Ancona et al. (ICLR 2018): every method's maps, their Sensitivity-n, how
much the methods agree, completeness, and the equalities the paper proves (Prop. 1 and 2).

:func:`study_model` runs :func:`gradattr.evaluate` once over the evaluation samples and, batch by batch,
collects what the tables need (pairwise map correlations, completeness gaps, differences between methods
that the propositions equate, the first samples' maps for the figures). A method that fails on the model
(an op it has no rule for, non-finite attributions) is left out and recorded as unavailable with a one-line
reason; the others are still measured.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from gradattr.engine.inventory import Inventory, inventory
from gradattr.evaluation import EvaluatedBatch, SensitivityTable, evaluate, named_metrics
from gradattr.experiments.class_activation_maps import CAM_METHODS, token_cams
from gradattr.files import one_line
from gradattr.methods import PAPER_METHODS, attribute
from gradattr.metrics import completeness_gap, pearson_per_sample
from gradattr.progress import as_floats, as_tensor, fingerprint

SMALL_EPSILON = 1e-8
"""ε of the second ε-LRP run that shows Prop. 1's limit ε → 0 (the study itself uses the default ε)."""
INVENTORY_SAMPLES = 2
"""Evaluation samples of the forward pass in which the ops the model calls are recorded (:class:`OpsMet`)."""


def op_counts(calls: Mapping[str, int]) -> str:
    """``"relu x3, max_pool2d x1"``: ops by the last part of their resolved names, with their call counts."""
    return ", ".join(f"{name.rsplit('.', 1)[-1]} x{count}" for name, count in calls.items())


@dataclass(frozen=True)
class OpsMet:
    """The ops the engine met in one forward pass of the model on its evaluation samples
    (:func:`gradattr.engine.inventory.inventory`), and what they decide about the paper's claims.

    Attributes:
        calls: resolved op name -> calls in the pass (``{"torch.relu": 3, "torch.nn.functional.max_pool2d": 1}``).
        kinds: resolved op name -> its kind (:mod:`gradattr.engine.ops`: ``"elementwise"``, ``"routing"``, ...).
    """

    calls: dict[str, int]
    kinds: dict[str, str]

    @classmethod
    def of(cls, model: nn.Module, inputs: Tensor, layer: str | None = None) -> OpsMet:
        """The ops ``model`` calls on ``inputs`` (attributed at ``layer``'s output when given)."""
        found = inventory(model, inputs, layer=layer)
        return cls(dict(found.calls), dict(found.kinds))

    @property
    def inventory(self) -> Inventory:
        return Inventory(self.calls, self.kinds)

    @property
    def rectifiers_only(self) -> bool:
        """The only nonlinearities are ReLUs (max pooling allowed): Prop. 1 and Prop. 2 apply (Ancona et al.,
        ICLR 2018, Sec. 3)."""
        return self.inventory.rectifiers_only

    @property
    def gated(self) -> bool:
        """Recurrent kernels (LSTM/GRU): products of gates and signals inside the cell, which DeepLIFT's Rescale
        rule does not split exactly, so Σ R = S_c(x) − S_c(x̄) holds only approximately (Sec. 4.2). Other
        products of two input-dependent factors (attention) get the exact Shapley split and stay complete."""
        return bool(self.inventory.of_kind("recurrent"))

    @property
    def max_pooling(self) -> dict[str, int]:
        """Max pooling and max over a dimension (routing ops) -> calls: with ``max_pooling="route"`` the
        gradient, hence DeepLIFT's difference, goes to the arg-max alone."""
        return self.inventory.of_kind("routing")

    def summary(self) -> str:
        """``"relu x3, max_pool2d x1"``: every op with a rule or a routing, by its short name, in call order."""
        return op_counts(self.calls) or "none"

    def to_dict(self) -> dict[str, Any]:
        return {
            "calls": dict(self.calls), "kinds": dict(self.kinds), "summary": self.summary(),
            "rectifiers_only": self.rectifiers_only, "gated": self.gated, "max_pooling": self.max_pooling,
        }  # fmt: skip


LOCALISATION_METRICS = ("pointing_game", "relevance_mass_accuracy")
"""Measured on every subject with ground-truth masks (Zhang et al. 2018; Arras et al. 2022)."""


@dataclass(frozen=True)
class Features:
    """What a feature is for one model: what is attributed, what Sensitivity-n removes, how it is shown.

    Attributes:
        description: what n counts, e.g. ``"pixels"``, ``"4x4 patches"``, ``"tokens"``.
        groups: integer group mask over the attributed tensor (``gradattr.patches``), or None (each feature).
        layer: attribute this submodule's output (``"embedding"`` for text), or None (the inputs).
        method_options: method -> options for :func:`gradattr.attribute` (e.g. an occlusion window of a token).
        removal: how Sensitivity-n removes a feature, in words (for the report's protocol).
        input_baseline: remove a feature from the model's input, setting it to this value (a pad id), instead of
            zeroing it in ``layer``'s output (:func:`gradattr.evaluate`'s ``removal="input"``); None: the latter.
        extra_rows: further rows of the study, label -> method name, each with its own ``method_options`` (e.g.
            ``{"occlusion_pixels": "occlusion"}``: per-pixel occlusion beside the patch occlusion of patch
            features); a row joins when its method is among the study's methods.
    """

    description: str
    groups: Tensor | None = None
    layer: str | None = None
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    removal: str = "set to 0 (the zero baseline)"
    input_baseline: int | None = None
    extra_rows: dict[str, str] = field(default_factory=dict)

    def rows(self, methods: Sequence[str]) -> dict[str, str]:
        """The study's rows for ``methods``: label -> method name, ``methods`` themselves first."""
        extra = {label: method for label, method in self.extra_rows.items() if method in methods}
        return {**{method: method for method in methods}, **extra}


@dataclass(frozen=True)
class Training:
    """How well the studied model does, and what training it took."""

    test_accuracy: float
    majority_rate: float
    seconds: float
    epochs: int

    def to_dict(self) -> dict[str, float | int]:
        return {
            "test_accuracy": self.test_accuracy,
            "majority_rate": self.majority_rate,
            "train_seconds": self.seconds,
            "epochs": self.epochs,
        }


@dataclass(frozen=True, eq=False)
class Subject:
    """A trained model and the samples to study it on.

    Attributes:
        dataset: data set title, e.g. ``"Digits"``.
        model_name: model title, e.g. ``"MLP (ReLU)"``.
        model: the classifier (logits out).
        inputs: evaluation samples (B, ...): images, or token ids for a text model.
        labels: LongTensor(B), the attributed (and scored) class of each sample.
        class_names: names of the classes, for figure labels.
        features: see :class:`Features`.
        training: accuracy and training cost, when known.
        tokens: token ids -> token strings, for text models.
        sample_seed: the seed the evaluation samples were drawn with at random (None: the first ones).
        masks: ground-truth masks of the evaluation samples (B, ...), for the localisation metrics.
        transformer: softmax attention and layer norms (a ViT or a transformer text classifier), compared with
            the paper's models in the report.
        cam_layer: the token layer of the class activation maps shown for the displayed samples
            (:func:`~gradattr.experiments.class_activation_maps.token_cams`); None: none.
        lrp_composite: the LRP composite (a name of :data:`gradattr.composites.COMPOSITES`) whose maps of the
            displayed samples are shown beside the methods' (a CNN's); None: none.
    """

    dataset: str
    model_name: str
    model: nn.Module
    inputs: Tensor
    labels: Tensor
    class_names: Sequence[str]
    features: Features
    training: Training | None = None
    tokens: Callable[[Tensor], list[str]] | None = None
    transformer: bool = False
    sample_seed: int | None = None
    masks: Tensor | None = None
    cam_layer: str | None = None
    lrp_composite: str | None = None

    @property
    def is_text(self) -> bool:
        return self.tokens is not None


@dataclass(frozen=True)
class StudySettings:
    """How every model is studied (the same for all models of a run)."""

    methods: tuple[str, ...] = PAPER_METHODS
    num_subsets: int = 100
    display: int = 4
    seed: int = 0
    ig_steps: int = 100
    batch_size: int = 50
    progress: bool = True
    metrics: tuple[str, ...] = ()
    """Quality metrics measured beside Sensitivity-n (names of :data:`gradattr.evaluation.NAMED`)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "methods": list(self.methods),
            "num_subsets": self.num_subsets,
            "display_samples": self.display,
            "seed": self.seed,
            "integrated_gradients_steps": self.ig_steps,
            "batch_size": self.batch_size,
            **({"metrics": list(self.metrics)} if self.metrics else {}),
        }


@dataclass(eq=False)
class ModelStudy:
    """What :func:`study_model` measured on one model.

    Attributes:
        subject: the model and samples studied.
        methods: the methods measured (those that ran).
        unavailable: method -> one-line reason it could not be measured on this model.
        sensitivity: Sensitivity-n of ``methods`` over the evaluation samples.
        correlation: mean per-sample Pearson correlation between the methods' maps (per token for text).
        completeness: method -> mean |Σ R - (S_c(x) - S_c(0))| / mean |S_c(x) - S_c(0)|.
        equalities: name -> max over samples of ‖R_a - R_b‖₂ / ‖R_b‖₂ for the pairs the propositions equate:
            ``"epsilon_lrp vs gradient_x_input"``, ``"deeplift vs gradient_x_input"`` and, on ReLU models, on
            the first samples, ``"epsilon_lrp with epsilon 1e-08 vs gradient_x_input"`` (Prop. 1 holds as
            ε → 0) and ``"deeplift vs gradient_x_input, biases zeroed"`` (Prop. 2).
        seconds_per_sample: method -> attribution time per sample; ``"sensitivity-n"``: forward passes.
        ops: the ops the engine met in the model's forward pass, which decide where the propositions apply.
        method_options: method -> the options it ran with (e.g. Integrated Gradients' ``steps``).
        display_inputs, display_maps, display_targets, display_predictions: the first samples, for figures
            (maps per token for text).
        cam_maps: method -> the displayed samples' class activation maps at ``subject.cam_layer`` for their
            targets (:data:`~gradattr.experiments.class_activation_maps.CAM_METHODS`; empty without a layer).
        lrp_maps: row label ``"lrp (NAME)"`` -> the displayed samples' LRP maps for their targets under
            ``subject.lrp_composite`` (:func:`lrp_maps`; empty without a composite).
    """

    subject: Subject
    methods: list[str]
    unavailable: dict[str, str]
    sensitivity: SensitivityTable | None
    correlation: list[list[float]]
    completeness: dict[str, float]
    equalities: dict[str, float]
    seconds_per_sample: dict[str, float]
    display_inputs: Tensor
    display_maps: dict[str, Tensor]
    display_targets: Tensor
    display_predictions: Tensor
    ops: OpsMet
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    cam_maps: dict[str, Tensor] = field(default_factory=dict)
    lrp_maps: dict[str, Tensor] = field(default_factory=dict)

    def to_state(self) -> dict[str, Any]:
        """What was measured, as plain values (tensors, numbers, strings) for a progress entry; the subject is
        not included (see :meth:`from_state`)."""
        return {
            "methods": list(self.methods), "unavailable": dict(self.unavailable),
            "sensitivity": self.sensitivity.to_state() if self.sensitivity is not None else None,
            "correlation": self.correlation, "completeness": dict(self.completeness),
            "equalities": dict(self.equalities), "seconds_per_sample": dict(self.seconds_per_sample),
            "display_inputs": self.display_inputs, "display_maps": dict(self.display_maps),
            "display_targets": self.display_targets, "display_predictions": self.display_predictions,
            "ops": {"calls": dict(self.ops.calls), "kinds": dict(self.ops.kinds)},
            "method_options": {name: dict(values) for name, values in self.method_options.items()},
            "cam_maps": dict(self.cam_maps), "lrp_maps": dict(self.lrp_maps),
        }  # fmt: skip

    @classmethod
    def from_state(cls, subject: Subject, state: Mapping[str, Any]) -> ModelStudy:
        """The study of ``subject`` saved by :meth:`to_state`.

        Raises:
            ValueError: ``state`` is not a saved study (wrong fields or shapes).
        """
        methods = [str(m) for m in state["methods"]]
        sensitivity = SensitivityTable.from_state(state["sensitivity"]) if state["sensitivity"] is not None else None
        if (sensitivity.methods if sensitivity is not None else []) != methods:
            raise ValueError("the Sensitivity-n table is not of the study's methods")
        correlation = [[float(v) for v in row] for row in state["correlation"]]
        if len(correlation) != len(methods) or any(len(row) != len(methods) for row in correlation):
            raise ValueError("the correlation matrix does not match the methods")
        maps = {str(name): as_tensor(m, f"map of {name}") for name, m in state["display_maps"].items()}
        if list(maps) != methods:
            raise ValueError("the displayed maps are not of the study's methods")
        cams = {str(name): as_tensor(m, f"class activation map of {name}") for name, m in state["cam_maps"].items()}
        if list(cams) != (list(CAM_METHODS) if subject.cam_layer is not None else []):
            raise ValueError("the class activation maps are not of the study's CAM methods")
        lrp = {str(name): as_tensor(m, f"LRP map of {name}") for name, m in state.get("lrp_maps", {}).items()}
        if list(lrp) != ([lrp_label(subject.lrp_composite)] if subject.lrp_composite is not None else []):
            raise ValueError("the LRP maps are not of the model's composite")
        return cls(
            subject=subject,
            methods=methods,
            unavailable={str(k): str(v) for k, v in state["unavailable"].items()},
            sensitivity=sensitivity,
            correlation=correlation,
            completeness=as_floats(state["completeness"]),
            equalities=as_floats(state["equalities"]),
            seconds_per_sample=as_floats(state["seconds_per_sample"]),
            display_inputs=as_tensor(state["display_inputs"], "displayed inputs"),
            display_maps=maps,
            display_targets=as_tensor(state["display_targets"], "displayed targets"),
            display_predictions=as_tensor(state["display_predictions"], "displayed predictions"),
            ops=OpsMet(
                {str(k): int(v) for k, v in state["ops"]["calls"].items()},
                {str(k): str(v) for k, v in state["ops"]["kinds"].items()},
            ),
            method_options={str(k): dict(v) for k, v in state["method_options"].items()},
            cam_maps=cams,
            lrp_maps=lrp,
        )


def study_key(subject: Subject, settings: StudySettings) -> str:
    """A :func:`~gradattr.progress.fingerprint` of everything :func:`study_model`'s result depends on: the
    settings, the model (architecture and weights), the evaluation samples and labels, and the features."""
    features = subject.features
    return fingerprint({
        "study": "model", "dataset": subject.dataset, "model": subject.model_name, "settings": settings.to_dict(),
        "architecture": repr(subject.model), "weights": subject.model.state_dict(), "inputs": subject.inputs,
        "labels": subject.labels, "state": "with the ops met and CAM maps",  # older entries are stale
        **({"masks": subject.masks} if subject.masks is not None else {}),
        **({"transformer": True} if subject.transformer else {}),
        **({"cam_layer": subject.cam_layer, "cams": list(CAM_METHODS)} if subject.cam_layer is not None else {}),
        **({"lrp_composite": subject.lrp_composite} if subject.lrp_composite is not None else {}),
        "features": {"description": features.description, "groups": features.groups, "layer": features.layer,
                     "method_options": features.method_options, "extra_rows": features.extra_rows,
                     **({"input_baseline": features.input_baseline} if features.input_baseline is not None else {})},
    })  # fmt: skip


def relative_difference(a: Tensor, b: Tensor) -> Tensor:
    """Per sample ‖a - b‖₂ / ‖b‖₂ (the plain norm ‖a - b‖₂ where b is 0), float64."""
    a, b = a.reshape(a.shape[0], -1).double(), b.reshape(b.shape[0], -1).double()
    scale = b.norm(dim=1)
    gap = (a - b).norm(dim=1)
    return torch.where(scale > 0, gap / scale.clamp(min=1e-300), gap)


class _Collector:
    """The ``on_batch`` observer of :func:`evaluate`: accumulates agreement, completeness and equalities."""

    def __init__(self, methods: list[str], display: int, per_token: bool) -> None:
        self.methods = methods
        self.display = display
        self.per_token = per_token
        size = len(methods)
        self.correlation_sum = torch.zeros(size, size, dtype=torch.float64)
        self.correlation_count = torch.zeros(size, size, dtype=torch.float64)
        self.gap_sum = dict.fromkeys(methods, 0.0)
        self.delta_sum = 0.0
        self.equalities: dict[str, float] = {}
        self.display_inputs: Tensor | None = None
        self.display_maps: dict[str, Tensor] = {}
        self.display_targets: Tensor | None = None

    def __call__(self, batch: EvaluatedBatch) -> None:
        maps = {name: self._shown(batch.maps[name]) for name in self.methods}
        for i, first in enumerate(self.methods):
            for j in range(i, len(self.methods)):
                values = pearson_per_sample(maps[first], maps[self.methods[j]])
                valid = ~values.isnan()
                self.correlation_sum[i, j] += values[valid].sum()
                self.correlation_count[i, j] += valid.sum()
        with torch.no_grad():
            rows = torch.arange(batch.inputs.shape[0])
            delta = (
                batch.function(batch.inputs)[rows, batch.targets]
                - batch.function(torch.zeros_like(batch.inputs))[rows, batch.targets]
            )
        self.delta_sum += float(delta.abs().sum())
        for name in self.methods:
            gap = completeness_gap(batch.function, batch.inputs, batch.maps[name], batch.targets)
            self.gap_sum[name] += float(gap.abs().sum())
        for name in ("epsilon_lrp", "deeplift"):
            if name in batch.maps and "gradient_x_input" in batch.maps:
                key = f"{name} vs gradient_x_input"
                value = float(relative_difference(batch.maps[name], batch.maps["gradient_x_input"]).max())
                self.equalities[key] = max(self.equalities.get(key, 0.0), value)
        if self.display_inputs is None:
            self.display_inputs = batch.model_inputs[: self.display]
            self.display_targets = batch.targets[: self.display]
            self.display_maps = {name: m[: self.display] for name, m in maps.items()}

    def _shown(self, attributions: Tensor) -> Tensor:
        """Maps as compared and drawn: per token (summed over the embedding) for text."""
        return attributions.sum(-1) if self.per_token else attributions

    def state_dict(self) -> dict[str, Any]:
        """A copy of everything accumulated so far, as plain values (for :func:`evaluate`'s checkpoint)."""
        return {
            "methods": list(self.methods), "display": self.display, "per_token": self.per_token,
            "correlation_sum": self.correlation_sum.clone(), "correlation_count": self.correlation_count.clone(),
            "gap_sum": dict(self.gap_sum), "delta_sum": self.delta_sum, "equalities": dict(self.equalities),
            "display_inputs": self.display_inputs, "display_maps": dict(self.display_maps),
            "display_targets": self.display_targets,
        }  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s values.

        Raises:
            ValueError: ``state`` belongs to a collector of other methods or display settings, or is malformed.
        """
        config = (list(self.methods), self.display, self.per_token)
        if (state["methods"], state["display"], state["per_token"]) != config:
            raise ValueError(f"collector state of {state['methods']}, not of {self.methods}")
        size = (len(self.methods), len(self.methods))
        sums, counts = state["correlation_sum"], state["correlation_count"]
        if not all(isinstance(t, Tensor) and t.shape == size for t in (sums, counts)):
            raise ValueError("correlation sums of the wrong shape")
        if set(state["gap_sum"]) != set(self.methods):
            raise ValueError("completeness gaps of other methods")
        self.correlation_sum, self.correlation_count = sums.clone(), counts.clone()
        self.gap_sum = {name: float(state["gap_sum"][name]) for name in self.methods}
        self.delta_sum = float(state["delta_sum"])
        self.equalities = {str(k): float(v) for k, v in state["equalities"].items()}
        self.display_inputs = state["display_inputs"]
        self.display_maps = dict(state["display_maps"])
        self.display_targets = state["display_targets"]

    def correlation(self) -> list[list[float]]:
        upper = self.correlation_sum / self.correlation_count
        full = torch.where(torch.triu(torch.ones_like(upper)) > 0, upper, upper.T)
        return [[float(v) for v in row] for row in full]

    def completeness(self) -> dict[str, float]:
        scale = self.delta_sum or math.nan
        return {name: gap / scale for name, gap in self.gap_sum.items()}


def study_model(
    subject: Subject,
    settings: StudySettings,
    checkpoint: str | Path | None = None,
    evaluator: Callable[..., SensitivityTable] = evaluate,
) -> ModelStudy:
    """Every method on ``subject``'s evaluation samples: Sensitivity-n, agreement, completeness, equalities.

    Args:
        subject: the trained model and its evaluation samples.
        settings: methods, subsets per n, seed, displayed samples, IG steps.
        checkpoint: :func:`gradattr.evaluate`'s checkpoint file: the batches measured so far are saved there
            and an interrupted study resumes at the first unfinished batch, with the same result.
        evaluator: runs the evaluation, with :func:`gradattr.evaluate`'s arguments and result (e.g.
            ``functools.partial(gradattr.distributed.evaluate, workers=4)`` for Ray workers).

    Returns:
        A :class:`ModelStudy`. Methods that fail on the model are in ``unavailable`` with the reason.
    """
    options = _method_options(subject, settings)
    ops = OpsMet.of(subject.model, subject.inputs[:INVENTORY_SAMPLES], subject.features.layer)
    rows = subject.features.rows(settings.methods)
    unavailable = _failures(subject, rows, options, settings.batch_size, limit=2)
    methods = [m for m in rows if m not in unavailable]
    table, collector = None, None
    if methods:
        try:
            table, collector = _evaluate(subject, methods, options, settings, checkpoint, evaluator)
        except Exception:  # a method failed on a later batch: find which, measure the others
            unavailable |= _failures(subject, {m: rows[m] for m in methods}, options, settings.batch_size)
            methods = [m for m in methods if m not in unavailable]
            if methods:
                table, collector = _evaluate(subject, methods, options, settings, checkpoint, evaluator)
    if collector is None:
        collector = _Collector([], settings.display, subject.is_text)
        collector.display_inputs = subject.inputs[: settings.display]
        collector.display_targets = subject.labels[: settings.display]
    equalities = dict(collector.equalities)
    if ops.rectifiers_only and {"epsilon_lrp", "gradient_x_input"} <= set(methods):
        small = options | {"epsilon_lrp": options.get("epsilon_lrp", {}) | {"epsilon": SMALL_EPSILON}}
        equalities[f"epsilon_lrp with epsilon {SMALL_EPSILON:g} vs gradient_x_input"] = _gap(subject, small)
    if ops.rectifiers_only and {"deeplift", "gradient_x_input"} <= set(methods):
        bias_free = Subject(
            subject.dataset, subject.model_name, without_biases(subject.model), subject.inputs, subject.labels,
            subject.class_names, subject.features,
        )  # fmt: skip
        equalities["deeplift vs gradient_x_input, biases zeroed"] = _gap(bias_free, options, "deeplift")
    samples = table.samples if table is not None else 0
    seconds = {}
    if table is not None:
        seconds = {name: table.seconds[f"attribute {name}"] / samples for name in methods}
        seconds["sensitivity-n"] = table.seconds["sensitivity-n"] / samples
    with torch.no_grad():
        predictions = subject.model(collector.display_inputs).argmax(1)
    return ModelStudy(
        subject=subject,
        methods=methods,
        unavailable=unavailable,
        sensitivity=table,
        correlation=collector.correlation() if methods else [],
        completeness=collector.completeness() if methods else {},
        equalities=equalities,
        seconds_per_sample=seconds,
        display_inputs=collector.display_inputs,
        display_maps=collector.display_maps,
        display_targets=collector.display_targets,
        display_predictions=predictions,
        ops=ops,
        method_options={name: values for name, values in options.items() if name in methods},
        cam_maps=_cam_maps(subject, collector.display_inputs, collector.display_targets),
        lrp_maps=lrp_maps(subject, collector.display_inputs, collector.display_targets),
    )


def _cam_maps(subject: Subject, inputs: Tensor, targets: Tensor) -> dict[str, Tensor]:
    """The displayed samples' class activation maps at ``subject.cam_layer`` (none without one)."""
    if subject.cam_layer is None:
        return {}
    return token_cams(subject.model, inputs, targets, subject.cam_layer)


def lrp_label(composite: str) -> str:
    """The row label of LRP under a named composite, ``"lrp (epsilon_plus_flat)"`` (the report names it with
    :func:`gradattr.report.labels.method_label`)."""
    return f"lrp ({composite})"


def lrp_maps(subject: Subject, inputs: Tensor, targets: Tensor) -> dict[str, Tensor]:
    """``{"lrp (NAME)": maps}``: LRP of ``inputs`` for ``targets`` under ``subject.lrp_composite`` (NAME), as
    ``attribute(model, inputs, "lrp", target=targets, composite=NAME)`` gives it (none without a composite)."""
    if subject.lrp_composite is None:
        return {}
    maps = attribute(subject.model, inputs, "lrp", target=targets, composite=subject.lrp_composite)
    return {lrp_label(subject.lrp_composite): maps}


def _method_options(subject: Subject, settings: StudySettings) -> dict[str, dict[str, Any]]:
    rows = subject.features.rows(settings.methods)
    options = {label: dict(subject.features.method_options.get(label, {})) for label in rows}
    if "integrated_gradients" in options:  # the study measures and reports the completeness gap itself
        options["integrated_gradients"].setdefault("steps", settings.ig_steps)
        options["integrated_gradients"].setdefault("gap_tolerance", None)
    return {name: values for name, values in options.items() if values}


def _attribute(
    subject: Subject, x: Tensor, y: Tensor, label: str, options: dict[str, dict[str, Any]], method: str | None = None
) -> Tensor:
    """Row ``label``'s attributions (``method``: its method, default the label itself)."""
    layer = subject.features.layer
    return attribute(subject.model, x, method=method or label, target=y, layer=layer, **options.get(label, {}))


def _failures(
    subject: Subject,
    rows: Mapping[str, str],
    options: dict[str, dict[str, Any]],
    batch_size: int,
    limit: int | None = None,
) -> dict[str, str]:
    """Rows (label -> method) that raise on the first ``limit`` evaluation samples (default: all) with the
    one-line reason: an op without a rule, or non-finite attributions (``attribute`` raises on NaN/inf)."""
    total = subject.inputs.shape[0] if limit is None else min(limit, subject.inputs.shape[0])
    failed = {}
    for label, method in rows.items():
        try:
            for start in range(0, total, batch_size):
                batch = slice(start, min(start + batch_size, total))
                _attribute(subject, subject.inputs[batch], subject.labels[batch], label, options, method)
        except Exception as error:
            failed[label] = one_line(error)
    return failed


def _evaluate(
    subject: Subject,
    methods: list[str],
    options: dict[str, dict[str, Any]],
    settings: StudySettings,
    checkpoint: str | Path | None,
    evaluator: Callable[..., SensitivityTable],
) -> tuple[SensitivityTable, _Collector]:
    collector = _Collector(methods, settings.display, subject.is_text)
    features = subject.features
    rows = features.rows(settings.methods)
    at_input = {} if features.input_baseline is None else {"removal": "input", "baseline": features.input_baseline}
    quality = [*settings.metrics, *(LOCALISATION_METRICS if subject.masks is not None else ())]
    if quality:
        at_input["metrics"] = named_metrics(list(dict.fromkeys(quality)), masks=subject.masks, groups=features.groups)
    table = evaluator(
        subject.model,
        (subject.inputs, subject.labels),
        {label: rows[label] for label in methods},
        **at_input,
        num_subsets=settings.num_subsets,
        batch_size=settings.batch_size,
        feature_groups=features.groups if features.input_baseline is None else None,
        method_options={m: options[m] for m in methods if m in options},
        seed=settings.seed,
        progress=settings.progress,
        layer=features.layer,
        on_batch=collector,
        checkpoint=checkpoint,
    )
    return table, collector


def without_biases(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every parameter named ``*bias*`` set to zero (the setting of Prop. 2)."""
    copied = copy.deepcopy(model)
    with torch.no_grad():
        for name, parameter in copied.named_parameters():
            if "bias" in name.rsplit(".", 1)[-1]:
                parameter.zero_()
    return copied


def _gap(subject: Subject, options: dict[str, dict[str, Any]], method: str = "epsilon_lrp", samples: int = 32) -> float:
    """Max over the first ``samples`` of the relative difference between ``method`` and Gradient*Input."""
    x, y = subject.inputs[:samples], subject.labels[:samples]
    first = _attribute(subject, x, y, method, options)
    return float(relative_difference(first, _attribute(subject, x, y, "gradient_x_input", options)).max())
