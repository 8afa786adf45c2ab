"""scikit-learn's bundled 8x8 handwritten digits: the offline default for demos and CI."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits as _sklearn_digits
from sklearn.model_selection import train_test_split

from gradattr.data.dataset import Dataset, labels_tensor, scale_to_symmetric

DIGIT_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))


def load_digits(test_fraction: float = 0.25, seed: int = 0) -> Dataset:
    """The 1,797 UCI optical-recognition digits that ship with scikit-learn, as 8x8 images.

    Pixel counts ``0..16`` are scaled to ``[-1, 1]`` (Ancona et al., 2018, Sec. 5 scale inputs
    the same way). The split is stratified by class and fixed by ``seed``; with the defaults it
    has 1,347 training and 450 test images.

    Returns:
        A :class:`Dataset` named ``"digits"`` with ``train_x``/``test_x`` float32
        ``(N, 1, 8, 8)`` and class names ``"0"`` .. ``"9"``.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    bunch = _sklearn_digits()
    images = np.asarray(bunch.images, dtype=np.float32).reshape(-1, 1, 8, 8)
    labels = np.asarray(bunch.target, dtype=np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=test_fraction, random_state=seed, stratify=labels
    )
    return Dataset(
        name="digits",
        train_x=scale_to_symmetric(x_train, 16.0),
        train_y=labels_tensor(y_train),
        test_x=scale_to_symmetric(x_test, 16.0),
        test_y=labels_tensor(y_test),
        class_names=DIGIT_CLASSES,
    )
