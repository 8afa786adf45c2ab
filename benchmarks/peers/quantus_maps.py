"""gradattr's complexity metrics beside Quantus 0.6.0 on the same attributions (issue 17), partial.

Covers pointing game, relevance mass and rank accuracy (Arras et al. 2022; random 10x10 box masks) and
sparseness (Gini index, Chalasani et al. 2020), complexity (entropy of |a|/Σ|a|, Bhatt et al. 2020) and
effective complexity (count of |a| > eps, Nguyen & Martínez 2020). Quantus is run with ``abs=True,
normalise=False`` so both sides read the same |a|; the values need no model output, so a small MNIST-sized MLP is
passed only to satisfy Quantus' call signature. Batch 64, attributions drawn once from a seeded normal.

Also random logit (Sixt et al. 2020) and non-sensitivity (Nguyen & Martínez 2020) on a seeded mnist_mlp with
gradattr's saliency as the explanation on both sides (``--only-model`` runs just these two, with their timings:
best of 3 wall seconds at 1 torch thread). Quantus RandomLogit draws the other class as the u-th of the C - 1
classes ≠ c with u = np.random.randint(0, C - 1), i.e. c' = u + [u ≥ c], gradattr's rule; the script replays
gradattr's u (torch.Generator) by patching np.random.randint during Quantus' call only.

Run in the peer venv: ``PYTHONPATH=src /work/peers-venv/bin/python benchmarks/peers/quantus_maps.py --out F``.
"""

from __future__ import annotations

import argparse
import math
import time
from unittest import mock

import numpy as np
import quantus
import scipy.stats
import skimage.metrics
import torch

import gradattr
from gradattr.metrics import (
    attribution_localisation,
    complexity,
    effective_complexity,
    non_sensitivity,
    pointing_game,
    random_logit,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
    sparseness,
    top_k_intersection,
)
from gradattr.models import mnist_mlp

MODEL_NOTE = """
Random logit: with Spearman correlation (Quantus correlation_spearman, gradattr similarity="spearman") and the
replayed classes the two agree, and so does scipy.stats.spearmanr for sample 0 with c' = u + [u ≥ c] by hand.
Quantus' default ssim flattens each map to a 784-vector and runs scikit-image's 1-D SSIM (uniform window 7,
joint data range of the two maps, no per-map scaling); Sixt et al. compare the 2-D maps by SSIM as in Adebayo et
al. (each map scaled to [0, 1], Gaussian window σ = 1.5): the hand-derived SSIM for sample 0 is that, on the
28x28 maps (scikit-image, gaussian_weights=True, use_sample_covariance=False, data_range=1).
Non-sensitivity: Quantus NonSensitivity(features_in_step=1, perturb_baseline="black", eps=1e-5, abs=True,
normalise=False); "black" is each sample's minimum, 0 here (the inputs have a zero border), gradattr's
baseline=0.0. Quantus tests |R_i| < eps and |Δf| < eps, gradattr ≤ eps: equal unless a value sits exactly on eps.
The hand-derived value for sample 0 removes each pixel in an explicit loop and counts the mismatches of the
target logit, as gradattr does. Quantus' __call__ defaults to softmax=True: it tests the change of the target's
probability, which moves far less than the logit, so many more features count as "no dependence" (the second
row); with softmax=False it reads the logits and agrees.
Times: gradattr's random_logit explains both classes (two saliency passes), Quantus, given a_batch, only c'; the
two ssim rows compute different things (Quantus' 1-D SSIM is cheaper than the 2-D Gaussian one). Both
non-sensitivity sides run one forward pass per pixel (784 of batch 64) and are forward-bound. On 2 shared cores
the ratios vary from run to run (random_logit: 0.4x to 2.7x over four runs; non_sensitivity 1.0x to 1.1x).
"""

NOTE = """
Quantus' RelevanceMassAccuracy divides the signed sum inside the mask by the signed total, Σ_mask a / Σ a, which
is unbounded when Σ a is near 0 (hence the large difference on signed maps). Arras et al. (2022) use positive
relevance, Σ_mask a⁺ / Σ a⁺: Quantus given a⁺ agrees with gradattr, and so does the explicit loop for sample 0.
"""


def _gini_by_hand(a: np.ndarray) -> float:
    """Σ_i (2i − n − 1) a_(i) / (n Σ a) over |a| sorted ascending, i = 1..n (Chalasani et al. 2020)."""
    v = np.sort(np.abs(a).ravel().astype(np.float64))
    n = v.size
    return float(sum((2 * (i + 1) - n - 1) * v[i] for i in range(n)) / (n * v.sum()))


def _entropy_by_hand(a: np.ndarray) -> float:
    """−Σ p_i ln p_i with p = |a| / Σ|a| (Bhatt et al. 2020)."""
    p = np.abs(a).ravel().astype(np.float64)
    p = p / p.sum()
    return float(-sum(q * math.log(q) for q in p if q > 0))


