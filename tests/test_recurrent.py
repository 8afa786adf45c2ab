"""Recurrent layers: the fused LSTM/GRU/RNN kernels are evaluated unrolled, so the rules reach every gate.

The unrolled forward must equal the fused one; with the plain derivative as the "rule" its backward must
equal autograd's on the fused module; DeepLIFT and eps-LRP must really apply their rules inside the cells;
the gate-product conventions of Ancona et al. (2018) and Arras et al. (2017) must be what they claim.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import gradattr
from gradattr.engine import UnsupportedOperationError, modified_gradient
from gradattr.engine.interception import RuleMode
from gradattr.methods._problem import build_problem
from gradattr.models import text_lstm
from gradattr.rules import Nonlinearity
from gradattr.rulesets import RuleSet
from test_hygiene import assert_unchanged, snapshot

from zoo import completeness_gap

RNNS = {"LSTM": nn.LSTM, "GRU": nn.GRU, "RNN": nn.RNN}
F64 = torch.float64


@dataclass(frozen=True)
class PlainDerivative:
    """The identity "rule": f'(z). Through it the engine's backward must be autograd's."""

    needs_reference: bool = False

    def changes(self, op: Nonlinearity) -> bool:
        return True  # through the engine's rule function, not the op's own backward

    def before_gradient(self, op: Nonlinearity) -> None:
        return None

    def read(self, op: Nonlinearity, z: Tensor, z_ref: Tensor | None) -> Callable[[Tensor], Tensor]:
        slope = op.slope(z)
        return lambda out: slope

    def backward(self, op: Nonlinearity, state: Tensor, grad_out: Tensor) -> Tensor:
        return state * grad_out


class Head(nn.Module):
    """A recurrent layer followed by a linear head on the last output step (or on a packed sequence's
    padded output summed over time), optionally with user-given initial states."""

    def __init__(self, rnn: nn.Module, classes: int = 3, lengths: Tensor | None = None) -> None:
        super().__init__()
        self.rnn = rnn
        width = (2 if rnn.bidirectional else 1) * (rnn.proj_size or rnn.hidden_size)
        self.head = nn.Linear(width, classes)
        self.lengths = lengths
        self.initial: object = None

    def forward(self, x: Tensor) -> Tensor:
        if self.lengths is not None:
            packed = pack_padded_sequence(x, self.lengths, batch_first=True, enforce_sorted=False)
            padded, _ = pad_packed_sequence(self.rnn(packed)[0], batch_first=True, total_length=x.shape[1])
            return self.head(padded.sum(1))
        output = self.rnn(x, self.initial)[0] if self.initial is not None else self.rnn(x)[0]
        return self.head(output[:, -1] if self.rnn.batch_first else output[-1])


def unrolled(model: nn.Module, x: Tensor) -> tuple[Tensor, int]:
    """The model's output with every recurrent call unrolled, and the number of rule applications."""
    mode = RuleMode(model, RuleSet("plain", PlainDerivative()), strict=True)
    leaf = x.detach().requires_grad_()
    with torch.enable_grad(), mode:
        out = model(leaf)
    return out.detach(), mode.calls


def make(kind: str, layers: int, bidirectional: bool, batch_first: bool, **kw: object) -> nn.Module:
    return RNNS[kind](3, 5, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first, **kw)


CONFIGS = [(1, False, True), (1, True, False), (2, False, False), (2, True, True)]


