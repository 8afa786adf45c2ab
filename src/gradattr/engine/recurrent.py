"""Fused recurrent kernels evaluated as the equivalent unrolled computation, so the rules see every gate.

``nn.LSTM``, ``nn.GRU`` and ``nn.RNN`` run as one fused op (``torch.lstm``, ``torch.gru``, ``torch.rnn_tanh``,
``torch.rnn_relu``) whose sigmoid and tanh never reach the op-level engine: without this module their plain
gradient would silently turn DeepLIFT and eps-LRP into Gradient*Input. When such a call sees an
input-dependent tensor, the engine evaluates instead the same function step by step from the call's own
arguments (the flat weights, initial states, ``batch_sizes`` of a packed sequence), with every gate
nonlinearity routed through the method's rule and the gate products written as ordinary products. The
user's module is neither read nor changed: everything comes from the intercepted call. The cell ops behind
``nn.LSTMCell``/``nn.GRUCell``/``nn.RNNCell`` (``torch.lstm_cell``, ...) get the same one-step computation, so
a user's own Python loop over cells works too.

The cells, per time step, with ``x W = x W_ih^T + b_ih`` and ``h U = h W_hh^T + b_hh`` (PyTorch's layout and
gate order):

* LSTM:  ``i, f, o = σ(·)``, ``g = tanh(·)`` of the slices of ``x W + h U``;
  ``c' = f ⊙ c + i ⊙ g``, ``h' = o ⊙ tanh(c')`` (then ``h' W_hr^T`` with ``proj_size``);
* GRU:   ``r, z = σ(x W_rz + h U_rz)``, ``n = tanh(x W_n + r ⊙ (h U_n))``, ``h' = (1 - z) ⊙ n + z ⊙ h``;
* Elman: ``h' = tanh(x W + h U)`` or ``relu(x W + h U)``.

Gate products ``gate ⊙ signal`` are not elementwise nonlinearities of one input: they multiply two
input-dependent tensors, which is outside the Rescale rule's guarantees (Ancona et al., ICLR 2018,
Sec. 4.2), so DeepLIFT's completeness holds only approximately on LSTMs and GRUs. Two conventions:

* ``gates="product"`` (default): the product keeps its gradient, which flows into both factors, and the
  rules apply to σ and tanh. This is the setting of Ancona et al. (ICLR 2018, Sec. 4.2 and 5: "rules applied
  to σ and tanh, gates multiplied as usual"), and the one their LSTM results use for eps-LRP and DeepLIFT.
* ``gates="signal"``: the gate is a constant in the backward pass; all relevance of ``gate ⊙ signal`` goes to
  the signal, none to the gate. This is the LRP-for-LSTM rule of Arras, Montavon, Müller and Samek,
  "Explaining Recurrent Neural Network Predictions in Sentiment Analysis" (WASSA 2017), combined with the
  eps-rule on the linear parts: with it eps-LRP reproduces their relevances exactly (biases absorb relevance,
  as in their ``bias_factor=0``).

Work is vectorised over the batch and, for the input projections ``x W``, over all time steps of a layer;
only the recurrence loops over time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor

GateProducts = Literal["product", "signal"]
"""How a gate product ``gate ⊙ signal`` is differentiated: both factors, or the signal only (see module doc)."""

GATE_PRODUCTS: tuple[str, ...] = get_args(GateProducts)

State = tuple[Tensor, ...]
"""A recurrent state: ``(h,)`` or, for an LSTM, ``(h, c)``; each ``(B, size)``."""


def check_gate_products(gates: object) -> None:
    """Raise ``ValueError`` unless ``gates`` names one of :data:`GATE_PRODUCTS`."""
    if gates not in GATE_PRODUCTS:
        raise ValueError(
            f"gates must be one of {', '.join(map(repr, GATE_PRODUCTS))}, got {gates!r}: 'product' differentiates "
            "gate products through both factors (Ancona et al. 2018), 'signal' treats the gate as a constant "
            "(Arras et al. 2017)"
        )


@dataclass(frozen=True)
class CellOps:
    """How an unrolled cell evaluates its nonlinearities and its gate products.

    ``nonlinearity(name, z)`` computes the elementwise op ``name`` (a resolved name such as
    ``"torch.sigmoid"``) at ``z`` with the method's rule in its backward (the intercepting mode provides it);
    ``gates`` selects the gate-product convention.
    """

    nonlinearity: Callable[[str, Tensor], Tensor]
    gates: GateProducts = "product"

    def sigmoid(self, z: Tensor) -> Tensor:
        return self.nonlinearity("torch.sigmoid", z)

    def tanh(self, z: Tensor) -> Tensor:
        return self.nonlinearity("torch.tanh", z)

    def gated(self, gate: Tensor, signal: Tensor) -> Tensor:
        """``gate ⊙ signal``; with ``gates="signal"`` no gradient (no relevance) reaches ``gate``."""
        return (gate.detach() if self.gates == "signal" else gate) * signal


@dataclass(frozen=True)
class HiddenWeights:
    """The recurrent half of a cell's weights: ``W_hh``, ``b_hh`` and the LSTM projection ``W_hr``."""

    w_hh: Tensor
    b_hh: Tensor | None = None
    w_hr: Tensor | None = None


