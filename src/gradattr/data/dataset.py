"""The containers every loader returns, and the scaling to [-1, 1] the paper uses.

Ancona et al. (ICLR 2018, Sec. 5) scale image inputs to [-1, 1], so that the all-zero baseline
used by Integrated Gradients and DeepLIFT is a mid-grey image. :func:`scale_to_symmetric` does
that for integer pixel values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gradattr.data.vocabulary import Vocabulary


def scale_to_symmetric(values: np.ndarray, max_value: float) -> torch.Tensor:
    """Map values in ``[0, max_value]`` linearly onto ``[-1, 1]`` as a float32 tensor.

    ``0`` becomes ``-1`` and ``max_value`` becomes ``1``; the shape is kept.
    """
    scaled = values.astype(np.float32) * np.float32(2.0 / max_value) - np.float32(1.0)
    return torch.from_numpy(np.ascontiguousarray(scaled))


def labels_tensor(values: np.ndarray) -> torch.Tensor:
    """Integer class labels as the int64 ``(N,)`` tensor every :class:`Dataset` holds."""
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.int64).reshape(-1))


@dataclass(frozen=True, eq=False)
class Dataset:
    """A classification data set with a fixed train/test split, as tensors.

    Immutable; compared by identity (tensors have no single truth value for ``==``).

    Attributes:
        name: Short identifier, e.g. ``"digits"`` or ``"fashion-mnist"``.
        train_x: Training inputs, ``(N_train, *input_shape)``. Images are float32
            ``(N, C, H, W)`` scaled to ``[-1, 1]``; text is int64 token ids ``(N, max_len)``.
        train_y: Training labels, int64 ``(N_train,)`` with values in ``[0, num_classes)``.
        test_x: Held-out inputs, ``(N_test, *input_shape)``.
        test_y: Held-out labels, int64 ``(N_test,)``.
        class_names: Human-readable name of each class; ``class_names[k]`` names label ``k``.
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        for split, x, y in (("train", self.train_x, self.train_y), ("test", self.test_x, self.test_y)):
            if y.dim() != 1 or y.dtype != torch.int64:
                raise ValueError(
                    f"{self.name}: {split} labels must be a 1-D int64 tensor, got {y.dtype} of shape {tuple(y.shape)}"
                )
            if x.shape[0] != y.shape[0]:
                raise ValueError(f"{self.name}: {split} has {x.shape[0]} inputs but {y.shape[0]} labels")
            if y.numel() and (int(y.min()) < 0 or int(y.max()) >= len(self.class_names)):
                raise ValueError(
                    f"{self.name}: {split} labels must lie in [0, {len(self.class_names)}), "
                    f"got [{int(y.min())}, {int(y.max())}]"
                )
        if self.train_x.shape[1:] != self.test_x.shape[1:]:
            raise ValueError(
                f"{self.name}: train inputs have shape {tuple(self.train_x.shape[1:])} but "
                f"test inputs {tuple(self.test_x.shape[1:])}"
            )

    @property
    def num_classes(self) -> int:
        """Number of classes, ``len(class_names)``."""
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input without the batch dimension, e.g. ``(1, 28, 28)`` or ``(max_len,)``."""
        return tuple(self.train_x.shape[1:])

    def majority_rate(self) -> float:
        """Test accuracy of always predicting the most frequent training class (a floor to beat)."""
        majority = int(torch.bincount(self.train_y, minlength=self.num_classes).argmax())
        return float((self.test_y == majority).double().mean())


@dataclass(frozen=True, eq=False)
class TextDataset(Dataset):
    """A text classification data set: token ids plus what is needed to read them back.

    ``train_x``/``test_x`` are int64 ``(N, max_len)``: each review tokenized, mapped through
    ``vocab`` and left-padded with ``vocab.pad_id`` (or cut to its last ``max_len`` tokens), so a
    recurrent model's last time step is the end of the text.

    Attributes:
        vocab: Vocabulary built on the training texts only; ``vocab.decode(ids)`` gives tokens.
        max_len: Sequence length every row is padded or truncated to.
        train_texts: The cleaned training texts, aligned with ``train_x``.
        test_texts: The cleaned test texts, aligned with ``test_x``.
    """

    vocab: Vocabulary
    max_len: int
    train_texts: tuple[str, ...]
    test_texts: tuple[str, ...]

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.train_x.dtype != torch.int64 or self.train_x.shape[1:] != (self.max_len,):
            raise ValueError(
                f"{self.name}: token ids must be int64 of shape (N, {self.max_len}), "
                f"got {self.train_x.dtype} {tuple(self.train_x.shape)}"
            )
        if len(self.train_texts) != self.train_x.shape[0] or len(self.test_texts) != self.test_x.shape[0]:
            raise ValueError(f"{self.name}: texts are not aligned with token ids")
