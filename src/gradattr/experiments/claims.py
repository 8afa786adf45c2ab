"""The paper's claims checked on one trained model: "paper claim vs our measurement".

Ancona et al. (ICLR 2018): Prop. 1 (ε-LRP = Gradient*Input on ReLU networks), Prop. 2 (DeepLIFT with a zero
baseline = Gradient*Input on ReLU networks *without biases*), completeness of DeepLIFT and Integrated
Gradients (Sec. 3), DeepLIFT ≈ Integrated Gradients (Sec. 4, correlations ≈ 1), and Occlusion-1 best at
small n but not at large n in Sensitivity-n (Sec. 4.1, Fig. 3-4). Each check returns a :class:`Claim`
with the measured number and a verdict; a check whose methods could not run says so.

Where a claim applies is read off the ops the model called in the study (:class:`OpsMet`), not off flags: the
propositions need ReLU as the only nonlinearity. A claim that fails, or holds only approximately, for a known
reason carries it: max pooling routed to the arg-max (DeepLIFT), gates of a recurrent cell (DeepLIFT,
Sec. 4.2), the Riemann sum's error (Integrated Gradients).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from gradattr.experiments.study import SMALL_EPSILON, ModelStudy, OpsMet, op_counts

HOLDS, FAILS, APPROXIMATE, NOT_APPLICABLE = "holds", "does not hold", "approximate", "not applicable"

EQUALITY_TOLERANCE = 1e-3
"""Prop. 1 (at ε = 1e-8) and Prop. 2: ‖R_a - R_b‖₂ / ‖R_b‖₂ below this on every sample counts as equal."""
COMPLETENESS_TOLERANCE = 1e-4
"""DeepLIFT: relative completeness gap below this counts as exact (float32 rounding)."""
RIEMANN_TOLERANCE = 0.05
"""Integrated Gradients: relative completeness gap below this counts as complete up to the Riemann error."""
AGREEMENT_THRESHOLD = 0.9
"""DeepLIFT ≈ IG: mean per-sample Pearson correlation above this counts as agreeing."""


@dataclass(frozen=True)
class Claim:
    """One row of the table: what the paper says, what we measured, whether they agree, and why not where the
    cause is known (``reason``: empty otherwise)."""

    claim: str
    expected: str
    measured: str
    verdict: str
    value: float | None = None
    reason: str = ""

    def to_dict(self) -> dict[str, str | float | None]:
        row = asdict(self)
        if isinstance(self.value, float) and not math.isfinite(self.value):
            row["value"] = None
        return row


def _not_relu(ops: OpsMet) -> str:
    """Why Prop. 1 and 2 do not apply: the ops met that are not ReLUs (or max pooling)."""
    return f"not a ReLU network: nonlinearities met: {ops.summary()}"


def _missing(study: ModelStudy, *methods: str) -> str | None:
    """``n/a: <reason>`` when one of ``methods`` could not be measured on this model."""
    for method in methods:
        if method in study.unavailable:
            return f"n/a: {method} unavailable ({study.unavailable[method]})"
        if method not in study.methods:
            return f"n/a: {method} not run"
    return None


def prop1(study: ModelStudy) -> Claim:
    """Prop. 1: ε-LRP equals Gradient*Input when all nonlinearities are ReLU (any biases), up to ε terms."""
    claim = "Prop. 1: ε-LRP = Gradient*Input on ReLU networks (ε → 0)"
    missing = _missing(study, "epsilon_lrp", "gradient_x_input")
    if missing:
        return Claim(claim, "equal as ε → 0", missing, missing)
    default = study.equalities["epsilon_lrp vs gradient_x_input"]
    if not study.ops.rectifiers_only:
        measured = f"rel. difference {default:.1e}"
        return Claim(claim, "applies to ReLU-only networks", measured, NOT_APPLICABLE, default, _not_relu(study.ops))
    value = study.equalities[f"epsilon_lrp with epsilon {SMALL_EPSILON:g} vs gradient_x_input"]
    measured = f"rel. difference {default:.1e} at ε = 1e-4, {value:.1e} at ε = {SMALL_EPSILON:g}"
    return Claim(claim, "equal as ε → 0", measured, HOLDS if value < EQUALITY_TOLERANCE else FAILS, value)


def prop2(study: ModelStudy) -> Claim:
    """Prop. 2: DeepLIFT (zero baseline) equals Gradient*Input on ReLU networks without additive biases."""
    claim = "Prop. 2: DeepLIFT = Gradient*Input on bias-free ReLU networks (zero baseline)"
    missing = _missing(study, "deeplift", "gradient_x_input")
    if missing:
        return Claim(claim, "equal without biases", missing, missing)
    with_biases = study.equalities["deeplift vs gradient_x_input"]
    if not study.ops.rectifiers_only:
        measured = f"rel. difference {with_biases:.1e}"
        reason = _not_relu(study.ops)
        return Claim(claim, "applies to ReLU-only networks", measured, NOT_APPLICABLE, with_biases, reason)
    free = study.equalities["deeplift vs gradient_x_input, biases zeroed"]
    measured = f"rel. difference {free:.1e} with biases zeroed; {with_biases:.1e} as trained (biases)"
    verdict = HOLDS if free < EQUALITY_TOLERANCE else FAILS
    return Claim(claim, "equal without biases; differs with them", measured, verdict, free)


def deeplift_completeness(study: ModelStudy) -> Claim:
    """DeepLIFT (Rescale) is complete: Σ R = S_c(x) - S_c(x̄), exactly for elementwise nonlinearities.

    Known causes of a gap: gate products inside recurrent cells (Ancona et al., Sec. 4.2: approximate), and max
    pooling routed to the arg-max (``max_pooling="route"``, the paper's code): the gradient of the max, not
    (max(x) − max(x̄)) spread over its inputs; ``max_pooling="exact"`` (a tree of a + relu(b − a)) is complete.
    """
    claim = "DeepLIFT is complete: Σ R = S_c(x) − S_c(0)"
    missing = _missing(study, "deeplift")
    if missing:
        return Claim(claim, "exact", missing, missing)
    value = study.completeness["deeplift"]
    measured = f"relative gap {value:.1e}"
    if study.ops.gated:
        reason = (
            f"multiplicative gates in {op_counts(study.ops.inventory.of_kind('recurrent'))}: the Rescale rule does not "
            "split a gate's product exactly (Ancona et al., Sec. 4.2)"
        )
        return Claim(claim, "approximate (multiplicative gates, Sec. 4.2)", measured, APPROXIMATE, value, reason)
    if value < COMPLETENESS_TOLERANCE:
        return Claim(claim, "exact", measured, HOLDS, value)
    reason = ""
    max_pooling = study.method_options.get("deeplift", {}).get("max_pooling", "route")
    if study.ops.max_pooling and max_pooling == "route":
        reason = (
            f"max pooling ({op_counts(study.ops.max_pooling)}) routes the difference through the arg-max (gradient "
            "rule), which is not complete; max_pooling='exact' is"
        )
    return Claim(claim, "exact", measured, FAILS, value, reason)


def ig_completeness(study: ModelStudy) -> Claim:
    """Integrated Gradients is complete up to the error of its Riemann sum.

    A gap above the tolerance is the Riemann error of the m-step sum; it falls like 1/m once the steps resolve
    the path, so about ⌈m · gap / tolerance⌉ steps are needed (the estimate of
    :class:`~gradattr.methods.integrated_gradients.CompletenessWarning` from one count of steps).
    """
    claim = "Integrated Gradients is complete (up to the Riemann error)"
    missing = _missing(study, "integrated_gradients")
    if missing:
        return Claim(claim, "≈ 0 gap", missing, missing)
    value = study.completeness["integrated_gradients"]
    expected, measured = f"gap < {RIEMANN_TOLERANCE:g}", f"relative gap {value:.1e}"
    if value < RIEMANN_TOLERANCE:
        return Claim(claim, expected, measured, HOLDS, value)
    steps = study.method_options.get("integrated_gradients", {}).get("steps")
    if isinstance(steps, int) and math.isfinite(value):
        needed = math.ceil(steps * value / RIEMANN_TOLERANCE)
        reason = f"Riemann error of {steps} steps; about {needed} steps needed (the error falls like 1/m)"
    else:
        reason = f"Riemann error of the sum with steps={steps!r}"
    return Claim(claim, expected, measured, FAILS, value, reason)


def deeplift_vs_ig(study: ModelStudy) -> Claim:
    """DeepLIFT approximates Integrated Gradients (exact with one hidden nonlinear layer; correlation ≈ 1)."""
    claim = "DeepLIFT ≈ Integrated Gradients"
    missing = _missing(study, "deeplift", "integrated_gradients")
    if missing:
        return Claim(claim, "correlation ≈ 1", missing, missing)
    i, j = study.methods.index("deeplift"), study.methods.index("integrated_gradients")
    value = study.correlation[i][j]
    verdict = HOLDS if value > AGREEMENT_THRESHOLD else FAILS
    return Claim(claim, f"correlation > {AGREEMENT_THRESHOLD:g}", f"mean Pearson {value:.3f}", verdict, value)


def occlusion_small_vs_large_n(study: ModelStudy) -> Claim:
    """Occlusion-1 has the best Sensitivity-n at n = 1 but falls behind IG/DeepLIFT at the largest n."""
    claim = "Occlusion-1 best at n = 1, behind IG/DeepLIFT at large n"
    missing = _missing(study, "occlusion")
    rivals = [m for m in ("integrated_gradients", "deeplift") if m in study.methods]
    if missing or not rivals or study.sensitivity is None:
        reason = missing or "n/a: needs Integrated Gradients or DeepLIFT"
        return Claim(claim, "best at small n, worse at large n", reason, reason)
    methods, ns, means = study.sensitivity.pivot("mean")
    row = methods.index("occlusion")
    others = [i for i in range(len(methods)) if i != row]
    best_small = all(means[row, 0] >= means[i, 0] - 1e-9 for i in others)
    # the largest n where the correlation is defined (at n = N every subset is the whole set)
    last = max((j for j in range(len(ns)) if all(math.isfinite(means[i, j]) for i in range(len(methods)))), default=0)
    rival_large = max(means[methods.index(m), last] for m in rivals)
    worse_large = means[row, last] < rival_large
    measured = (
        f"n={ns[0]}: {means[row, 0]:.3f} (best other {max(means[i, 0] for i in others):.3f}); "
        f"n={ns[last]}: {means[row, last]:.3f} vs IG/DeepLIFT {rival_large:.3f}"
    )
    return Claim(
        claim, "best at small n, worse at large n", measured, HOLDS if best_small and worse_large else FAILS,
        float(means[row, last] - rival_large),
    )  # fmt: skip


CHECKS = (prop1, prop2, deeplift_completeness, ig_completeness, deeplift_vs_ig, occlusion_small_vs_large_n)


def paper_claims(study: ModelStudy) -> list[Claim]:
    """Every claim of the paper checked on one model's study, in the order of :data:`CHECKS`."""
    return [check(study) for check in CHECKS]
