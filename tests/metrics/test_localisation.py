"""Localisation metrics against a ground-truth mask: the papers' definitions written out per sample and feature,
hand-computed values, ties, chance level of random maps, and bad input."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from gradattr.metrics import (
    attribution_localisation,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
    top_k_intersection,
    topk_intersection,
)

K = 7


def per_sample(maps: np.ndarray, mask: np.ndarray) -> list[tuple[list[float], list[bool]]]:
    """(R, mask) per sample as flat Python lists: channels summed (loop) where the mask has none, one mask for
    every sample where it has no batch dimension."""
    batch, channels = maps.shape[:2]
    samples = []
    for b in range(batch):
        sample_mask = mask if mask.ndim == 2 else mask[b]
        r = [sum(float(maps[b, c, i, j]) for c in range(channels)) for i, j in np.ndindex(*maps.shape[2:])]
        samples.append((r, [bool(sample_mask[i, j]) for i, j in np.ndindex(*maps.shape[2:])]))
    return samples


def top_hits(r: list[float], m: list[bool], k: int) -> int:
    """Mask features among the k of largest R (the maps here have no ties)."""
    order = sorted(range(len(r)), key=lambda i: -r[i])
    return sum(1 for i in order[:k] if m[i])


def pointing_reference(r: list[float], m: list[bool]) -> float:
    """Zhang et al. 2018."""
    return float(m[max(range(len(r)), key=lambda i: r[i])])


def mass_reference(r: list[float], m: list[bool]) -> float:
    """Arras et al. 2022: Σ_mask R⁺ / Σ R⁺."""
    return sum(v for v, inside in zip(r, m, strict=True) if inside and v > 0) / sum(v for v in r if v > 0)


def rank_reference(r: list[float], m: list[bool]) -> float:
    """Arras et al. 2022: top-|mask| features in the mask / |mask|."""
    return top_hits(r, m, sum(m)) / sum(m)


def weighted_reference(r: list[float], m: list[bool]) -> float:
    """Kohlbrenner et al. 2020: μ · S_tot / S_in."""
    return mass_reference(r, m) * len(m) / sum(m)


CASES: list[tuple[Callable[..., torch.Tensor], Callable[[list[float], list[bool]], float]]] = [
    (pointing_game, pointing_reference),
    (relevance_mass_accuracy, mass_reference),
    (relevance_rank_accuracy, rank_reference),
    (lambda a, s: top_k_intersection(a, s, k=K), lambda r, m: top_hits(r, m, K) / K),
    (attribution_localisation, mass_reference),
    (lambda a, s: attribution_localisation(a, s, weighted=True), weighted_reference),
]


def random_case(seed: int, per_sample_mask: bool) -> tuple[np.ndarray, np.ndarray]:
    """Maps (B, C, H, W) and a 0/1 mask (B, H, W) or (H, W), non-empty, of varying share."""
    rng = np.random.default_rng(seed)
    maps = rng.standard_normal((8, 3, 6, 5))
    shape = (8, 6, 5) if per_sample_mask else (6, 5)
    mask = (rng.random(shape) < rng.uniform(0.1, 0.6, size=(*shape[:-2], 1, 1))).astype(np.float32)
    mask[..., 0, 0] = 1.0
    return maps, mask


@pytest.mark.parametrize(("metric", "reference"), CASES)
@pytest.mark.parametrize("per_sample_mask", [True, False])
@pytest.mark.parametrize("as_numpy", [True, False])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_the_definition_per_sample(
    metric: Callable[..., torch.Tensor],
    reference: Callable[[list[float], list[bool]], float],
    per_sample_mask: bool,
    as_numpy: bool,
    seed: int,
) -> None:
    maps, mask = random_case(seed, per_sample_mask)
    ours = metric(maps, mask) if as_numpy else metric(torch.from_numpy(maps), torch.from_numpy(mask).bool())
    expected = [reference(r, m) for r, m in per_sample(maps, mask)]
    assert ours.dtype == torch.float64 and ours.shape == (8,)
    assert torch.allclose(ours, torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-12)


def test_mask_with_channels_takes_features_per_channel() -> None:
    maps, mask = random_case(5, per_sample_mask=True)
    full = np.repeat(mask[:, None], 3, axis=1)
    flat_maps = maps.reshape(8, 1, 18, 5)  # every (channel, pixel) a feature of one channel
    flat_mask = full.reshape(8, 18, 5)
    for metric, reference in CASES:
        expected = [reference(r, m) for r, m in per_sample(flat_maps, flat_mask)]
        assert torch.allclose(metric(maps, full), torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-12)


def test_by_hand() -> None:
    r = torch.tensor([[3.0, 2.0, 1.0, 0.0]])
    m = torch.tensor([[1, 0, 1, 0]])
    assert pointing_game(r, m).item() == 1.0
    assert pointing_game(-r, m).item() == 0.0
    assert relevance_rank_accuracy(r, m).item() == 0.5  # top 2 = {0, 1}
    assert top_k_intersection(r, m, k=3).item() == pytest.approx(2 / 3, abs=1e-15)  # {0, 1, 2} ∩ {0, 2}
    assert top_k_intersection(r, m, k=1).item() == 1.0
    signed = torch.tensor([[2.0, -1.0, 1.0]])
    inside = torch.tensor([[True, True, False]])
    assert relevance_mass_accuracy(signed, inside).item() == pytest.approx(2 / 3, abs=1e-15)
    assert attribution_localisation(signed, inside).item() == pytest.approx(2 / 3, abs=1e-15)
    # μ = 1/2 on a mask of 1 feature out of 4: μ_w = 1/2 · 4 / 1
    assert attribution_localisation(torch.tensor([[1.0, 1.0, 0.0, 0.0]]), torch.tensor([[1, 0, 0, 0]]), True) == 2.0


def test_ties_count_in_expectation() -> None:
    m = torch.tensor([[1, 0, 0, 1]])
    assert pointing_game(torch.tensor([[1.0, 1.0, 0.0, 0.0]]), m).item() == 0.5
    assert pointing_game(torch.zeros(1, 4), m).item() == 0.5  # a constant map scores the mask's share
    # k = 2 of three features tied at 1, one of them in the mask: 2 · 1/3 expected hits
    assert top_k_intersection(torch.tensor([[1.0, 1.0, 1.0, 0.0]]), m, k=2).item() == pytest.approx(1 / 3)
    # |mask| = 2: feature 0 above the tie, one place among the two tied features (one inside)
    assert relevance_rank_accuracy(torch.tensor([[5.0, 1.0, 0.0, 1.0]]), m).item() == pytest.approx(3 / 4)


def test_no_positive_relevance_is_nan() -> None:
    r = -torch.rand(2, 1, 3, 3)
    m = torch.ones(3, 3)
    assert relevance_mass_accuracy(r, m).isnan().all()
    assert attribution_localisation(r, m, weighted=True).isnan().all()


def test_top_k_with_the_top_k_mask_of_another_map_is_topk_intersection() -> None:
    generator = torch.Generator().manual_seed(0)
    a, b = torch.rand(5, 40, generator=generator), torch.rand(5, 40, generator=generator)
    k = 9
    mask = torch.zeros(5, 40, dtype=torch.bool).scatter_(1, b.topk(k, dim=1).indices, True)
    assert torch.equal(top_k_intersection(a, mask, k=k), topk_intersection(a, b, k))


def test_random_maps_score_at_chance() -> None:
    """2000 seeded Gaussian maps on an 8x8 grid against a 4x4 square (share 1/4): pointing game, rank and top-k
    hits are means of Bernoulli-like draws (sd of the mean ≈ 0.01: band 0.04); the mass metrics average many
    features per sample (sd of the mean ≈ 0.002: band 0.01)."""
    generator = torch.Generator().manual_seed(0)
    maps = torch.randn(2000, 3, 8, 8, generator=generator)
    mask = torch.zeros(8, 8)
    mask[2:6, 3:7] = 1
    share = 0.25
    assert pointing_game(maps, mask).mean().item() == pytest.approx(share, abs=0.04)
    assert relevance_rank_accuracy(maps, mask).mean().item() == pytest.approx(share, abs=0.04)
    assert top_k_intersection(maps, mask, k=4).mean().item() == pytest.approx(share, abs=0.04)
    assert relevance_mass_accuracy(maps, mask).mean().item() == pytest.approx(share, abs=0.01)
    assert attribution_localisation(maps, mask, weighted=True).mean().item() == pytest.approx(1.0, abs=0.04)


def test_map_concentrated_in_the_mask_scores_one() -> None:
    mask = torch.zeros(4, 6, 6, dtype=torch.bool)
    mask[:, 1:3, 2:5] = True
    maps = torch.rand(4, 2, 6, 6) * mask.unsqueeze(1) + 1e-3 * mask.unsqueeze(1)
    for metric in (pointing_game, relevance_mass_accuracy, relevance_rank_accuracy, attribution_localisation):
        assert torch.equal(metric(maps, mask), torch.ones(4, dtype=torch.float64))
    assert torch.allclose(attribution_localisation(maps, mask, weighted=True), torch.full((4,), 36 / 6.0).double())


METRICS: list[Callable[..., torch.Tensor]] = [
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
    top_k_intersection,
    attribution_localisation,
]


@pytest.mark.parametrize("metric", METRICS)
def test_bad_input_raises(metric: Callable[..., torch.Tensor]) -> None:
    maps = torch.randn(2, 3, 4, 4)
    mask = torch.ones(2, 4, 4)
    kwargs = {"k": 3} if metric is top_k_intersection else {}
    with pytest.raises(TypeError, match="attributions"):
        metric(maps.tolist(), mask, **kwargs)
    with pytest.raises(TypeError, match="mask"):
        metric(maps, mask.tolist(), **kwargs)
    with pytest.raises(ValueError, match="attributions"):
        metric(torch.where(maps > 1, torch.nan, maps), mask, **kwargs)
    with pytest.raises(ValueError, match="mask must be boolean or hold only 0 and 1"):
        metric(maps, mask * 0.5, **kwargs)
    with pytest.raises(ValueError, match="does not cover"):
        metric(maps, torch.ones(2, 4, 5), **kwargs)
    empty = mask.clone()
    empty[1] = 0
    with pytest.raises(ValueError, match=r"mask is empty for samples \[1\]"):
        metric(maps, empty, **kwargs)


def test_bad_k_and_weighted_raise() -> None:
    maps, mask = torch.randn(2, 3, 4, 4), torch.ones(4, 4)
    for k in (0, 17, -1):
        with pytest.raises(ValueError, match=r"k must be in 1\.\.16"):
            top_k_intersection(maps, mask, k=k)
    for k in (2.0, True, None):
        with pytest.raises(TypeError, match="k must be an int"):
            top_k_intersection(maps, mask, k=k)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="weighted"):
        attribution_localisation(maps, mask, weighted="yes")  # type: ignore[arg-type]