Step = Callable[[Tensor, State, HiddenWeights, CellOps], State]
"""One time step: ``(x W_ih^T + b_ih, state, hidden weights, ops) -> new state``; the output is ``state[0]``."""


def _lstm_step(projected: Tensor, state: State, weights: HiddenWeights, ops: CellOps) -> State:
    h, c = state
    size = c.shape[1]
    pre = projected + F.linear(h, weights.w_hh, weights.b_hh)
    input_forget = ops.sigmoid(pre[:, : 2 * size])
    candidate = ops.tanh(pre[:, 2 * size : 3 * size])
    output_gate = ops.sigmoid(pre[:, 3 * size :])
    c = ops.gated(input_forget[:, size:], c) + ops.gated(input_forget[:, :size], candidate)
    h = ops.gated(output_gate, ops.tanh(c))
    if weights.w_hr is not None:
        h = F.linear(h, weights.w_hr)
    return h, c


def _gru_step(projected: Tensor, state: State, weights: HiddenWeights, ops: CellOps) -> State:
    (h,) = state
    size = h.shape[1]
    recurrent = F.linear(h, weights.w_hh, weights.b_hh)
    reset_update = ops.sigmoid(projected[:, : 2 * size] + recurrent[:, : 2 * size])
    reset, update = reset_update[:, :size], reset_update[:, size:]
    candidate = ops.tanh(projected[:, 2 * size :] + ops.gated(reset, recurrent[:, 2 * size :]))
    return (ops.gated(1 - update, candidate) + ops.gated(update, h),)


def _elman_step(activation: str, projected: Tensor, state: State, weights: HiddenWeights, ops: CellOps) -> State:
    return (ops.nonlinearity(activation, projected + F.linear(state[0], weights.w_hh, weights.b_hh)),)


@dataclass(frozen=True)
class Cell:
    """A recurrent cell kind: its time step and how many tensors its state has (LSTM: h and c)."""

    step: Step
    states: int = 1


LSTM = Cell(_lstm_step, states=2)
GRU = Cell(_gru_step)
RNN_TANH = Cell(partial(_elman_step, "torch.tanh"))
RNN_RELU = Cell(partial(_elman_step, "torch.relu"))

Expander = Callable[[tuple[Any, ...], dict[str, Any], CellOps], Any]
"""Evaluates an intercepted recurrent call ``(args, kwargs)`` unrolled, returning what the fused op returns."""

_SEQUENCE_ARGS = (
    "input",
    "hx",
    "params",
    "has_biases",
    "num_layers",
    "dropout",
    "train",
    "bidirectional",
    "batch_first",
)
_PACKED_ARGS = ("data", "batch_sizes", "hx", "params", "has_biases", "num_layers", "dropout", "train", "bidirectional")
_CELL_ARGS = ("input", "hx", "w_ih", "w_hh", "b_ih", "b_hh")


