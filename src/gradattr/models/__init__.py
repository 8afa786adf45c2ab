"""The network architectures of Ancona et al. (ICLR 2018, Sec. 5), plus a small ResNet and small transformers
(a ViT and a transformer text classifier).

All output logits (no softmax). Image factories take ``(input_shape, num_classes)`` so they fit
28x28 MNIST as well as 8x8 digits; text factories take ``(vocab_size, num_classes)`` and their
models expose the word embedding as ``model.embedding``.
"""

from gradattr.models.cnn import Cifar10CNN, MnistCNN, cifar10_cnn, mnist_cnn
from gradattr.models.decoder import TextDecoder, text_decoder
from gradattr.models.mlp import MLP, mnist_mlp
from gradattr.models.pooled import PooledCNN, pooled_cnn
from gradattr.models.registry import IMAGE_MODELS, MODELS, TEXT_MODELS, build_model
from gradattr.models.resnet import ResidualBlock, SmallResNet, small_resnet
from gradattr.models.text import TextCNN, TextLSTM, text_cnn, text_lstm
from gradattr.models.transformer import TextTransformer, VisionTransformer, text_transformer, vision_transformer

__all__ = [
    "IMAGE_MODELS",
    "MLP",
    "MODELS",
    "TEXT_MODELS",
    "Cifar10CNN",
    "MnistCNN",
    "PooledCNN",
    "ResidualBlock",
    "SmallResNet",
    "TextCNN",
    "TextDecoder",
    "TextLSTM",
    "TextTransformer",
    "VisionTransformer",
    "build_model",
    "cifar10_cnn",
    "mnist_cnn",
    "mnist_mlp",
    "pooled_cnn",
    "small_resnet",
    "text_cnn",
    "text_decoder",
    "text_lstm",
    "text_transformer",
    "vision_transformer",
]
