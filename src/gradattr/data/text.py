"""Text cleaning, tokenization and turning labelled texts into a :class:`TextDataset`.

The tokenizer is deliberately simple (lower-case words matched by a regular expression) so that
every token an attribution map colours is a plain word a reader recognises.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

import torch

from gradattr.data.dataset import TextDataset
from gradattr.data.vocabulary import Vocabulary

_TAG = re.compile(r"<[^>]*>")
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def clean_text(text: str) -> str:
    """Decode HTML entities (``&#039;`` -> ``'``), turn tags such as ``<br />`` into spaces, and
    strip surrounding whitespace and quote marks."""
    text = html.unescape(html.unescape(text))  # some sources escape twice: &amp;#039;
    text = _TAG.sub(" ", text).replace("\u2019", "'").replace("\u2018", "'")
    return " ".join(text.split()).strip('"').strip()


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens of ``text``: runs of letters/digits, keeping an apostrophe suffix
    (``"didn't"`` stays one token). HTML entities and tags are cleaned first."""
    return _WORD.findall(clean_text(text).lower())


def encode_texts(texts: Sequence[str], vocab: Vocabulary, max_len: int) -> torch.Tensor:
    """Token ids of ``texts`` as an int64 tensor ``(len(texts), max_len)``, see :meth:`Vocabulary.encode`."""
    rows = [vocab.encode(tokenize(t), max_len) for t in texts]
    return torch.tensor(rows, dtype=torch.int64).reshape(len(rows), max_len)


def build_text_dataset(
    name: str,
    train_texts: Sequence[str],
    train_labels: Sequence[int],
    test_texts: Sequence[str],
    test_labels: Sequence[int],
    class_names: Sequence[str],
    *,
    max_len: int = 200,
    min_freq: int = 2,
    max_size: int | None = 20_000,
) -> TextDataset:
    """Clean and tokenize both splits, build the vocabulary on the training split only, and
    encode every text to ``max_len`` ids.

    Args:
        name: Data set name stored in the result.
        train_texts, test_texts: Raw texts (HTML entities are decoded here).
        train_labels, test_labels: Integer class of each text, in ``[0, len(class_names))``.
        class_names: Name of each class.
        max_len: Length every sequence is padded or truncated to.
        min_freq: A training token must occur this often to enter the vocabulary.
        max_size: Cap on the vocabulary size including ``<pad>`` and ``<unk>``.
    """
    train_clean = tuple(clean_text(t) for t in train_texts)
    test_clean = tuple(clean_text(t) for t in test_texts)
    vocab = Vocabulary.build((tokenize(t) for t in train_clean), min_freq=min_freq, max_size=max_size)
    return TextDataset(
        name=name,
        train_x=encode_texts(train_clean, vocab, max_len),
        train_y=torch.tensor(list(train_labels), dtype=torch.int64),
        test_x=encode_texts(test_clean, vocab, max_len),
        test_y=torch.tensor(list(test_labels), dtype=torch.int64),
        class_names=tuple(class_names),
        vocab=vocab,
        max_len=max_len,
        train_texts=train_clean,
        test_texts=test_clean,
    )
