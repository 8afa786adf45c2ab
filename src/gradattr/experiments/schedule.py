"""How long a ``reproduce`` run takes: its stages (train each model, study it, the robustness study) with their
expected cost, and the progress line that shows the stage, the model and the time left.

Expected costs are CPU seconds on one core of the reference machine (2-core x86-64, PyTorch 2.13 CPU, one
intra-op thread, as ``gradattr reproduce`` runs by default), measured with ``benchmarks/reproduce_stages.py``.
The progress bar advances by a stage's expected cost when the stage ends, so the time left that tqdm derives
from it (remaining cost / cost done per second so far) calibrates itself to the machine after the first stage.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tqdm.auto import tqdm


@dataclass(frozen=True)
class Cost:
    """Expected CPU seconds of one model: training it, and studying it per evaluation sample (at 100 subsets
    per n; the study's cost grows with both)."""

    train: float
    per_sample: float


EXPECTED: dict[str, Cost] = {
    "digits-mlp-relu": Cost(1.3, 0.014),
    "digits-mlp-tanh": Cost(0.85, 0.018),
    "digits-cnn": Cost(1.3, 0.03),
    "digits-vit": Cost(7.4, 0.058),
    "drugreview-text-cnn": Cost(6.1, 0.17),
    "drugreview-lstm": Cost(3.9, 0.12),
    "drugreview-text-transformer": Cost(15.0, 0.4),
    "fashion-mnist-mlp-relu": Cost(29.0, 0.038),
    "fashion-mnist-mlp-tanh": Cost(18.0, 0.046),
    "fashion-mnist-cnn": Cost(84.0, 0.65),
    "fashion-mnist-vit": Cost(44.0, 0.22),
    "localisation-pooled-cnn": Cost(30.0, 0.15),
}
"""Measured cost per ``data set-model`` (``benchmarks/reproduce_stages.py``); MNIST counts as Fashion-MNIST
(same sizes, same models). Models without an entry are not in the estimate (the run says which)."""
ROBUSTNESS_SECONDS = 9.5
"""The robustness study, its two CNNs trained."""
LANGUAGE_MODEL_SECONDS = 13.0
"""The language-model section, its tokenizer and decoder trained (3 s with both cached)."""
ALIASES = {"mnist": "fashion-mnist"}


@dataclass(frozen=True)
class Stage:
    """One step of the run: ``label`` as shown (e.g. ``"train digits cnn"``) and its expected CPU seconds
    (None: not measured)."""

    label: str
    seconds: float | None


def model_stages(dataset: str, model: str, samples: int, *, cached: bool, subsets: int = 100) -> tuple[Stage, Stage]:
    """The two stages of model ``model`` on ``dataset`` (keys, e.g. ``"digits"``, ``"cnn"``): training it (free
    when ``cached``) and studying it on ``samples`` samples with ``subsets`` subsets per n."""
    cost = EXPECTED.get(f"{ALIASES.get(dataset, dataset)}-{model}")
    name = f"{dataset} {model}"
    train = Stage(f"load {name}", 0.0) if cached else Stage(f"train {name}", cost.train if cost else None)
    return train, Stage(f"study {name}", cost.per_sample * samples * subsets / 100 if cost else None)


class Schedule:
    """The stages of a run, shown as one progress line: ``reproduce: study digits cnn  40%|███  | 0:31 elapsed,
    about 0:47 left``.

    Use :meth:`stage` around each listed stage, in any order.
    """

    def __init__(self, stages: list[Stage], *, progress: bool = True) -> None:
        self.stages = {stage.label: stage for stage in stages}
        measured = [s.seconds for s in stages if s.seconds is not None]
        self.expected = float(sum(measured))
        self.unmeasured = [s.label for s in stages if s.seconds is None]
        if progress:
            tqdm.write(f"reproduce: {self.summary()}", file=sys.stderr)
        self.bar = tqdm(
            total=self.expected or None,
            desc="reproduce",
            disable=not progress,
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed} elapsed, about {remaining} left",
        )

    def summary(self) -> str:
        """One line: how many stages, and the expected time on one core of the reference machine."""
        line = f"{len(self.stages)} stages, expected about {_minutes(self.expected)} of CPU on the reference machine"
        if self.unmeasured:
            line += f" plus {', '.join(self.unmeasured)} (not measured)"
        return line

    @contextmanager
    def stage(self, label: str) -> Iterator[None]:
        """Show ``label`` while the block runs; then count its expected cost as done."""
        self.bar.set_description_str(f"reproduce: {label}")
        yield
        seconds = self.stages[label].seconds
        if seconds:
            self.bar.update(min(seconds, self.bar.total - self.bar.n))

    def close(self) -> None:
        self.bar.close()


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"