def _bind(names: Sequence[str], args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    return {**dict(zip(names, args, strict=False)), **kwargs}


def _as_state(hx: Tensor | Sequence[Tensor]) -> State:
    return (hx,) if isinstance(hx, Tensor) else tuple(hx)


def _is_packed(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """The ``data, batch_sizes`` overload: its second argument is an integer tensor, not a state."""
    second = args[1] if len(args) > 1 else kwargs.get("batch_sizes")
    return "batch_sizes" in kwargs or (isinstance(second, Tensor) and not second.is_floating_point())


def packed_batch_sizes(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Tensor | None:
    """``batch_sizes`` of a fused call on a packed sequence (rows active per time step), else ``None``."""
    if not _is_packed(args, kwargs):
        return None
    return _bind(_PACKED_ARGS, args, kwargs)["batch_sizes"]


def sequence(cell: Cell) -> Expander:
    """The expander of a fused multi-layer kernel (``torch.lstm``, ``torch.gru``, ``torch.rnn_*``).

    Both overloads: ``(input, hx, params, has_biases, num_layers, dropout, train, bidirectional,
    batch_first)`` with ``input`` ``(T, B, F)`` or ``(B, T, F)``, and the packed ``(data, batch_sizes, hx,
    ...)`` with ``data`` ``(Σ_t B_t, F)``. Returns ``(output, h_n)`` or, for an LSTM, ``(output, h_n, c_n)``.
    """

    def expand(args: tuple[Any, ...], kwargs: dict[str, Any], ops: CellOps) -> tuple[Tensor, ...]:
        packed = _is_packed(args, kwargs)
        call = _bind(_PACKED_ARGS if packed else _SEQUENCE_ARGS, args, kwargs)
        batch_first = not packed and bool(call.get("batch_first", False))
        if packed:
            data, batch_sizes = call["data"], [int(b) for b in call["batch_sizes"].tolist()]
        else:
            time_major = call["input"].transpose(0, 1) if batch_first else call["input"]
            steps, batch = time_major.shape[:2]
            data, batch_sizes = time_major.reshape(steps * batch, -1), [batch] * steps
        output, finals = _layers(
            cell,
            data,
            batch_sizes,
            _as_state(call["hx"]),
            call["params"],
            has_biases=bool(call["has_biases"]),
            num_layers=int(call["num_layers"]),
            dropout=float(call["dropout"]) if call["train"] else 0.0,
            directions=2 if call["bidirectional"] else 1,
            ops=ops,
        )
        if not packed:
            output = output.reshape(steps, batch, -1)
            output = output.transpose(0, 1) if batch_first else output
        return (output, *finals)

    return expand


def single_step(cell: Cell) -> Expander:
    """The expander of a cell op ``(input, hx, w_ih, w_hh, b_ih=None, b_hh=None)``: one step, ``(B, F)``.

    Returns ``h'`` (``torch.gru_cell``, ``torch.rnn_*_cell``) or ``(h', c')`` (``torch.lstm_cell``).
    """

    def expand(args: tuple[Any, ...], kwargs: dict[str, Any], ops: CellOps) -> Tensor | State:
        call = _bind(_CELL_ARGS, args, kwargs)
        weights = HiddenWeights(call["w_hh"], call.get("b_hh"))
        state = cell.step(F.linear(call["input"], call["w_ih"], call.get("b_ih")), _as_state(call["hx"]), weights, ops)
        return state if cell.states > 1 else state[0]

    return expand


def _layers(
    cell: Cell,
    data: Tensor,
    batch_sizes: list[int],
    initial: State,
    params: Sequence[Tensor],
    *,
    has_biases: bool,
    num_layers: int,
    dropout: float,
    directions: int,
    ops: CellOps,
) -> tuple[Tensor, State]:
    """All layers and directions over a time-major packed sequence ``data`` ``(Σ_t B_t, F)``.

    ``params`` holds, per layer and direction (``k = layer * directions + direction``), ``W_ih, W_hh``, then
    ``b_ih, b_hh`` when ``has_biases``, then ``W_hr`` with an LSTM projection (an odd count per ``k``).
    Returns the last layer's output ``(Σ_t B_t, directions * H_out)`` and each state stacked over ``k``.
    """
    per_direction = len(params) // (num_layers * directions)
    finals: list[list[Tensor]] = [[] for _ in initial]
    for layer in range(num_layers):
        if layer and dropout:
            data = F.dropout(data, dropout, training=True)
        outputs = []
        for direction in range(directions):
            k = layer * directions + direction
            w = params[k * per_direction : (k + 1) * per_direction]
            b_ih, b_hh = (w[2], w[3]) if has_biases else (None, None)
            weights = HiddenWeights(w[1], b_hh, w[-1] if per_direction % 2 else None)
            output, state = _sweep(
                cell.step,
                F.linear(data, w[0], b_ih),
                batch_sizes,
                tuple(s[k] for s in initial),
                weights,
                ops,
                reverse=direction == 1,
            )
            outputs.append(output)
            for final, s in zip(finals, state, strict=True):
                final.append(s)
        data = outputs[0] if directions == 1 else torch.cat(outputs, dim=1)
    return data, tuple(torch.stack(final) for final in finals)


def _sweep(
    step: Step,
    projected: Tensor,
    batch_sizes: list[int],
    state: State,
    weights: HiddenWeights,
    ops: CellOps,
    *,
    reverse: bool,
) -> tuple[Tensor, State]:
    """One direction of one layer: the recurrence over time, the input projection already applied.

    At step ``t`` the first ``B_t`` rows are active (packed sequences are sorted by decreasing length); the
    other rows keep their state, which is then each sequence's final state (forward) or its initial state
    until the sequence starts (reverse), as in the fused kernel.
    """
    inputs = projected.split(batch_sizes)
    outputs: list[Tensor] = [projected] * len(inputs)
    batch = state[0].shape[0]
    for t in reversed(range(len(inputs))) if reverse else range(len(inputs)):
        rows = batch_sizes[t]
        new = step(inputs[t], tuple(s[:rows] for s in state), weights, ops)
        outputs[t] = new[0]
        state = new if rows == batch else tuple(torch.cat((n, s[rows:])) for n, s in zip(new, state, strict=True))
    return torch.cat(outputs), state
