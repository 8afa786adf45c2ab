"""Cleaning, tokenization and the vocabulary."""

from __future__ import annotations

import pytest
import torch

from gradattr.data import Vocabulary, build_text_dataset, clean_text, tokenize


def test_clean_text_decodes_entities_and_tags() -> None:
    raw = '"I didn&#039;t like it &amp; felt &quot;sick&quot;.<br /><br />Never again"'
    assert clean_text(raw) == 'I didn\'t like it & felt "sick". Never again'
    assert clean_text("it&amp;#039;s") == "it's"  # escaped twice
    assert clean_text("couldn&rsquo;t") == "couldn't"


def test_tokenize_lowercases_and_keeps_contractions() -> None:
    assert tokenize("Didn&#039;t WORK, 10/10 -- side-effects!") == ["didn't", "work", "10", "10", "side", "effects"]
    assert tokenize("") == []


def test_vocabulary_build_order_min_freq_and_size() -> None:
    docs = [["b", "a", "c"], ["a", "b", "d"], ["a", "e"]]
    vocab = Vocabulary.build(docs, min_freq=2)
    assert vocab.tokens == ("<pad>", "<unk>", "a", "b")  # a:3, b:2; c, d, e once
    capped = Vocabulary.build(docs, max_size=4)
    assert capped.tokens == ("<pad>", "<unk>", "a", "b")
    everything = Vocabulary.build(docs)
    assert everything.tokens == ("<pad>", "<unk>", "a", "b", "c", "d", "e")  # ties alphabetical
    assert (vocab.pad_id, vocab.unk_id) == (0, 1) and len(vocab) == 4 and "a" in vocab and "c" not in vocab


def test_encode_left_pads_and_keeps_the_last_tokens() -> None:
    vocab = Vocabulary(("<pad>", "<unk>", "good", "bad"))
    assert vocab.encode(["good", "unseen"], max_len=4) == [0, 0, 2, 1]
    assert vocab.encode(["bad", "good", "good", "bad"], max_len=3) == [2, 2, 3]
    assert vocab.decode(torch.tensor([0, 0, 2, 1])) == ["good", "<unk>"]
    assert vocab.decode([0, 3], skip_padding=False) == ["<pad>", "bad"]


def test_vocabulary_rejects_bad_layout() -> None:
    with pytest.raises(ValueError, match="must start with"):
        Vocabulary(("a", "<pad>", "<unk>"))
    with pytest.raises(ValueError, match="unique"):
        Vocabulary(("<pad>", "<unk>", "a", "a"))


def test_build_text_dataset_uses_train_vocabulary_only() -> None:
    data = build_text_dataset(
        "toy",
        ["great drug great", "awful drug"],
        [1, 0],
        ["great awful newword"],
        [1],
        ("negative", "positive"),
        max_len=5,
        min_freq=1,
    )
    assert data.vocab.tokens == ("<pad>", "<unk>", "drug", "great", "awful")
    assert data.train_x.tolist() == [[0, 0, 3, 2, 3], [0, 0, 0, 4, 2]]
    assert data.test_x.tolist() == [[0, 0, 3, 4, 1]]  # "newword" is unknown: test never enters the vocab
    assert data.vocab.decode(data.test_x[0]) == ["great", "awful", "<unk>"]
    assert data.train_y.tolist() == [1, 0] and data.input_shape == (5,) and data.num_classes == 2
    assert data.test_texts == ("great awful newword",)
