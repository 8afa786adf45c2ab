"""The one backward pass behind every gradient method (Ancona et al., ICLR 2018, Sec. 3, Table 1).

``modified_gradient`` returns d S_c / d x evaluated at ``points`` with the chain rule's local derivative of
each elementwise nonlinearity replaced by ``rule`` (plain autograd when ``rule`` is ``None``). Methods turn
that into attributions: Gradient*Input multiplies by x, eps-LRP by x (with :class:`~gradattr.rules.Epsilon`),
DeepLIFT by (x - x̄) (with :class:`~gradattr.rules.Rescale`), Integrated Gradients averages plain gradients
along the path.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor, nn

from gradattr.engine.hygiene import original
from gradattr.engine.interception import ReferenceMismatchError, RuleMode
from gradattr.engine.recurrent import GateProducts, check_gate_products
from gradattr.memory import bytes_per_row, in_row_chunks, might_exceed_budget, row_limit
from gradattr.rulesets import RuleSet


class Forward(Protocol):
    """The model as a function of the attributed tensors.

    ``points`` are tensors shaped like the attributed ones with ``K`` rows; ``index`` (LongTensor(K)) says
    which sample of the batch each row belongs to (for targets and for inputs that are not attributed).
    """

    model: nn.Module

    def output(self, points: tuple[Tensor, ...], index: Tensor) -> Tensor:
        """The model's raw output for these rows, shape (K, C) or (K,)."""
        ...

    def score(self, output: Tensor, index: Tensor) -> Tensor:
        """The target output S_c of each row, shape (K,)."""
        ...


def modified_gradient(
    forward: Forward,
    points: tuple[Tensor, ...],
    index: Tensor,
    rules: RuleSet | None = None,
    reference: tuple[Tensor, ...] | None = None,
    *,
    strict: bool = True,
    gates: GateProducts = "product",
    relevance: bool = False,
) -> tuple[Tensor, ...]:
    """Gradient of the target score w.r.t. ``points`` with the rule set ``rules`` at every op call.

    Args:
        forward: the model as a function of the attributed tensors (see :class:`Forward`).
        points: tensors with ``K`` rows where the gradient is taken.
        index: LongTensor(K), the sample each row belongs to.
        rules: the rule set (:mod:`gradattr.rulesets`); ``None`` gives the plain gradient (no interception).
        reference: for rule sets that need one (DeepLIFT), the baseline points, each with 1 row (shared by all
            rows: one cheap forward pass when all are) or ``K`` rows.
        strict: an op without a correct rule raises :class:`UnsupportedOperationError`; ``False`` warns.
        gates: gate products of recurrent cells (LSTM/GRU): ``"product"`` differentiates both factors
            (Ancona et al. 2018, Sec. 4.2), ``"signal"`` treats the gate as a constant (Arras et al. 2017);
            see :mod:`gradattr.engine.recurrent`.
        relevance: return LRP's relevance ``points ⊙ g`` plus what first-layer rules not proportional to the
            input (flat, w², zB) hand to it directly (:mod:`gradattr.engine.probes`), instead of ``g``.

    Returns:
        One tensor per point tensor, same shape: the (modified) gradient of sum_k S_c(points_k).

    The rows go through the model in passes that fit the memory budget (:mod:`gradattr.memory`); a pass that
    runs out of memory is split and retried.
    """
    check_gate_products(gates)
    rows = index.numel()

    def part(rows_: slice) -> tuple[Tensor, ...]:
        references = None if reference is None else tuple(r if r.shape[0] == 1 else r[rows_] for r in reference)
        return _modified_gradient(
            forward, tuple(p[rows_] for p in points), index[rows_], rules, references, strict, gates, relevance
        )

    parts = in_row_chunks(rows, rows_per_pass(forward, points, index), part)
    return parts[0] if len(parts) == 1 else tuple(torch.cat(pieces) for pieces in zip(*parts, strict=True))


def rows_per_pass(forward: Forward, points: tuple[Tensor, ...], index: Tensor) -> int:
    """How many of the ``K`` rows of ``points`` one pass may take under the memory budget: all of them when the
    pass is far below the budget (no measuring), when there are too few rows to measure, or when the measuring
    pass fails (the real pass then reports the error). The measuring passes (2 and 4 rows, once per model and
    input shape) run the model's forward hooks like any forward pass."""
    if index.numel() <= PROBE_ROWS[1] or not might_exceed_budget(points):
        return index.numel()

    def run(rows: int) -> Tensor:
        leaves = tuple(p[:rows].detach().requires_grad_() for p in points)
        return forward.output(leaves, index[:rows])

    try:
        return row_limit(original(forward.model), points, run)
    except Exception:
        return index.numel()