def _row(name: str, ours: torch.Tensor, theirs: list, hand: float, settings: str) -> tuple:
    """Max |gradattr − Quantus| over the batch and |gradattr − hand-derived| at sample 0."""
    ours_np = ours.double().numpy()
    diff = float(np.max(np.abs(ours_np - np.asarray(theirs, dtype=np.float64))))
    return name, settings, diff, abs(float(ours_np[0]) - hand)


def _best_of(fn, repeats: int = 3) -> float:
    """Minimum wall seconds of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _explain(model, inputs, targets, **kwargs) -> np.ndarray:
    """gradattr's saliency (|∂S_c/∂x|) in Quantus' explain_func signature."""
    x = torch.as_tensor(np.asarray(inputs), dtype=torch.float32)
    return gradattr.attribute(model, x, "saliency", target=torch.as_tensor(np.asarray(targets))).detach().numpy()


def model_rows() -> tuple[list, list]:
    """Random logit and non-sensitivity beside Quantus on a seeded mnist_mlp; value rows and timing rows."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = mnist_mlp((1, 28, 28), 10).eval()
    x = torch.rand(64, 1, 28, 28)
    x[:, :, :4] = 0.0  # a zero border, as in MNIST: removing those pixels changes nothing
    y = torch.randint(0, 10, (64,))
    a = _explain(model, x.numpy(), y.numpy())
    kw = {"model": model, "x_batch": x.numpy(), "y_batch": y.numpy(), "a_batch": a, "device": "cpu"}
    kw["explain_func"] = _explain
    seed = 0
    draw = torch.randint(0, 9, (64,), generator=torch.Generator().manual_seed(seed)).numpy()
    real_randint = np.random.randint

    def replayed(low, high=None, size=None, *args, **kwargs):
        if (low, high, size) == (0, 9, 64):
            return draw.copy()
        return real_randint(low, high, size, *args, **kwargs)

    def quantus_logit(similarity_func):
        metric = quantus.RandomLogit(
            similarity_func=similarity_func, num_classes=10, abs=False, normalise=False, disable_warnings=True
        )
        with mock.patch.object(np.random, "randint", replayed):
            return metric(**kw)

    rows, timings = [], []
    y0 = int(y[0])
    other0 = int(draw[0]) + int(draw[0] >= y0)
    a_other0 = _explain(model, x[:1].numpy(), np.array([other0]))[0, 0].astype(np.float64)
    a0 = a[0, 0].astype(np.float64)
    hand_spearman = float(scipy.stats.spearmanr(a0.ravel(), a_other0.ravel())[0])

    def scaled(m: np.ndarray) -> np.ndarray:
        return (m - m.min()) / (m.max() - m.min())

    hand_ssim = float(
        skimage.metrics.structural_similarity(
            scaled(a0), scaled(a_other0), gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0
        )
    )
    ours_logit = {
        sim: (lambda sim=sim: random_logit(model, x, "saliency", y, similarity=sim, seed=seed))
        for sim in ("spearman", "ssim")
    }
    theirs_logit = {
        "spearman": lambda: quantus_logit(quantus.similarity_func.correlation_spearman),
        "ssim": lambda: quantus_logit(quantus.similarity_func.ssim),
    }
    for sim, hand in (("spearman", hand_spearman), ("ssim", hand_ssim)):
        settings = f"RandomLogit(similarity_func={sim if sim == 'ssim' else 'correlation_spearman'}, replayed draw)"
        rows.append(_row(f"random_logit ({sim})", ours_logit[sim](), theirs_logit[sim](), hand, settings))
    ns_metric = quantus.NonSensitivity(
        eps=1e-5, features_in_step=1, perturb_baseline="black", abs=True, normalise=False, disable_warnings=True
    )

    def ours_ns():
        return non_sensitivity(model, x, torch.as_tensor(a), y, baseline=0.0, eps=1e-5)

    with torch.no_grad():
        ref = model(x[:1])[0, y0].double()
        hand_ns = 0
        for i in range(784):
            xi = x[:1].clone().view(1, -1)
            xi[0, i] = 0.0
            change = abs(float(model(xi.view(1, 1, 28, 28))[0, y0].double() - ref))
            hand_ns += (abs(a0.ravel()[i]) <= 1e-5) != (change <= 1e-5)
    ns_settings = 'NonSensitivity(features_in_step=1, perturb_baseline="black", eps=1e-5, abs=True, normalise=False)'
    ns_logits = ns_metric(**kw, softmax=False)
    rows.append(_row("non_sensitivity", ours_ns(), ns_logits, float(hand_ns), ns_settings + ", softmax=False"))
    rows.append(
        _row("non_sensitivity", ours_ns(), ns_metric(**kw), float(hand_ns), ns_settings + ", softmax=True (default)")
    )
    for name, ours_fn, theirs_fn in (
        ("random_logit (spearman)", ours_logit["spearman"], theirs_logit["spearman"]),
        ("random_logit (ssim)", ours_logit["ssim"], theirs_logit["ssim"]),
        ("non_sensitivity", ours_ns, lambda: ns_metric(**kw, softmax=False)),
    ):
        t_ours, t_theirs = _best_of(ours_fn), _best_of(theirs_fn)
        timings.append((name, t_ours, t_theirs))
    return rows, timings


