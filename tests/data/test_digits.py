"""scikit-learn digits: the real bundled data, scaled and split."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits as sklearn_digits

from gradattr.data import load_digits


def test_sizes_range_and_balance() -> None:
    data = load_digits()
    assert data.name == "digits"
    assert data.train_x.shape == (1347, 1, 8, 8) and data.test_x.shape == (450, 1, 8, 8)
    assert data.train_x.dtype == torch.float32 and data.train_y.dtype == torch.int64
    assert float(data.train_x.min()) == -1.0 and float(data.train_x.max()) == 1.0
    # 17 grey levels 0..16 map onto k/8 - 1
    torch.testing.assert_close(torch.unique(data.train_x), torch.arange(17) / 8 - 1, rtol=0, atol=1e-6)
    counts = torch.bincount(data.test_y, minlength=10)
    assert int(counts.min()) >= 43 and int(counts.max()) <= 46  # stratified: ~45 per class
    assert data.class_names == tuple("0123456789")
    assert 0.09 < data.majority_rate() < 0.11


def test_split_is_seeded_and_a_partition_of_the_real_images() -> None:
    first, again, other = load_digits(), load_digits(), load_digits(seed=1)
    assert torch.equal(first.train_x, again.train_x) and torch.equal(first.test_y, again.test_y)
    assert not torch.equal(first.test_x, other.test_x)
    bunch = sklearn_digits()
    original = sorted(
        map(bytes, np.concatenate([bunch.images.reshape(-1, 64), bunch.target[:, None] * 100], 1).astype(np.int16))
    )
    ours = torch.cat([first.train_x, first.test_x]).reshape(-1, 64).mul(8).add(8).round()
    labels = torch.cat([first.train_y, first.test_y])[:, None] * 100
    rebuilt = sorted(map(bytes, torch.cat([ours, labels.float()], 1).numpy().astype(np.int16)))
    assert rebuilt == original


def test_bad_fraction() -> None:
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits(test_fraction=1.0)