@pytest.mark.parametrize(("layers", "bidirectional", "batch_first"), CONFIGS)
@pytest.mark.parametrize("kind", sorted(RNNS))
def test_unrolled_forward_equals_fused_kernel(kind: str, layers: int, bidirectional: bool, batch_first: bool) -> None:
    torch.manual_seed(0)
    rnn = make(kind, layers, bidirectional, batch_first).to(F64).eval()
    directions = 2 if bidirectional else 1
    batch, steps = 4, 6
    x = torch.randn(batch, steps, 3, dtype=F64) if batch_first else torch.randn(steps, batch, 3, dtype=F64)
    h0 = torch.randn(layers * directions, batch, 5, dtype=F64)
    initial = (h0, torch.randn_like(h0)) if kind == "LSTM" else h0
    for args in ((x,), (x, initial)):
        expected = rnn(*args)
        mode = RuleMode(rnn, RuleSet("plain", PlainDerivative()), strict=True)
        leaf = args[0].detach().requires_grad_()
        with torch.enable_grad(), mode:
            result = rnn(leaf, *args[1:])
        torch.testing.assert_close(result[0], expected[0], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(result[1], expected[1], rtol=1e-12, atol=1e-12)  # h_n, or (h_n, c_n)
        calls_per_step = {"LSTM": 4, "GRU": 2, "RNN": 1}[kind]
        assert mode.calls == calls_per_step * steps * layers * directions


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
def test_unrolled_float32_and_lstm_projection_match() -> None:
    torch.manual_seed(1)
    rnn = nn.LSTM(3, 6, num_layers=2, proj_size=2, bidirectional=True, batch_first=True).eval()
    model = Head(rnn).eval()
    x = torch.randn(5, 7, 3)
    out, calls = unrolled(model, x)
    torch.testing.assert_close(out, model(x), rtol=1e-5, atol=1e-6)
    assert calls == 4 * 7 * 2 * 2


@pytest.mark.parametrize("kind", sorted(RNNS))
def test_packed_sequences_unrolled_equal_fused(kind: str) -> None:
    torch.manual_seed(2)
    lengths = torch.tensor([4, 7, 2, 7, 5])
    model = Head(make(kind, 2, True, True), lengths=lengths).to(F64).eval()
    x = torch.randn(5, 7, 3, dtype=F64)
    out, calls = unrolled(model, x)
    torch.testing.assert_close(out, model(x), rtol=1e-12, atol=1e-12)
    assert calls > 0


class PackedTokens(nn.Module):
    """Right-padded token ids -> embedding -> packed by length -> bidirectional LSTM -> mean over time."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(12, 3, padding_idx=0)
        self.rnn = nn.LSTM(3, 4, bidirectional=True, batch_first=True)
        self.head = nn.Linear(8, 2)

    def forward(self, tokens: Tensor) -> Tensor:
        lengths = (tokens != 0).sum(1).cpu()
        packed = pack_padded_sequence(self.embedding(tokens), lengths, batch_first=True, enforce_sorted=False)
        padded, _ = pad_packed_sequence(self.rnn(packed)[0], batch_first=True, total_length=tokens.shape[1])
        return self.head(padded.sum(1) / lengths[:, None].to(padded.dtype))


def test_packed_deeplift_references_belong_to_each_sequence() -> None:
    """A one-row baseline pass would pack the first sample's length for everyone: its reverse-direction
    references would belong to another sequence. The engine notices the layout change and records the
    baseline for the full batch, so the shared default baseline equals an explicit per-sample one."""
    torch.manual_seed(12)
    model = scaled(PackedTokens().to(F64).eval(), 2.0)
    tokens = torch.randint(1, 12, (4, 6))
    tokens[1, 3:] = 0
    tokens[2, 1:] = 0
    tokens[3, 5:] = 0
    shared = gradattr.attribute(model, tokens, method="deeplift", target=1, layer="embedding")
    per_sample = torch.zeros(4, 6, 3, dtype=F64)
    expected = gradattr.attribute(model, tokens, method="deeplift", target=1, layer="embedding", baseline=per_sample)
    torch.testing.assert_close(shared, expected, rtol=1e-12, atol=1e-12)
    assert torch.equal(shared[2, 1:], torch.zeros(5, 3, dtype=F64))


@pytest.mark.parametrize("kind", sorted(RNNS))
def test_gradient_through_the_unrolled_path_equals_autograd_on_the_fused_module(kind: str) -> None:
    torch.manual_seed(3)
    model = Head(make(kind, 2, True, True)).to(F64).eval()
    x = torch.randn(4, 6, 3, dtype=F64)
    problem = build_problem(model, x, 1, None)
    with gradattr.engine.preserved_model(model):
        (grad,) = modified_gradient(problem, problem.inputs, problem.all_rows, RuleSet("plain", PlainDerivative()))
    leaf = x.clone().requires_grad_()
    (expected,) = torch.autograd.grad(model(leaf)[:, 1].sum(), leaf)
    torch.testing.assert_close(grad, expected, rtol=1e-10, atol=1e-12)
    gxi = gradattr.attribute(model, x, method="gradient_x_input", target=1)
    torch.testing.assert_close(x * grad, gxi, rtol=1e-10, atol=1e-12)


def scaled(model: nn.Module, factor: float) -> nn.Module:
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(factor)
    return model


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_deeplift_applies_its_rule_inside_gated_cells(kind: str) -> None:
    torch.manual_seed(4)
    model = scaled(Head(make(kind, 1, False, True)).to(F64).eval(), 2.0)
    x = torch.randn(3, 5, 3, dtype=F64)
    baseline = torch.randn(1, 5, 3, dtype=F64) * 0.5
    r = gradattr.attribute(model, x, method="deeplift", target=0, baseline=baseline)
    grad = gradattr.attribute(model, x, method="saliency", target=0, abs=False)
    plain = (x - baseline) * grad
    assert (r - plain).abs().max() > 1e-2 * plain.abs().max()
    # Σ R ≠ S_c(x) - S_c(x̄) here: gate products are outside the Rescale rule's guarantees (Ancona et al.,
    # Sec. 4.2); benchmarks/rnn_completeness.py measures by how much.


def rescale(f: Callable[[Tensor], Tensor], z: Tensor, z_ref: Tensor) -> Tensor:
    """The Rescale multiplier (f(z) - f(z̄)) / (z - z̄)."""
    return (f(z) - f(z_ref)) / (z - z_ref)


def test_deeplift_on_a_one_step_lstm_is_the_hand_written_multiplier_chain() -> None:
    """Zero initial state: c = i ⊙ g, h = o ⊙ tanh(c). Rescale at σ(i), tanh(g), σ(o), tanh(c) with the
    baseline's pre-activations, gradients of the products at x (Ancona et al.'s setting)."""
    torch.manual_seed(11)
    model = scaled(Head(nn.LSTM(3, 4, batch_first=True)).to(F64).eval(), 2.0)
    x, baseline = torch.randn(5, 1, 3, dtype=F64), torch.randn(1, 1, 3, dtype=F64)
    r = gradattr.attribute(model, x, method="deeplift", target=2, baseline=baseline)
    w_ih, b = model.rnn.weight_ih_l0.detach(), (model.rnn.bias_ih_l0 + model.rnn.bias_hh_l0).detach()
    pre, pre_ref = x[:, 0] @ w_ih.T + b, baseline[:, 0] @ w_ih.T + b
    slices = [slice(0, 4), slice(8, 12), slice(12, 16)]  # i, g, o (the forget gate meets c_0 = 0)
    (a_i, a_g, a_o), (r_i, r_g, r_o) = ([p[:, s] for s in slices] for p in (pre, pre_ref))
    i, g, o = a_i.sigmoid(), a_g.tanh(), a_o.sigmoid()
    c, c_ref = i * g, r_i.sigmoid() * r_g.tanh()
    grad_h = model.head.weight.detach()[2]
    grad_c = rescale(torch.tanh, c, c_ref) * o * grad_h
    grad_pre = torch.zeros_like(pre)
    grad_pre[:, slices[0]] = rescale(torch.sigmoid, a_i, r_i) * g * grad_c
    grad_pre[:, slices[1]] = rescale(torch.tanh, a_g, r_g) * i * grad_c
    grad_pre[:, slices[2]] = rescale(torch.sigmoid, a_o, r_o) * c.tanh() * grad_h
    expected = (x - baseline) * (grad_pre @ w_ih)[:, None]
    torch.testing.assert_close(r, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize(("steps", "layers", "bidirectional"), [(1, 1, False), (6, 2, True)])
def test_elman_rnn_deeplift_completeness_is_exact(
    nonlinearity: str, steps: int, layers: int, bidirectional: bool
) -> None:
    """No gate products: the unrolled RNN is linear ops and elementwise nonlinearities only, so DeepLIFT's
    summation-to-delta holds exactly (Ancona et al., Sec. 3), through one step or many."""
    torch.manual_seed(5)
    rnn = nn.RNN(3, 5, num_layers=layers, nonlinearity=nonlinearity, bidirectional=bidirectional, batch_first=True)
    model = scaled(Head(rnn).to(F64).eval(), 2.0)
    x = torch.randn(6, steps, 3, dtype=F64)
    baseline = torch.randn(1, steps, 3, dtype=F64)
    r = gradattr.attribute(model, x, method="deeplift", target=2, baseline=baseline)
    assert completeness_gap(model, x, baseline, r, 2).max() < 1e-9
    plain = (x - baseline) * gradattr.attribute(model, x, method="saliency", target=2, abs=False)
    assert completeness_gap(model, x, baseline, plain, 2).max() > 1e-3


def lrp_linear(h_in: Tensor, weight: Tensor, z_out: Tensor, r_out: Tensor, eps: float) -> Tensor:
    """Arras et al.'s eps-rule for z_out = h_in W^T + b, bias relevance absorbed (their bias_factor = 0):
    R_i = Σ_j h_i W_ji / (z_j + ε sign z_j) R_j, sign(0) = +1. Batched: h_in (B, I), W (J, I), z, R (B, J)."""
    sign = torch.where(z_out >= 0, 1.0, -1.0).to(z_out.dtype)
    return h_in * ((r_out / (z_out + eps * sign)) @ weight)


def arras_lstm_lrp(lstm: nn.LSTM, head: nn.Linear, x: Tensor, target: int, eps: float) -> Tensor:
    """LRP for a one-layer LSTM (zero initial state) as written by Arras et al. (WASSA 2017, their reference
    code's structure): all relevance of a gate product goes to its signal. The head's relevance is
    R_h = h ⊙ w_c, the logit's own decomposition without a stabiliser (no nonlinearity follows it)."""
    w_ih, w_hh, b_ih, b_hh = (
        p.detach() for p in (lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0)
    )
    size, steps = lstm.hidden_size, x.shape[1]
    h = [torch.zeros(x.shape[0], size, dtype=x.dtype)]
    c = [torch.zeros_like(h[0])]
    pre_g, gates = [], []
    for t in range(steps):
        pre = x[:, t] @ w_ih.T + b_ih + h[-1] @ w_hh.T + b_hh
        i, f, g, o = (
            pre.sigmoid()[:, :size],
            pre.sigmoid()[:, size : 2 * size],
            pre[:, 2 * size : 3 * size].tanh(),
            pre[:, 3 * size :].sigmoid(),
        )
        c.append(f * c[-1] + i * g)
        h.append(o * c[-1].tanh())
        pre_g.append(pre[:, 2 * size : 3 * size])
        gates.append((i, f, g))
    relevance_x = torch.zeros_like(x)
    r_h = h[-1] * head.weight.detach()[target]
    r_c = torch.zeros_like(r_h)
    w_g, u_g = w_ih[2 * size : 3 * size], w_hh[2 * size : 3 * size]
    for t in reversed(range(steps)):
        i, f, g = gates[t]
        r_c = r_c + r_h  # h_t = o ⊙ tanh(c_t): everything to the signal, identity through tanh
        identity = torch.eye(size, dtype=x.dtype)
        r_g = lrp_linear(i * g, identity, c[t + 1], r_c, eps)  # c_t = f ⊙ c_{t-1} + i ⊙ g
        r_c = lrp_linear(f * c[t], identity, c[t + 1], r_c, eps)
        relevance_x[:, t] = lrp_linear(x[:, t], w_g, pre_g[t], r_g, eps)
        r_h = lrp_linear(h[t], u_g, pre_g[t], r_g, eps)
    return relevance_x


@pytest.mark.parametrize(("steps", "epsilon", "rtol"), [(1, 1e-4, 1e-9), (4, 1e-11, 1e-6)])
def test_signal_gates_reproduce_arras_lrp_for_lstm_and_differ_from_products(
    steps: int, epsilon: float, rtol: float
) -> None:
    """One step: identical. Several steps: Arras et al. also stabilise the cell-state sum c_t when relevance
    flows on to c_{t-1}, where the modified gradient (ε only at nonlinearities, Ancona et al. Eq. 7) has no
    ε, so the two agree up to O(ε / |c|) (measured: relative gap 0.1 at ε = 1e-4, 1e-8 at ε = 1e-11)."""
    torch.manual_seed(6)
    model = Head(nn.LSTM(3, 4, batch_first=True)).to(F64).eval()
    x = torch.randn(5, steps, 3, dtype=F64)
    signal = gradattr.attribute(model, x, method="epsilon_lrp", target=1, gates="signal", epsilon=epsilon)
    expected = arras_lstm_lrp(model.rnn, model.head, x, 1, epsilon)
    torch.testing.assert_close(signal, expected, rtol=rtol, atol=1e-12)
    product = gradattr.attribute(model, x, method="epsilon_lrp", target=1, epsilon=epsilon)
    assert (signal - product).abs().max() > 1e-2 * product.abs().max()
    default = gradattr.attribute(model, x, method="epsilon_lrp", target=1, gates="product", epsilon=epsilon)
    assert torch.equal(product, default)


def test_gates_option_is_checked_and_belongs_to_epsilon_lrp() -> None:
    model = Head(nn.LSTM(3, 4, batch_first=True)).eval()
    x = torch.randn(2, 3, 3)
    with pytest.raises(ValueError, match="option gates must be 'product' or 'signal', got str 'gate'"):
        gradattr.attribute(model, x, method="epsilon_lrp", target=0, gates="gate")
    with pytest.raises(TypeError, match=r"deeplift got unknown option.*gates.*gates is an option of epsilon_lrp"):
        gradattr.attribute(model, x, method="deeplift", target=0, gates="signal")


class CellLoop(nn.Module):
    """A user's own Python loop over ``nn.LSTMCell``/``GRUCell``/``RNNCell``, sharing a fused layer's weights."""

    def __init__(self, fused: Head) -> None:
        super().__init__()
        rnn = fused.rnn
        cell_type = {nn.LSTM: nn.LSTMCell, nn.GRU: nn.GRUCell, nn.RNN: nn.RNNCell}[type(rnn)]
        self.cell = cell_type(rnn.input_size, rnn.hidden_size)
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            setattr(self.cell, name, getattr(rnn, f"{name}_l0"))
        self.head = fused.head
        self.lstm = isinstance(rnn, nn.LSTM)

    def forward(self, x: Tensor) -> Tensor:
        state = None
        for t in range(x.shape[1]):
            state = self.cell(x[:, t], state)
        return self.head(state[0] if self.lstm else state)


@pytest.mark.parametrize("kind", sorted(RNNS))
def test_cells_in_a_user_loop_match_the_fused_layer(kind: str) -> None:
    torch.manual_seed(7)
    fused = scaled(Head(make(kind, 1, False, True)).to(F64).eval(), 1.5)
    loop = CellLoop(fused).eval()
    x = torch.randn(4, 5, 3, dtype=F64)
    torch.testing.assert_close(loop(x), fused(x), rtol=1e-12, atol=1e-12)
    for method, options in (("deeplift", {"baseline": 0.1}), ("epsilon_lrp", {"gates": "signal"}), ("epsilon_lrp", {})):
        expected = gradattr.attribute(fused, x, method=method, target=0, **options)
        result = gradattr.attribute(loop, x, method=method, target=0, **options)
        torch.testing.assert_close(result, expected, rtol=1e-10, atol=1e-12)


def test_text_lstm_token_attributions_on_the_embedding() -> None:
    """Per-token relevance = attribution of the embedding output summed over the embedding dimension (the
    paper's text protocol); left padding maps to the zero embedding = the baseline, so it gets exactly 0."""
    torch.manual_seed(8)
    model = scaled(text_lstm(vocab_size=40, num_classes=2, embedding_dim=6, hidden_size=5), 2.0).to(F64).eval()
    with torch.no_grad():
        model.embedding.weight[0].zero_()  # the padding row (scaled() touched every parameter)
    tokens = torch.randint(1, 40, (3, 9))
    tokens[0, :4] = 0
    tokens[1, :2] = 0
    per_token = gradattr.attribute(model, tokens, method="deeplift", target=1, layer="embedding").sum(2)
    assert per_token.shape == (3, 9)
    assert torch.equal(per_token[0, :4], torch.zeros(4, dtype=F64)) and per_token[0, 4:].abs().min() > 0

    class OnEmbeddings(nn.Module):
        def forward(self, embedded: Tensor) -> Tensor:
            return model.fc(model.lstm(embedded)[1][0][-1])

    embedded = model.embedding(tokens).detach()
    direct = gradattr.attribute(OnEmbeddings(), embedded, method="deeplift", target=1)
    torch.testing.assert_close(per_token, direct.sum(2), rtol=1e-12, atol=1e-12)


class CumprodPooled(nn.Module):
    """LSTM outputs pooled by weights from a cumulative product over time: ``cumprod`` is unsupported."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(3, 4, num_layers=2, dropout=0.5, batch_first=True)
        self.score = nn.Linear(4, 1)
        self.head = nn.Linear(4, 2)

    def forward(self, x: Tensor) -> Tensor:
        out = self.rnn(x)[0]
        weights = torch.cumprod(self.score(out), dim=1)
        return self.head((weights * out).sum(1))


@pytest.mark.parametrize("method", ["deeplift", "epsilon_lrp"])
def test_model_hygiene_after_normal_and_raising_calls(method: str) -> None:
    torch.manual_seed(9)
    model = Head(nn.LSTM(3, 4, num_layers=2, dropout=0.5, batch_first=True)).train()  # inter-layer dropout on
    twin = copy.deepcopy(model)
    before = snapshot(model)
    x = torch.randn(3, 5, 3)
    first = gradattr.attribute(model, x, method=method, target=0)
    assert torch.equal(first, gradattr.attribute(model, x, method=method, target=0))  # eval mode: no dropout
    assert_unchanged(model, before)
    assert model.rnn.training
    torch.testing.assert_close(model.eval()(x), twin.eval()(x), rtol=0, atol=0)

    raising = CumprodPooled()
    before = snapshot(raising)
    with pytest.raises(UnsupportedOperationError, match="cumprod"):
        gradattr.attribute(raising, x, method=method, target=0)
    assert_unchanged(raising, before)
