"""The localisation benchmark's data: pasted digits among distractors, with ground-truth masks."""

from __future__ import annotations

import pytest
import torch

from gradattr.data import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, Dataset, load_digits, load_fashion_mnist
from gradattr.data.localisation import LocalisationDataset, load_localisation


@pytest.fixture(scope="module")
def data() -> LocalisationDataset:
    return load_localisation(seed=0)


def _crops(x: torch.Tensor, boxes: torch.Tensor, side: int) -> torch.Tensor:
    return torch.stack(
        [image[:, t : t + side, u : u + side] for image, (t, u, _, _) in zip(x, boxes.tolist(), strict=True)]
    )


def test_shapes_range_and_dataset_interface(data: LocalisationDataset) -> None:
    assert isinstance(data, Dataset) and data.name == "localisation-digits"
    assert data.input_shape == (1, 32, 32) and data.class_names == tuple("0123456789")
    assert data.train_x.shape[0] == 1347 and data.test_x.shape[0] == 450
    for split in ("train", "test"):
        x = getattr(data, f"{split}_x")
        assert x.dtype == torch.float32 and float(x.min()) == -1.0 and float(x.max()) <= 1.0
        for field in ("masks", "pixel_masks"):
            mask = getattr(data, f"{split}_{field}")
            assert mask.dtype == torch.bool and mask.shape == (x.shape[0], 32, 32)


def test_deterministic_from_the_seed(data: LocalisationDataset) -> None:
    again, other = load_localisation(seed=0), load_localisation(seed=1)
    assert torch.equal(data.train_x, again.train_x) and torch.equal(data.test_masks, again.test_masks)
    assert torch.equal(data.test_pixel_masks, again.test_pixel_masks) and torch.equal(data.test_y, again.test_y)
    assert not torch.equal(data.test_x, other.test_x)


def test_masks_cover_exactly_the_pasted_digit_and_labels_are_its_label(data: LocalisationDataset) -> None:
    digits = load_digits(seed=0)
    for split in ("train", "test"):
        boxes, sources = getattr(data, f"{split}_boxes"), getattr(data, f"{split}_sources")
        masks, pixels = getattr(data, f"{split}_masks"), getattr(data, f"{split}_pixel_masks")
        assert torch.equal(boxes[:, 2:] - boxes[:, :2], torch.full_like(boxes[:, :2], 8))
        assert torch.equal(masks.sum((1, 2)), torch.full((len(masks),), 64))
        rows, cols = torch.arange(32)[:, None], torch.arange(32)[None, :]
        t, u, b, r = (boxes[:, i, None, None] for i in range(4))
        assert torch.equal(masks, (rows >= t) & (rows < b) & (cols >= u) & (cols < r))
        # Zeroing everything outside the box leaves the source digit intact (and labelled as it was).
        source_x, source_y = getattr(digits, f"{split}_x"), getattr(digits, f"{split}_y")
        kept = torch.where(masks[:, None], getattr(data, f"{split}_x"), torch.tensor(-1.0))
        assert torch.equal(_crops(kept, boxes, 8), source_x[sources])
        assert torch.equal(getattr(data, f"{split}_y"), source_y[sources])
        # The pixel mask is the digit's ink, inside the box.
        assert not (pixels & ~masks).any()
        assert torch.equal(_crops(pixels[:, None], boxes, 8), source_x[sources] > -1)


def test_distractors_never_touch_the_box_and_carry_ink_outside_it(data: LocalisationDataset) -> None:
    bare = load_localisation(seed=0, distractors=0)
    for split in ("train", "test"):
        masks = getattr(data, f"{split}_masks")[:, None]
        assert torch.equal(getattr(bare, f"{split}_boxes"), getattr(data, f"{split}_boxes"))
        assert torch.equal(
            torch.where(masks, getattr(data, f"{split}_x"), 0), torch.where(masks, getattr(bare, f"{split}_x"), 0)
        )
        assert (torch.where(masks, -1.0, getattr(bare, f"{split}_x")) == -1).all()
        ink_outside = (torch.where(masks, -1.0, getattr(data, f"{split}_x")) > -1).flatten(1).any(1)
        assert ink_outside.all()


def test_copies_and_arguments() -> None:
    more = load_localisation(seed=0, copies=2, train_size=10, test_size=5, distractors=1)
    assert more.train_x.shape[0] == 20 and more.test_x.shape[0] == 5
    assert torch.equal(more.train_sources, torch.arange(10).repeat(2))
    assert not torch.equal(more.train_x[:10], more.train_x[10:])
    with pytest.raises(ValueError, match="source"):
        load_localisation(source="cifar")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="too small"):
        load_localisation(canvas=12)
    with pytest.raises(ValueError, match="distractors"):
        load_localisation(distractors=-1)


@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_variant() -> None:
    data = load_localisation(source="fashion-mnist", train_size=50, test_size=20)
    assert data.name == "localisation-fashion-mnist" and data.input_shape == (1, 56, 56)
    assert data.class_names == FASHION_MNIST_CLASSES
    source = load_fashion_mnist()
    assert torch.equal(_crops(data.test_x, data.test_boxes, 28), source.test_x[:20])
    assert torch.equal(data.test_y, source.test_y[:20]) and torch.equal(
        data.test_masks.sum((1, 2)), torch.full((20,), 784)
    )
    assert float(data.train_x.min()) == -1.0 and float(data.train_x.max()) <= 1.0
