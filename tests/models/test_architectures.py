"""Every model factory: output shape on its input size, logits (no softmax), text embeddings."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from gradattr.data import Vocabulary, build_text_dataset, load_digits
from gradattr.models import (
    IMAGE_MODELS,
    MLP,
    MODELS,
    TEXT_MODELS,
    Cifar10CNN,
    MnistCNN,
    SmallResNet,
    TextCNN,
    TextLSTM,
    build_model,
    mnist_cnn,
    mnist_mlp,
    text_cnn,
    text_lstm,
)

IMAGE_SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]


def assert_logits(output: torch.Tensor, batch: int, classes: int) -> None:
    assert output.shape == (batch, classes)
    assert torch.isfinite(output).all()
    # Probabilities would be non-negative and sum to one per row; logits are neither.
    assert not torch.allclose(output.sum(dim=1), torch.ones(batch), atol=1e-3)


def assert_no_softmax(model: nn.Module) -> None:
    assert not any(isinstance(m, nn.Softmax | nn.LogSoftmax | nn.Softmin) for m in model.modules())


@pytest.mark.parametrize("name", sorted(IMAGE_MODELS))
@pytest.mark.parametrize("shape", IMAGE_SHAPES)
def test_image_factories_fit_each_input_size(name: str, shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    model = IMAGE_MODELS[name](shape, 7).eval()
    assert_no_softmax(model)
    assert_logits(model(torch.randn(5, *shape) * 3), 5, 7)
    with pytest.raises(RuntimeError):
        model(torch.randn(5, shape[0] + 1, *shape[1:]))  # wrong channel count is not silently accepted


@pytest.mark.parametrize("factory", [text_cnn, text_lstm])
@pytest.mark.parametrize("length", [5, 60])
def test_text_factories(factory: Callable[..., nn.Module], length: int) -> None:
    torch.manual_seed(0)
    model = factory(50, 3).eval()
    assert_no_softmax(model)
    assert isinstance(model.embedding, nn.Embedding) and model.embedding.num_embeddings == 50
    assert model.embedding.padding_idx == 0
    ids = torch.randint(0, 50, (4, length))
    assert_logits(model(ids), 4, 3)


@pytest.mark.parametrize("factory", [text_cnn, text_lstm])
def test_gradient_reaches_the_embedding_output(factory: Callable[..., nn.Module]) -> None:
    """Token attribution differentiates w.r.t. ``model.embedding``'s output: it must be reachable."""
    torch.manual_seed(0)
    model = factory(30, 2).eval()
    captured: list[torch.Tensor] = []

    def keep(_module: nn.Module, _inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        output.retain_grad()
        captured.append(output)

    model.embedding.register_forward_hook(keep)
    model(torch.randint(1, 30, (2, 12)))[:, 1].sum().backward()
    assert captured[0].shape == (2, 12, model.embedding.embedding_dim)
    assert captured[0].grad is not None and captured[0].grad.abs().sum() > 0


def test_text_cnn_rejects_sequences_shorter_than_its_widest_filter() -> None:
    with pytest.raises(ValueError, match="at least 5 tokens"):
        text_cnn(10, 2, kernel_sizes=(3, 5))(torch.ones(1, 4, dtype=torch.int64))


def test_paper_layer_sizes() -> None:
    mlp = mnist_mlp()
    linears = [m for m in mlp.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 512), (512, 512), (512, 10)]
    assert sum(isinstance(m, nn.Tanh) for m in mnist_mlp(activation="tanh").modules()) == 2
    cnn = mnist_cnn()
    assert (cnn.conv1.out_channels, cnn.conv2.out_channels, cnn.fc1.out_features) == (32, 64, 128)
    assert cnn.fc1.in_features == 64 * 12 * 12


def test_dropout_is_optional() -> None:
    assert not any(isinstance(m, nn.Dropout) for m in mnist_mlp().modules())
    model = mnist_mlp((1, 8, 8), 10, dropout=0.5)
    assert sum(isinstance(m, nn.Dropout) for m in model.modules()) == 2
    x = torch.randn(3, 1, 8, 8)
    model.eval()
    assert torch.equal(model(x), model(x))  # dropout is off in eval mode
    for factory in (text_cnn, text_lstm):
        assert any(isinstance(m, nn.Dropout) for m in factory(10, 2, dropout=0.3).modules())


def test_unknown_activation_and_too_small_images() -> None:
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        mnist_mlp(activation="gelu")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 6x6"):
        mnist_cnn((1, 5, 5), 10)
    with pytest.raises(ValueError, match=r"image shape \(C, H, W\)"):
        mnist_cnn((28, 28), 10)


def test_build_model_sizes_for_the_data() -> None:
    digits = load_digits()
    expected = {"mnist_mlp": MLP, "mnist_cnn": MnistCNN, "cifar10_cnn": Cifar10CNN, "small_resnet": SmallResNet}
    for name, cls in expected.items():
        model = build_model(name, digits)
        assert isinstance(model, cls)
        assert model(digits.test_x[:2]).shape == (2, 10)
    text = build_text_dataset(
        "t", ["good day", "bad day"], [1, 0], ["good"], [1], ("neg", "pos"), max_len=6, min_freq=1
    )
    for name, cls in (("text_cnn", TextCNN), ("text_lstm", TextLSTM)):
        model = build_model(name, text, embedding_dim=8)
        assert isinstance(model, cls) and model.embedding.num_embeddings == len(text.vocab)
        assert model(text.test_x).shape == (1, 2)
    assert set(MODELS) == set(IMAGE_MODELS) | set(TEXT_MODELS)
    with pytest.raises(ValueError, match="unknown model 'vgg'"):
        build_model("vgg", digits)
    with pytest.raises(ValueError, match="is a text model"):
        build_model("text_cnn", digits)
    with pytest.raises(ValueError, match="is an image model"):
        build_model("mnist_mlp", text)
    assert isinstance(text.vocab, Vocabulary)
