"""A byte-pair-encoding tokenizer trained here on review text, with HuggingFace's ``tokenizers`` library.

BPE (Sennrich et al., ACL 2016) starts from characters and merges the most frequent adjacent pair of symbols,
again and again, until the vocabulary has ``vocab_size`` entries; a word is then encoded by replaying the
merges. The pipeline here keeps tokens readable:

* normaliser: NFKC, then lower case;
* pre-tokeniser: Metaspace (each space becomes ``▁``, the start of a word), then punctuation split off, so
  ``"didn't help."`` is split into ``▁didn ' t ▁help .`` before merging;
* decoder: Metaspace, so decoding gives the words back with their spaces.

A review ends with :data:`EOS`, the token that separates reviews in the language model's training stream.
Training on the drug reviews' training split takes well under a second. :func:`review_tokenizer` caches the
tokenizer as the library's own JSON (no pickles; nothing in it runs code) beside the cached models
(:func:`gradattr.cache.cache_dir`), keyed by a hash of the texts and the settings.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from gradattr.cache import CacheWarning, cache_dir
from gradattr.files import atomic_path, one_line
from gradattr.progress import fingerprint

EOS = "<eos>"
"""The end-of-review token (id 0)."""
UNKNOWN = "<unk>"
"""A character never seen in training (id 1)."""


def train_bpe(texts: Sequence[str], *, vocab_size: int = 2000, min_frequency: int = 2) -> Tokenizer:
    """A BPE tokenizer with at most ``vocab_size`` tokens (the two special ones included) learned from
    ``texts``; a merge must occur at least ``min_frequency`` times."""
    tokenizer = Tokenizer(models.BPE(unk_token=UNKNOWN))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Metaspace(), pre_tokenizers.Punctuation()])
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[EOS, UNKNOWN], show_progress=False
    )
    tokenizer.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return tokenizer


def review_tokenizer(
    texts: Sequence[str],
    *,
    vocab_size: int = 2000,
    min_frequency: int = 2,
    name: str = "drugreview-bpe",
    cache: str | Path | None = None,
    retrain: bool = False,
) -> Tokenizer:
    """:func:`train_bpe` on ``texts``, read from the cache when it was trained before with the same texts and
    settings (``CACHE/NAME-HASH.json``, written atomically); a damaged file is trained again with a
    :class:`~gradattr.cache.CacheWarning`."""
    key = fingerprint({"texts": list(texts), "vocab_size": vocab_size, "min_frequency": min_frequency})
    path = (Path(cache) if cache is not None else cache_dir()) / f"{name}-{key}.json"
    if not retrain and path.is_file():
        try:
            return Tokenizer.from_file(str(path))
        except Exception as error:  # the library raises its own Exception subclass on a bad file
            warnings.warn(f"ignoring cached tokenizer {path.name}: {one_line(error)}; training it again",
                          CacheWarning, stacklevel=2)  # fmt: skip
    tokenizer = train_bpe(texts, vocab_size=vocab_size, min_frequency=min_frequency)
    with atomic_path(path) as partial:
        tokenizer.save(str(partial))
    return tokenizer


def token_strings(tokenizer: Tokenizer, ids: Sequence[int]) -> list[str]:
    """Each id as the text it stands for, a word-initial token with its leading space (``" pain"``), a word
    piece without (``" nal", "bu", "phine"``), :data:`EOS` as itself: joined, they give the decoded text."""
    return [tokenizer.id_to_token(int(i)).replace("\u2581", " ") for i in ids]
