"""Training a causal language model for next-token prediction, its perplexity, and caching it.

The texts' token ids are joined into one stream (each text ending with an end-of-text id) and cut into
non-overlapping windows of L + 1 tokens; the model reads tokens 0..L-1 of a window and is scored on tokens
1..L by the mean cross-entropy H = −(1/N) Σ_t log p(x_t | x_<t) in nats per token. Perplexity is exp(H)
(Jelinek et al. 1977): the number of equally likely tokens the model is as unsure as. The reference it has to
beat is a unigram model, p(v) = (count_train(v) + 1) / (N_train + V) (add-one smoothing), which ignores the
context.

:func:`train_next_token` is :func:`gradattr.training.train` for sequences: Adam, a seeded held-out split of
the windows, early stopping on its loss, the best epoch's weights restored; :func:`train_or_load_next_token`
caches the weights (a weights-only state dict, :func:`gradattr.cache.save_checkpoint`) and a JSON record beside
the other study models, keyed by a hash of the architecture, the data and the settings.
"""

from __future__ import annotations

import copy
import json
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from gradattr.cache import CacheWarning, CheckpointError, cache_dir, load_checkpoint, save_checkpoint
from gradattr.files import one_line, write_text
from gradattr.progress import fingerprint


def token_windows(texts: Sequence[Sequence[int]], length: int, end: int) -> Tensor:
    """LongTensor(N, length + 1): the ids of ``texts``, each followed by ``end``, joined and cut into
    non-overlapping windows (the incomplete last window is dropped)."""
    stream = torch.tensor([i for ids in texts for i in (*ids, end)], dtype=torch.int64)
    count = len(stream) // (length + 1)
    return stream[: count * (length + 1)].reshape(count, length + 1)


def cross_entropy(model: nn.Module, windows: Tensor, batch_size: int = 256) -> float:
    """Mean next-token cross-entropy of ``model`` (ids (N, T) -> logits (N, T, V)) over ``windows``, in nats
    per token, in eval mode (the model's mode is restored)."""
    was_training = model.training
    model.eval()
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(windows), batch_size):
            batch = windows[start : start + batch_size]
            total += float(_loss(model, batch, reduction="sum"))
    model.train(was_training)
    return total / max(windows[:, 1:].numel(), 1)


def unigram_cross_entropy(train: Tensor, test: Tensor, vocab_size: int) -> float:
    """Cross-entropy (nats per token) on the predicted tokens of ``test`` windows of the add-one unigram model
    of the predicted tokens of ``train`` windows."""
    counts = torch.bincount(train[:, 1:].reshape(-1), minlength=vocab_size).double() + 1.0
    log_p = counts.log() - counts.sum().log()
    return float(-log_p[test[:, 1:].reshape(-1)].mean())


@dataclass(frozen=True)
class NextTokenRecord:
    """How a language model was trained and how well it predicts held-out text.

    Attributes:
        history: per epoch, (mean training loss, validation loss), nats per token.
        best_epoch: epoch (1-based) of the lowest validation loss; its weights are kept.
        val_perplexity: exp(validation loss) of the kept weights.
        test_perplexity: exp(cross-entropy) on the test windows.
        unigram_perplexity: the add-one unigram model's on the same test windows.
        train_tokens, test_tokens: predicted tokens in the training and test windows.
        seconds: wall-clock training time, evaluation included.
    """

    history: tuple[tuple[float, float], ...]
    best_epoch: int
    val_perplexity: float
    test_perplexity: float
    unigram_perplexity: float
    train_tokens: int
    test_tokens: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, fields: dict[str, Any]) -> NextTokenRecord:
        """Inverse of :meth:`to_dict` (also of its JSON)."""
        history = tuple((float(a), float(b)) for a, b in fields["history"])
        return cls(**{**fields, "history": history})


