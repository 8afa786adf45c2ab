"""A localisation benchmark with known ground truth: one item pasted into a larger canvas among distractors.

Each sample is a square canvas (background ``-1`` after scaling) holding one *item*, a real image from a
source data set (scikit-learn's 8x8 digits or 28x28 Fashion-MNIST), pasted unchanged at a random position,
plus ``distractors`` patches that carry no class evidence. The label is the item's label, so the evidence
for the class lies in the item's box and nowhere else; attribution maps can be scored against that truth
(pointing game, relevance mass) instead of against another method.

Ground truth, saved with the data:

* ``train_masks``/``test_masks``: the item's **box** (bool ``(N, H, W)``), the standard of pointing-game
  benchmarks (Zhang et al., 2016);
* ``train_pixel_masks``/``test_pixel_masks``: the item's **ink**, the box's pixels whose source value is
  nonzero, the object mask of relevance-mass accuracy (Arras et al., 2022);
* ``train_boxes``/``test_boxes``: the box as int64 ``(N, 4)`` rows ``(top, left, bottom, right)``, bottom and
  right exclusive;
* ``train_sources``/``test_sources``: the index of the pasted item in the source split, so the item can be
  checked against its original.

Distractors are non-digit, non-garment shapes, drawn independently of the label: ``"noise"`` patches
(each pixel inked with probability 1/2 at a uniform random grey level) and ``"blob"`` patches (a Gaussian
spot of random width and peak). They are squares of side ``item side`` (digits: 8) or ``item side // 2``
(Fashion-MNIST: 14, so that they always fit beside a 28x28 item in a 56x56 canvas). **Overlap rule:** a
distractor never overlaps the item's box (so the canvas inside the box is exactly the source image);
distractors may overlap each other, where the brighter value wins. Values are composed in the source's
grey levels (digits ``0..16``, Fashion-MNIST ``0..255``) and scaled to ``[-1, 1]`` as the source loaders do.

The item positions and the distractors come from two independent random streams of ``seed``: the same seed
with a different ``distractors`` count places every item at the same position.

Measured (``benchmarks/localisation_benchmark.py``, seed 0, CPU): a small translation-invariant CNN (three
3x3 convolutions, global max-pooling) trained with :func:`gradattr.training.train` on
``load_localisation(copies=4)`` (5,388 training canvases of 32x32, three distractors each) reaches **97.8 %**
test accuracy on the 450 test canvases in about 10 s; the paper's MNIST CNN (no global pooling) only 56.7 %.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from gradattr.data.dataset import Dataset, labels_tensor, scale_to_symmetric
from gradattr.data.digits import load_digits
from gradattr.data.mnist import FASHION_MNIST_DIR, load_fashion_mnist

Source = Literal["digits", "fashion-mnist"]

#: The distractor shapes, drawn uniformly per patch.
DISTRACTOR_KINDS: tuple[str, ...] = ("noise", "blob")

_MAX_PLACEMENT_TRIES = 1000


@dataclass(frozen=True, eq=False)
class LocalisationDataset(Dataset):
    """A :class:`Dataset` of canvases plus where, in each, the class evidence is.

    Attributes:
        train_masks, test_masks: bool ``(N, H, W)``, True on the pasted item's box.
        train_pixel_masks, test_pixel_masks: bool ``(N, H, W)``, True on the item's nonzero (inked) pixels;
            a subset of the box.
        train_boxes, test_boxes: int64 ``(N, 4)``, the box as ``(top, left, bottom, right)``, bottom and right
            exclusive.
        train_sources, test_sources: int64 ``(N,)``, the index of the pasted item in the source data set's
            train or test split.
        source: ``"digits"`` or ``"fashion-mnist"``.
        distractors: Number of distractor patches in every canvas.
    """

    train_masks: torch.Tensor
    test_masks: torch.Tensor
    train_pixel_masks: torch.Tensor
    test_pixel_masks: torch.Tensor
    train_boxes: torch.Tensor
    test_boxes: torch.Tensor
    train_sources: torch.Tensor
    test_sources: torch.Tensor
    source: str
    distractors: int

    def __post_init__(self) -> None:
        super().__post_init__()
        for split, x in (("train", self.train_x), ("test", self.test_x)):
            n, height, width = x.shape[0], x.shape[-2], x.shape[-1]
            for field in ("masks", "pixel_masks"):
                mask = getattr(self, f"{split}_{field}")
                if mask.dtype != torch.bool or tuple(mask.shape) != (n, height, width):
                    raise ValueError(
                        f"{self.name}: {split}_{field} must be bool of shape {(n, height, width)}, "
                        f"got {mask.dtype} {tuple(mask.shape)}"
                    )
            if tuple(getattr(self, f"{split}_boxes").shape) != (n, 4):
                raise ValueError(f"{self.name}: {split}_boxes must have shape {(n, 4)}")
            if tuple(getattr(self, f"{split}_sources").shape) != (n,):
                raise ValueError(f"{self.name}: {split}_sources must have shape {(n,)}")


def load_localisation(
    seed: int = 0,
    canvas: int | None = None,
    source: Source = "digits",
    distractors: int = 3,
    *,
    copies: int = 1,
    train_size: int | None = None,
    test_size: int | None = None,
    directory: str | Path = FASHION_MNIST_DIR,
) -> LocalisationDataset:
    """Canvases with one pasted item (the label) and ``distractors`` label-free patches, plus the item's masks.

    Deterministic: the same arguments give identical tensors.

    Args:
        seed: Seeds the source split (digits: :func:`gradattr.data.load_digits`'s ``seed``), the item
            positions and the distractors.
        canvas: Side of the square canvas; default 32 for digits, 56 for Fashion-MNIST. Must be at least
            the item's side plus the distractor side when ``distractors > 0``.
        source: ``"digits"`` (8x8 items, 1,347 + 450) or ``"fashion-mnist"`` (28x28 items from
            ``directory``, Debian's ``dataset-fashion-mnist`` by default).
        distractors: Distractor patches per canvas (0 for the bare item).
        copies: Canvases made of each training item, each at its own position with its own distractors (a
            larger training set); the test split always has one canvas per item.
        train_size, test_size: Use only the first this many items of each source split (default: all).
        directory: Where the Fashion-MNIST files are.

    Returns:
        A :class:`LocalisationDataset` named ``"localisation-<source>"`` with float32 ``(N, 1, canvas,
        canvas)`` inputs in ``[-1, 1]`` and the source's class names.

    Raises:
        ValueError: An unknown source, a negative count, or a canvas too small to hold the item and a
            distractor beside it.
        DataFormatError: The Fashion-MNIST files are missing or corrupt.
    """
    if source not in ("digits", "fashion-mnist"):
        raise ValueError(f"source must be 'digits' or 'fashion-mnist', got {source!r}")
    if distractors < 0 or copies < 1:
        raise ValueError(f"distractors must be >= 0 and copies >= 1, got {distractors} and {copies}")
    if source == "digits":
        data, max_value, default_canvas = load_digits(seed=seed), 16.0, 32
    else:
        data, max_value, default_canvas = load_fashion_mnist(directory), 255.0, 56
    side = int(data.input_shape[-1])
    patch = side if source == "digits" else side // 2
    canvas = default_canvas if canvas is None else canvas
    if canvas < side + (patch if distractors else 0):
        raise ValueError(f"canvas {canvas} is too small for a {side}x{side} item and {patch}x{patch} distractors")
    # The source images back in their grey levels 0..max_value (the loaders scaled them to [-1, 1]).
    items = {
        split: np.rint((x[:size, 0].numpy().astype(np.float64) + 1.0) * (max_value / 2.0))
        for split, x, size in (("train", data.train_x, train_size), ("test", data.test_x, test_size))
    }
    labels = {"train": data.train_y[:train_size].numpy(), "test": data.test_y[:test_size].numpy()}
    position_seed, distractor_seed = np.random.SeedSequence(seed).spawn(2)
    position_rng, distractor_rng = np.random.default_rng(position_seed), np.random.default_rng(distractor_seed)
    parts = {}
    for split, repeat in (("train", copies), ("test", 1)):
        sources = np.tile(np.arange(len(items[split])), repeat)
        composed = _compose(items[split], sources, canvas, patch, distractors, max_value, position_rng, distractor_rng)
        parts[split] = (*composed, labels[split][sources], sources)
    (train_x, train_box, train_pixels, train_boxes, train_y, train_sources) = parts["train"]
    (test_x, test_box, test_pixels, test_boxes, test_y, test_sources) = parts["test"]
    return LocalisationDataset(
        name=f"localisation-{source}",
        train_x=scale_to_symmetric(train_x[:, None], max_value),
        train_y=labels_tensor(train_y),
        test_x=scale_to_symmetric(test_x[:, None], max_value),
        test_y=labels_tensor(test_y),
        class_names=data.class_names,
        train_masks=torch.from_numpy(train_box),
        test_masks=torch.from_numpy(test_box),
        train_pixel_masks=torch.from_numpy(train_pixels),
        test_pixel_masks=torch.from_numpy(test_pixels),
        train_boxes=torch.from_numpy(train_boxes),
        test_boxes=torch.from_numpy(test_boxes),
        train_sources=torch.from_numpy(train_sources.astype(np.int64)),
        test_sources=torch.from_numpy(test_sources.astype(np.int64)),
        source=source,
        distractors=distractors,
    )


def _compose(
    items: np.ndarray,
    sources: np.ndarray,
    canvas: int,
    patch: int,
    distractors: int,
    max_value: float,
    position_rng: np.random.Generator,
    distractor_rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Canvases ``(N, canvas, canvas)`` in grey levels, box masks, ink masks and boxes for ``items[sources]``."""
    n, side = len(sources), items.shape[-1]
    images = np.zeros((n, canvas, canvas))
    box_masks = np.zeros((n, canvas, canvas), dtype=bool)
    pixel_masks = np.zeros((n, canvas, canvas), dtype=bool)
    corners = position_rng.integers(0, canvas - side + 1, size=(n, 2))
    boxes = np.concatenate([corners, corners + side], axis=1).astype(np.int64)
    shapes: dict[str, Callable[[np.random.Generator, int, float], np.ndarray]] = {
        "noise": _noise_patch,
        "blob": _blob_patch,
    }
    for row, (item, (top, left)) in enumerate(zip(items[sources], corners, strict=True)):
        window = (slice(top, top + side), slice(left, left + side))
        images[row][window] = item
        box_masks[row][window] = True
        pixel_masks[row][window] = item > 0
        for _ in range(distractors):
            kind = DISTRACTOR_KINDS[int(distractor_rng.integers(len(DISTRACTOR_KINDS)))]
            d_top, d_left = _place_outside(distractor_rng, canvas, patch, boxes[row])
            region = images[row, d_top : d_top + patch, d_left : d_left + patch]
            np.maximum(region, shapes[kind](distractor_rng, patch, max_value), out=region)
    return images, box_masks, pixel_masks, boxes


def _place_outside(rng: np.random.Generator, canvas: int, patch: int, box: np.ndarray) -> tuple[int, int]:
    """A uniformly random top-left corner of a ``patch`` square in the canvas that misses ``box``."""
    top, left, bottom, right = (int(v) for v in box)
    for _ in range(_MAX_PLACEMENT_TRIES):
        d_top, d_left = (int(v) for v in rng.integers(0, canvas - patch + 1, size=2))
        if d_top + patch <= top or d_top >= bottom or d_left + patch <= left or d_left >= right:
            return d_top, d_left
    raise ValueError(f"no room for a {patch}x{patch} distractor beside the item box {tuple(box)} in a {canvas} canvas")


def _noise_patch(rng: np.random.Generator, patch: int, max_value: float) -> np.ndarray:
    """Salt noise: each pixel inked with probability 1/2 at a uniform grey level in ``1..max_value``."""
    levels = rng.integers(1, int(max_value) + 1, size=(patch, patch))
    return np.where(rng.random((patch, patch)) < 0.5, levels, 0).astype(np.float64)


def _blob_patch(rng: np.random.Generator, patch: int, max_value: float) -> np.ndarray:
    """A Gaussian spot of random centre, width and peak, in whole grey levels."""
    centre = rng.uniform(0.25 * patch, 0.75 * patch, size=2)
    width = rng.uniform(0.12 * patch, 0.3 * patch)
    peak = rng.uniform(0.5, 1.0) * max_value
    rows, cols = np.mgrid[0:patch, 0:patch]
    spot = peak * np.exp(-((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2) / (2.0 * width**2))
    return np.rint(spot)
