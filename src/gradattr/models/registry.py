"""Model factories by name, and building one sized for a data set."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from gradattr.data.dataset import Dataset, TextDataset
from gradattr.models.cnn import cifar10_cnn, mnist_cnn
from gradattr.models.mlp import mnist_mlp
from gradattr.models.pooled import pooled_cnn
from gradattr.models.resnet import small_resnet
from gradattr.models.text import text_cnn, text_lstm
from gradattr.models.transformer import text_transformer, vision_transformer

#: Factories for image inputs: ``factory(input_shape, num_classes, **options)``.
IMAGE_MODELS: dict[str, Callable[..., nn.Module]] = {
    "mnist_mlp": mnist_mlp,
    "mnist_cnn": mnist_cnn,
    "cifar10_cnn": cifar10_cnn,
    "small_resnet": small_resnet,
    "vision_transformer": vision_transformer,
    "pooled_cnn": pooled_cnn,
}
#: Factories for token-id inputs: ``factory(vocab_size, num_classes, **options)``.
TEXT_MODELS: dict[str, Callable[..., nn.Module]] = {
    "text_cnn": text_cnn,
    "text_lstm": text_lstm,
    "text_transformer": text_transformer,
}
MODELS: dict[str, Callable[..., nn.Module]] = {**IMAGE_MODELS, **TEXT_MODELS}


def build_model(name: str, data: Dataset, **options: Any) -> nn.Module:
    """The model ``name`` sized for ``data``: its input shape (or vocabulary) and class count.

    ``options`` go to the factory, e.g. ``build_model("mnist_mlp", digits, activation="tanh")``.
    """
    if name in TEXT_MODELS:
        if not isinstance(data, TextDataset):
            raise ValueError(f"{name} is a text model but {data.name} is not a TextDataset")
        return TEXT_MODELS[name](len(data.vocab), data.num_classes, **options)
    if name in IMAGE_MODELS:
        if isinstance(data, TextDataset):
            raise ValueError(f"{name} is an image model but {data.name} is text")
        return IMAGE_MODELS[name](data.input_shape, data.num_classes, **options)
    raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