def _table(rows: list) -> str:
    lines = [
        "| metric | Quantus class + settings | max abs diff vs Quantus (64 samples) "
        "| abs diff vs hand-derived (sample 0) |",
        "|---|---|---|---|",
    ]
    for name, settings_text, diff, hand_diff in rows:
        lines.append(f"| {name} | {settings_text} | {diff:.2e} | {hand_diff:.2e} |")
    return "\n".join(lines) + "\n"


def _timing_table(timings: list) -> str:
    lines = [
        "| metric | gradattr s | Quantus s | ratio (Quantus / gradattr) |",
        "|---|---|---|---|",
    ]
    for name, t_ours, t_theirs in timings:
        lines.append(f"| {name} | {t_ours:.4f} | {t_theirs:.4f} | {t_theirs / t_ours:.1f}x |")
    return "\n".join(lines) + "\n"


def main() -> None:
    """Compare per-sample values and write a Markdown table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=None)
    parser.add_argument("--only-model", action="store_true", help="only random_logit and non_sensitivity")
    args = parser.parse_args()
    rows, timings = model_rows()
    model_text = (
        "## Random logit and non-sensitivity (seeded mnist_mlp, saliency, batch 64)\n\n"
        + _table(rows)
        + "\nTimes: best of 3 wall seconds, 1 torch thread, both sides explaining with gradattr's saliency.\n\n"
        + _timing_table(timings)
        + MODEL_NOTE
    )
    print(model_text)
    if args.only_model:
        if args.out:
            with open(args.out) as f:
                old = f.read().split("## Random logit and non-sensitivity")[0].rstrip("\n")
            with open(args.out, "w") as f:
                f.write(old + "\n\n" + model_text)
        return
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)).eval()
    x = torch.rand(64, 1, 28, 28)
    y = torch.randint(0, 10, (64,))
    a = torch.randn(64, 1, 28, 28)
    a[:, :, :4] = 0.0
    kw = {"model": model, "x_batch": x.numpy(), "y_batch": y.numpy(), "a_batch": a.numpy(), "device": "cpu"}
    settings = {"abs": True, "normalise": False, "disable_warnings": True}
    rows = []
    for name, ours, theirs, hand in (
        ("sparseness", sparseness(a), quantus.Sparseness(**settings)(**kw), _gini_by_hand(a[0].numpy())),
        ("complexity", complexity(a), quantus.Complexity(**settings)(**kw), _entropy_by_hand(a[0].numpy())),
        (
            "effective_complexity",
            effective_complexity(a, eps=1e-5),
            quantus.EffectiveComplexity(eps=1e-5, **settings)(**kw),
            float((np.abs(a[0].numpy()) > 1e-5).sum()),
        ),
    ):
        rows.append(_row(name, ours, theirs, hand, "abs=True, normalise=False"))
    s = torch.zeros(64, 1, 28, 28, dtype=torch.bool)
    for i in range(64):
        r, c = int(torch.randint(0, 18, ())), int(torch.randint(0, 18, ()))
        s[i, :, r : r + 10, c : c + 10] = True
    kw["s_batch"] = s.numpy().astype(np.float32)
    loc = {"abs": False, "normalise": False, "disable_warnings": True}
    for name, ours, theirs in (
        ("pointing_game", pointing_game(a, s), quantus.PointingGame(**loc)(**kw)),
        ("relevance_mass_accuracy", relevance_mass_accuracy(a, s), quantus.RelevanceMassAccuracy(**loc)(**kw)),
        ("relevance_rank_accuracy", relevance_rank_accuracy(a, s), quantus.RelevanceRankAccuracy(**loc)(**kw)),
        ("top_k_intersection (k=100)", top_k_intersection(a, s, k=100), quantus.TopKIntersection(k=100, **loc)(**kw)),
        (
            "attribution_localisation",
            attribution_localisation(a, s),
            quantus.AttributionLocalisation(positive_attributions=True, weighted=False, **loc)(**kw),
        ),
    ):
        rows.append(_row(name, ours, theirs, float("nan"), "abs=False, normalise=False"))
    a0, s0 = a[0, 0].double().numpy(), s[0, 0].numpy()
    hand_mass = sum(max(v, 0.0) for v in a0[s0]) / sum(max(v, 0.0) for v in a0.ravel())
    quantus_positive = quantus.RelevanceMassAccuracy(**loc)(**{**kw, "a_batch": a.clamp(min=0).numpy()})
    rows.append(
        _row("relevance_mass_accuracy", relevance_mass_accuracy(a, s), quantus_positive, hand_mass, "on a⁺, abs=False")
    )
    text = _table(rows)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(
                "# gradattr vs Quantus 0.6.0: complexity and localisation metrics (partial)\n\n"
                + text
                + NOTE
                + "\n"
                + model_text
            )


if __name__ == "__main__":
    main()