def row_bytes(forward: Forward, points: tuple[Tensor, ...], index: Tensor) -> int | None:
    """The measured memory of one row of a pass over ``points`` (:func:`gradattr.memory.bytes_per_row`: what
    autograd saves per row, doubled for the backward pass; measured once per model and input shape, the rows
    repeated to the :data:`PROBE_ROWS` the measuring passes need), or ``None`` when a measuring pass fails."""
    rows = torch.arange(PROBE_ROWS[1], device=index.device) % index.numel()
    probe = tuple(p[rows] for p in points)

    def run(k: int) -> Tensor:
        return forward.output(tuple(p[:k].detach().requires_grad_() for p in probe), index[rows][:k])

    key = tuple((tuple(p.shape[1:]), p.dtype, str(p.device)) for p in points)
    try:
        return bytes_per_row(original(forward.model), run, key)
    except Exception:
        return None


PROBE_ROWS = (2, 4)
"""Rows of the two measuring passes (not 1: models that squeeze() behave differently for a batch of one)."""


def _modified_gradient(
    forward: Forward,
    points: tuple[Tensor, ...],
    index: Tensor,
    rules: RuleSet | None,
    reference: tuple[Tensor, ...] | None,
    strict: bool,
    gates: GateProducts,
    relevance: bool = False,
) -> tuple[Tensor, ...]:
    if rules is None:
        return _backward(forward, points, index, None)
    if not rules.needs_reference:
        mode = RuleMode(forward.model, rules, strict=strict, gates=gates)
        return _backward(forward, points, index, mode, relevance)
    if reference is None:
        raise ValueError(f"rule set {rules.name!r} needs reference points (the baseline)")
    shared = index.numel() > 1 and all(r.shape[0] == 1 for r in reference)
    if not shared:  # some inputs have per-sample baselines: repeat the shared ones row by row to match
        reference = tuple(r.expand(p.shape) for r, p in zip(reference, points, strict=True))
    try:
        return _backward_with_references(forward, points, index, rules, reference, shared, strict, gates)
    except ReferenceMismatchError:
        if not shared:
            raise
    # The model behaves differently for a batch of one (e.g. squeeze()): record the full batch instead.
    expanded = tuple(r.expand(p.shape) for r, p in zip(reference, points, strict=True))
    return _backward_with_references(forward, points, index, rules, expanded, False, strict, gates)


def _backward_with_references(
    forward: Forward,
    points: tuple[Tensor, ...],
    index: Tensor,
    rules: RuleSet,
    reference: tuple[Tensor, ...],
    shared: bool,
    strict: bool,
    gates: GateProducts,
) -> tuple[Tensor, ...]:
    """Record every rule site's inputs in a pass over the baseline (one row when it is shared), then the
    pass over ``points`` with those references."""
    leaves = tuple(r.detach().requires_grad_() for r in reference)
    recording = RuleMode(forward.model, rules, recording=True, strict=strict, gates=gates)
    with torch.enable_grad(), recording:
        forward.output(leaves, index[:1] if shared else index)
    mode = RuleMode(forward.model, rules, references=recording.records, strict=strict, gates=gates)
    return _backward(forward, points, index, mode)


def _backward(
    forward: Forward, points: tuple[Tensor, ...], index: Tensor, mode: RuleMode | None, relevance: bool = False
) -> tuple[Tensor, ...]:
    leaves = tuple(p.detach().requires_grad_() for p in points)
    probes: tuple[Tensor, ...] = ()
    if relevance and mode is not None and mode.ruleset.needs_probe:
        probes = tuple(torch.zeros_like(p, requires_grad=True) for p in leaves)
        for leaf, probe in zip(leaves, probes, strict=True):
            mode.probes.add(leaf, probe)
    with torch.enable_grad():
        if mode is None:
            scores = forward.score(forward.output(leaves, index), index)
        else:
            with mode:
                output = forward.output(leaves, index)
            mode.check_complete()
            scores = forward.score(output, index)
        if not scores.requires_grad:
            return tuple(torch.zeros_like(p) for p in points)
        grads = torch.autograd.grad(scores, leaves + probes, torch.ones_like(scores), allow_unused=True)
    gradients = tuple(torch.zeros_like(p) if g is None else g for p, g in zip(points, grads, strict=False))
    if not relevance:
        return gradients
    direct = grads[len(leaves) :] or (None,) * len(leaves)
    return tuple(p * g if d is None else p * g + d for p, g, d in zip(points, gradients, direct, strict=True))