def train_next_token(
    model: nn.Module,
    windows: Tensor,
    *,
    epochs: int = 20,
    batch_size: int = 32,
    lr: float = 3e-3,
    val_fraction: float = 0.1,
    patience: int = 2,
    seed: int = 0,
    progress: bool = True,
) -> tuple[nn.Module, tuple[tuple[float, float], ...], int]:
    """Fit ``model`` to predict each next token of ``windows`` (N, L + 1) with Adam.

    A random ``val_fraction`` of the windows (fixed by ``seed``) is held out; training stops once its loss has
    not improved for ``patience`` epochs, and the best epoch's weights are restored. The split, the batch order
    and dropout are seeded, so two runs on CPU give identical weights.

    Returns:
        ``(model, history, best_epoch)``: the same model, in eval mode; (train loss, validation loss) per epoch.
    """
    if not 0.0 < val_fraction < 1.0 or epochs < 1 or patience < 1 or batch_size < 1:
        raise ValueError("val_fraction must lie in (0, 1); epochs, patience and batch_size must be positive")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(windows), generator=generator)
    held = max(1, round(val_fraction * len(order)))
    val, fit = windows[order[:held]], windows[order[held:]]
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history: list[tuple[float, float]] = []
    best_loss, best_epoch, best_state = math.inf, 0, copy.deepcopy(model.state_dict())
    bar = tqdm(range(1, epochs + 1), desc=f"train {type(model).__name__}", unit="epoch", disable=not progress)
    for epoch in bar:
        model.train()
        total = 0.0
        shuffled = fit[torch.randperm(len(fit), generator=generator)]
        for start in range(0, len(shuffled), batch_size):
            batch = shuffled[start : start + batch_size]
            loss = _loss(model, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(batch)
        val_loss = cross_entropy(model, val)
        history.append((total / len(fit), val_loss))
        bar.set_postfix(loss=f"{history[-1][0]:.3f}", val_ppl=f"{math.exp(val_loss):.1f}")
        if val_loss < best_loss:
            best_loss, best_epoch, best_state = val_loss, epoch, copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= patience:
            break
    bar.close()
    model.load_state_dict(best_state)
    return model.eval(), tuple(history), best_epoch


def train_or_load_next_token(
    name: str,
    factory: Callable[[], nn.Module],
    train: Tensor,
    test: Tensor,
    vocab_size: int,
    *,
    seed: int = 0,
    cache: str | Path | None = None,
    retrain: bool = False,
    progress: bool = True,
    **train_options: Any,
) -> tuple[nn.Module, NextTokenRecord]:
    """A language model trained with :func:`train_next_token` on ``train`` windows and scored on ``test``
    windows, from the cache (``CACHE/NAME-HASH.pt`` and ``.json``) when it was trained before with the same
    architecture, data, seed and options; else trained and cached. ``factory()`` runs after
    ``torch.manual_seed(seed)``. A damaged cache entry is trained again with a
    :class:`~gradattr.cache.CacheWarning`."""
    torch.manual_seed(seed)
    model = factory()
    config = {
        "model": repr(model), "shapes": {k: list(v.shape) for k, v in model.state_dict().items()}, "seed": seed,
        "vocab_size": vocab_size, "train": {k: repr(v) for k, v in sorted(train_options.items())},
    }  # fmt: skip
    stem = f"{name}-{fingerprint(config, (train, test))}"
    directory = Path(cache) if cache is not None else cache_dir()
    weights, record = directory / f"{stem}.pt", directory / f"{stem}.json"
    if not retrain and weights.is_file() and record.is_file():
        try:
            load_checkpoint(model, weights)
            return model.eval(), NextTokenRecord.from_dict(json.loads(record.read_text(encoding="utf-8")))
        except (CheckpointError, ValueError, TypeError, KeyError) as error:  # JSON errors are ValueErrors
            warnings.warn(f"ignoring cached model {weights.name}: {one_line(error)}; training it again",
                          CacheWarning, stacklevel=2)  # fmt: skip
    start = time.perf_counter()
    model, history, best_epoch = train_next_token(model, train, seed=seed, progress=progress, **train_options)
    result = NextTokenRecord(
        history=history,
        best_epoch=best_epoch,
        val_perplexity=math.exp(history[best_epoch - 1][1]),
        test_perplexity=math.exp(cross_entropy(model, test)),
        unigram_perplexity=math.exp(unigram_cross_entropy(train, test, vocab_size)),
        train_tokens=train[:, 1:].numel(),
        test_tokens=test[:, 1:].numel(),
        seconds=time.perf_counter() - start,
    )
    save_checkpoint(model, weights)
    write_text(record, json.dumps(result.to_dict(), indent=2))
    return model, result


def _loss(model: nn.Module, windows: Tensor, reduction: str = "mean") -> Tensor:
    """Cross-entropy of the model's logits at positions 0..L-1 against the tokens at 1..L."""
    logits = model(windows[:, :-1])
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), windows[:, 1:].reshape(-1), reduction=reduction)
