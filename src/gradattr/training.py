"""Training the models on the data sets: seeded, deterministic on CPU, with early stopping.

:func:`train` fits a model with Adam and cross-entropy, holding out a validation split carved
from the training data; :func:`train_or_load` caches the result on disk keyed by a name and a
hash of everything that determines it, so demos and reports reuse trained models.
"""

from __future__ import annotations

import copy
import json
import math
import re
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from gradattr.cache import CacheWarning, CheckpointError, cache_dir, load_checkpoint, save_checkpoint
from gradattr.data.dataset import Dataset
from gradattr.files import one_line, write_text
from gradattr.progress import fingerprint

Monitor = Literal["val_loss", "val_accuracy"]


@dataclass(frozen=True)
class EpochRecord:
    """Metrics after one epoch. ``train_*`` are running averages over the epoch's batches (in
    training mode); ``val_*`` are measured on the held-out validation split in eval mode."""

    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` did and how well the returned model does.

    Attributes:
        history: One record per epoch run.
        best_epoch: Epoch (1-based) with the best monitored validation metric; its weights are
            returned.
        val_accuracy: Validation accuracy of the returned weights.
        test_accuracy: Accuracy of the returned weights on ``data.test_x``/``data.test_y``.
        majority_rate: Test accuracy of always predicting the most frequent training class.
        stopped_early: Whether training ended by patience before ``epochs``.
        seconds: Wall-clock training time, evaluation included.
    """

    history: tuple[EpochRecord, ...]
    best_epoch: int
    val_accuracy: float
    test_accuracy: float
    majority_rate: float
    stopped_early: bool
    seconds: float

    def to_json(self) -> str:
        """The result as JSON (see :meth:`from_json`)."""
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> TrainResult:
        """Inverse of :meth:`to_json`."""
        fields = json.loads(text)
        fields["history"] = tuple(EpochRecord(**record) for record in fields["history"])
        return cls(**fields)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> float:
    """Fraction of ``x`` (``(N, ...)``) whose arg-max logit equals ``y`` (``(N,)``), in eval
    mode. The model's training/eval mode is restored afterwards."""
    return _evaluate(model, x, y, batch_size)[1]


def train(
    model: nn.Module,
    data: Dataset,
    *,
    epochs: int = 20,
    batch_size: int = 128,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    val_fraction: float = 0.1,
    patience: int = 3,
    monitor: Monitor = "val_loss",
    max_grad_norm: float | None = None,
    seed: int = 0,
    progress: bool = True,
    perturb: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> tuple[nn.Module, TrainResult]:
    """Train ``model`` on ``data.train_x``/``train_y`` with Adam and cross-entropy on logits.

    A random ``val_fraction`` of the training data (fixed by ``seed``) is held out. After each
    epoch the ``monitor``-ed validation metric is measured; training stops once it has not
    improved for ``patience`` epochs, and the weights of the best epoch are restored. Shuffling, the split
    and dropout are all seeded, so on CPU two runs with the same arguments give identical weights.

    Args:
        model: Any classifier mapping ``(B, *data.input_shape)`` to logits ``(B, num_classes)``.
        data: The data set; its test split is only used to report ``test_accuracy``.
        epochs: Maximum number of passes over the training split.
        batch_size, lr, weight_decay: Mini-batch size and Adam settings.
        val_fraction: Share of the training data held out for early stopping, in (0, 1).
        patience: Epochs without improvement of ``monitor`` before stopping.
        monitor: ``"val_loss"`` (lower is better) or ``"val_accuracy"`` (higher is better, ties
            broken by the lower loss). Accuracy suits tiny data sets whose validation loss rises
            from overconfidence while the predictions still improve.
        max_grad_norm: If set, clip the gradient norm to this before each step (helps LSTMs).
        seed: Seed for the split, the batch order and dropout.
        progress: Show tqdm progress bars.
        perturb: If set, each training batch ``(x, y)`` is replaced by ``perturb(model, x, y)`` before the
            step, e.g. a PGD attack for adversarial training (Madry et al. 2018; see
            :func:`gradattr.robustness.adversarial_train`); the ``train_*`` metrics are then on the perturbed
            batches, validation stays on clean data.

    Returns:
        ``(model, result)``: the same model object, now in eval mode with the best weights,
        and a :class:`TrainResult`.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    if monitor not in ("val_loss", "val_accuracy"):
        raise ValueError(f"monitor must be 'val_loss' or 'val_accuracy', got {monitor!r}")
    if epochs < 1 or patience < 1 or batch_size < 1:
        raise ValueError("epochs, patience and batch_size must be positive")
    start = time.perf_counter()
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(data.train_y), generator=generator)
    n_val = max(1, round(val_fraction * len(order)))
    val_x, val_y = data.train_x[order[:n_val]], data.train_y[order[:n_val]]
    fit_x, fit_y = data.train_x[order[n_val:]], data.train_y[order[n_val:]]
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)

    history: list[EpochRecord] = []
    best_score, best_epoch, best_state = (-math.inf, -math.inf), 0, copy.deepcopy(model.state_dict())
    epochs_bar = tqdm(range(1, epochs + 1), desc=f"train {type(model).__name__}", unit="epoch", disable=not progress)
    for epoch in epochs_bar:
        train_loss, train_accuracy = _train_epoch(
            model, optimizer, fit_x, fit_y, batch_size, generator, max_grad_norm, progress, perturb
        )
        val_loss, val_accuracy = _evaluate(model, val_x, val_y)
        history.append(EpochRecord(epoch, train_loss, train_accuracy, val_loss, val_accuracy))
        epochs_bar.set_postfix(loss=f"{train_loss:.3f}", val_loss=f"{val_loss:.3f}", val_acc=f"{val_accuracy:.3f}")
        score = (-val_loss, 0.0) if monitor == "val_loss" else (val_accuracy, -val_loss)
        if score > best_score:
            best_score, best_epoch, best_state = score, epoch, copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= patience:
            break
    epochs_bar.close()

    model.load_state_dict(best_state)
    model.eval()
    result = TrainResult(
        history=tuple(history),
        best_epoch=best_epoch,
        val_accuracy=history[best_epoch - 1].val_accuracy,
        test_accuracy=accuracy(model, data.test_x, data.test_y),
        majority_rate=data.majority_rate(),
        stopped_early=len(history) < epochs,
        seconds=time.perf_counter() - start,
    )
    return model, result


def train_or_load(
    name: str,
    factory: Callable[[], nn.Module],
    data: Dataset,
    *,
    seed: int = 0,
    cache: str | Path | None = None,
    retrain: bool = False,
    progress: bool = True,
    **train_options: Any,
) -> tuple[nn.Module, TrainResult]:
    """A trained model from the cache, training and caching it first if needed.

    ``factory()`` is called after ``torch.manual_seed(seed)``, so initial weights are seeded too.
    The cache entry is keyed by ``name`` plus a hash of the architecture (the model's ``repr``
    and parameter shapes), the data (a digest of all four tensors and the class names), ``seed``
    and ``train_options``; change any of them and the model is retrained.

    Args:
        name: Readable prefix of the cache files, e.g. ``"digits-mlp"``.
        factory: Builds the untrained model, e.g. ``lambda: mnist_mlp((1, 8, 8), 10)``.
        data: The data set to train on.
        seed: Seed for the initial weights and for :func:`train`.
        cache: Cache directory; default :func:`gradattr.cache.cache_dir`.
        retrain: Train even if a cached entry exists (and overwrite it). A damaged or foreign entry is
            trained again as well, with a :class:`~gradattr.cache.CacheWarning`.
        progress: Show progress bars while training.
        train_options: Passed on to :func:`train` (``epochs``, ``lr``, ...).

    Returns:
        ``(model, result)`` with the model in eval mode. ``result`` is the stored
        :class:`TrainResult` of the run that produced the weights.
    """
    torch.manual_seed(seed)
    model = factory()
    weights, record = _entry(name, model, data, seed, cache, train_options)
    if not retrain and weights.is_file() and record.is_file():
        cached = _load_cached(model, weights, record)
        if cached is not None:
            return cached
    model, result = train(model, data, seed=seed, progress=progress, **train_options)
    save_checkpoint(model, weights)
    write_text(record, result.to_json())
    return model, result


def is_cached(
    name: str, factory: Callable[[], nn.Module], data: Dataset, *, seed: int = 0, cache: str | Path | None = None,
    **train_options: Any,
) -> bool:
    """Whether :func:`train_or_load` with these arguments would find a cache entry (it may still turn out
    damaged, and be trained again)."""
    weights, record = _entry(name, factory(), data, seed, cache, train_options)
    return weights.is_file() and record.is_file()


def _entry(
    name: str, model: nn.Module, data: Dataset, seed: int, cache: str | Path | None, train_options: dict[str, Any]
) -> tuple[Path, Path]:
    """The weights and record files of ``model``'s cache entry."""
    directory = Path(cache) if cache is not None else cache_dir()
    stem = f"{_slug(name)}-{_config_hash(model, data, seed, train_options)}"
    return directory / f"{stem}.pt", directory / f"{stem}.json"


def _load_cached(model: nn.Module, weights: Path, record: Path) -> tuple[nn.Module, TrainResult] | None:
    """The cached model and its record, or None (with a :class:`CacheWarning`) when either file is damaged or
    foreign: the model is then trained again. Nothing in the files is executed."""
    try:
        load_checkpoint(model, weights)
        return model.eval(), TrainResult.from_json(record.read_text(encoding="utf-8"))
    except (CheckpointError, ValueError, TypeError, KeyError) as error:  # JSON errors are ValueErrors
        warnings.warn(f"ignoring cached model {weights.name}: {one_line(error)}; training it again", CacheWarning,
                      stacklevel=3)  # fmt: skip
        return None


def _train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    generator: torch.Generator,
    max_grad_norm: float | None,
    progress: bool,
    perturb: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> tuple[float, float]:
    model.train()
    order = torch.randperm(len(y), generator=generator)
    total_loss, correct = 0.0, 0
    for start in tqdm(
        range(0, len(order), batch_size), desc="batches", unit="batch", leave=False, disable=not progress
    ):
        index = order[start : start + batch_size]
        inputs = x[index] if perturb is None else perturb(model, x[index], y[index])
        logits = model(inputs)
        loss = F.cross_entropy(logits, y[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if max_grad_norm is not None:
            nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        total_loss += float(loss.detach()) * len(index)
        correct += int((logits.argmax(dim=1) == y[index]).sum())
    return total_loss / len(y), correct / len(y)


@torch.no_grad()
def _evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> tuple[float, float]:
    was_training = model.training
    model.eval()
    total_loss, correct = 0.0, 0
    for start in range(0, len(y), batch_size):
        logits = model(x[start : start + batch_size])
        target = y[start : start + batch_size]
        total_loss += float(F.cross_entropy(logits, target, reduction="sum"))
        correct += int((logits.argmax(dim=1) == target).sum())
    model.train(was_training)
    return total_loss / max(len(y), 1), correct / max(len(y), 1)


def _config_hash(model: nn.Module, data: Dataset, seed: int, train_options: dict[str, Any]) -> str:
    config = {
        "model": repr(model),
        "shapes": {k: list(v.shape) for k, v in model.state_dict().items()},
        "data": data.name,
        "classes": list(data.class_names),
        "seed": seed,
        "train": {k: repr(v) for k, v in sorted(train_options.items())},
    }
    return fingerprint(config, (data.train_x, data.train_y, data.test_x, data.test_y))


def _slug(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.")
    if not slug:
        raise ValueError(f"name {name!r} has no usable characters for a file name")
    return slug
