"""Each new rule against an independent reference written out by hand from its definition (SPEC "Modern
ops", "LRP rules at linear ops"): products (Shapley split, uniform), softmax and layer norm (DeepLIFT's
decomposition op by op; AttnLRP's statistic held constant), CP-LRP, hand-written norms and GELUs (the rule
of what they compute), the ε layer rule, exact max pooling."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import gradattr
from zoo_modern import HandRMSNorm, NewGELU

F64 = torch.float64
EXACT = {"rtol": 1e-10, "atol": 1e-12}


def seeded(seed: int = 0) -> None:
    torch.manual_seed(seed)


class Bilinear(nn.Module):
    """f(x) = v · ((W1 x) ⊙ (W2 x))."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 3, bias=False), nn.Linear(4, 3, bias=False)
        self.v = nn.Linear(3, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.v(self.a(x) * self.b(x))


def test_shapley_split_is_the_two_player_shapley_value() -> None:
    """For c = a ⊙ b, DeepLIFT's contributions of a and b are the Shapley values of the game v(S) = c(factors
    in S at the input, the others at the baseline): φ_a = ½[c(a, b̄) − c(ā, b̄)] + ½[c(a, b) − c(ā, b)]."""
    seeded()
    model = Bilinear().double()
    x, base = torch.randn(5, 4, dtype=F64), torch.randn(1, 4, dtype=F64)
    W1, W2, v = model.a.weight, model.b.weight, model.v.weight[0]
    a, b, a_ref, b_ref = x @ W1.T, x @ W2.T, base @ W1.T, base @ W2.T
    phi_a = 0.5 * ((a * b_ref - a_ref * b_ref) + (a * b - a_ref * b))
    phi_b = 0.5 * ((a_ref * b - a_ref * b_ref) + (a * b - a * b_ref))
    # each factor's Shapley value spread back over x linearly: (x − x̄) ⊙ Wᵀ(v ⊙ φ/Δ)
    expected = (x - base) * ((v * phi_a / (a - a_ref)) @ W1 + (v * phi_b / (b - b_ref)) @ W2)
    got = gradattr.attribute(model, x, method="deeplift", baseline=base, target=0)
    torch.testing.assert_close(got, expected, **EXACT)
    torch.testing.assert_close(got.sum(1), (model(x) - model(base))[:, 0], **EXACT)


def test_uniform_rule_gives_each_factor_half() -> None:
    seeded(1)
    model = Bilinear().double()
    x = torch.randn(5, 4, dtype=F64)
    W1, W2, v = model.a.weight, model.b.weight, model.v.weight[0]
    a, b = x @ W1.T, x @ W2.T
    expected = x * (0.5 * (v * b) @ W1 + 0.5 * (v * a) @ W2)
    torch.testing.assert_close(gradattr.attribute(model, x, method="epsilon_lrp", target=0), expected, **EXACT)
    # the relevance of the product c·g_c splits evenly: Σ R = f(x) (no biases, no nonlinearity)
    torch.testing.assert_close(expected.sum(1), model(x)[:, 0], **EXACT)


class SoftmaxHead(nn.Module):
    def __init__(self, log: bool = False) -> None:
        super().__init__()
        self.w = nn.Linear(4, 6)
        self.log = log

    def forward(self, x: Tensor) -> Tensor:
        z = self.w(x)
        y = F.log_softmax(z, dim=1) if self.log else z.softmax(dim=1)
        return y @ torch.linspace(-1, 2, 6, dtype=x.dtype)


def _rescale(f, z: Tensor, z_ref: Tensor) -> Tensor:
    return (f(z) - f(z_ref)) / (z - z_ref)


def test_deeplift_softmax_equals_its_decomposition_written_out() -> None:
    """y = e ⊙ r with e = exp(z) (Rescale), s = Σ e (linear), r = 1/s (Rescale), product (Shapley)."""
    seeded(2)
    model = SoftmaxHead().double()
    x, base = torch.randn(4, 4, dtype=F64), torch.randn(1, 4, dtype=F64)
    v = torch.linspace(-1, 2, 6, dtype=F64)
    z, z_ref = model.w(x).detach(), model.w(base).detach()
    e, e_ref = z.exp(), z_ref.exp()
    s, s_ref = e.sum(1, keepdim=True), e_ref.sum(1, keepdim=True)
    r, r_ref = 1 / s, 1 / s_ref
    g_y = v.expand_as(z)
    g_e = g_y * (r + r_ref) / 2
    g_r = (g_y * (e + e_ref) / 2).sum(1, keepdim=True)
    g_s = g_r * _rescale(torch.reciprocal, s, s_ref)
    g_z = (g_e + g_s) * _rescale(torch.exp, z, z_ref)
    expected = (x - base) * (g_z @ model.w.weight)
    got = gradattr.attribute(model, x, method="deeplift", baseline=base)
    torch.testing.assert_close(got, expected, **EXACT)


def test_deeplift_log_softmax_equals_its_decomposition_written_out() -> None:
    """log_softmax(z) = z − log Σ exp(z): exp (Rescale), sum (linear), log (Rescale)."""
    seeded(3)
    model = SoftmaxHead(log=True).double()
    x, base = torch.randn(4, 4, dtype=F64), torch.randn(1, 4, dtype=F64)
    v = torch.linspace(-1, 2, 6, dtype=F64)
    z, z_ref = model.w(x).detach(), model.w(base).detach()
    s, s_ref = z.exp().sum(1, keepdim=True), z_ref.exp().sum(1, keepdim=True)
    g_y = v.expand_as(z)
    g_s = -g_y.sum(1, keepdim=True) * _rescale(torch.log, s, s_ref)
    g_z = g_y + g_s * _rescale(torch.exp, z, z_ref)
    expected = (x - base) * (g_z @ model.w.weight)
    torch.testing.assert_close(gradattr.attribute(model, x, method="deeplift", baseline=base), expected, **EXACT)


def test_softmax_with_masked_entries_stays_finite_and_complete() -> None:
    class Masked(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Linear(4, 6)

        def forward(self, x: Tensor) -> Tensor:
            z = self.w(x).masked_fill(torch.tensor([False, True, False, False, True, False]), -math.inf)
            return z.softmax(-1) @ torch.arange(6, dtype=x.dtype)

    seeded(4)
    model = Masked().double()
    x = torch.randn(3, 4, dtype=F64)
    r = gradattr.attribute(model, x, method="deeplift")
    torch.testing.assert_close(r.sum(1), model(x) - model(torch.zeros_like(x)), **EXACT)


class LayerNormHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Linear(4, 6)
        self.norm = nn.LayerNorm(6)
        with torch.no_grad():
            self.norm.weight.uniform_(0.5, 1.5)
            self.norm.bias.uniform_(-0.5, 0.5)
        self.v = nn.Linear(6, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.v(self.norm(self.w(x)))


def test_deeplift_layer_norm_equals_its_decomposition_written_out() -> None:
    """c = u − μ, q = c² (Rescale), var = mean(q), r = (var + ε)^(−½) (Rescale), n = c·r (Shapley)."""
    seeded(5)
    model = LayerNormHead().double()
    x, base = torch.randn(4, 4, dtype=F64), torch.randn(1, 4, dtype=F64)
    eps, gamma, v = model.norm.eps, model.norm.weight, model.v.weight[0]

    def pieces(inp: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        u = model.w(inp).detach()
        c = u - u.mean(1, keepdim=True)
        w = (c * c).mean(1, keepdim=True) + eps
        return c, w, w.rsqrt()

    c, w, r = pieces(x)
    c_ref, w_ref, r_ref = pieces(base)
    g_n = (gamma * v).expand_as(c)
    g_c = g_n * (r + r_ref) / 2
    g_r = (g_n * (c + c_ref) / 2).sum(1, keepdim=True)
    g_w = g_r * (r - r_ref) / (w - w_ref)
    g_c = g_c + g_w / c.shape[1] * (c + c_ref)  # through mean and the square's Rescale multiplier c + c̄
    g_u = g_c - g_c.mean(1, keepdim=True)
    expected = (x - base) * (g_u @ model.w.weight)
    got = gradattr.attribute(model, x, method="deeplift", baseline=base)
    torch.testing.assert_close(got, expected, **EXACT)


def test_attnlrp_layer_norm_holds_the_statistic_constant() -> None:
    seeded(6)
    model = LayerNormHead().double()
    x = torch.randn(4, 4, dtype=F64)
    u = model.w(x).detach()
    c = u - u.mean(1, keepdim=True)
    r = ((c * c).mean(1, keepdim=True) + model.norm.eps).rsqrt()
    g_c = (model.norm.weight * model.v.weight[0]) * r
    expected = x * ((g_c - g_c.mean(1, keepdim=True)) @ model.w.weight)
    torch.testing.assert_close(gradattr.attribute(model, x, method="epsilon_lrp"), expected, **EXACT)


class NormVariants(nn.Module):
    """One RMS norm written four ways: F.rms_norm, nn.RMSNorm, by hand (HF), by hand with division."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.w = nn.Linear(4, 6)
        self.kind = kind
        self.hand = HandRMSNorm(6)
        self.module = nn.RMSNorm(6, eps=1e-6)
        with torch.no_grad():
            self.module.weight.copy_(self.hand.weight)
        self.v = nn.Linear(6, 2)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.tanh(self.w(x))
        if self.kind == "functional":
            h = F.rms_norm(h, (6,), self.hand.weight, 1e-6)
        elif self.kind == "module":
            h = self.module(h)
        elif self.kind == "hand":
            h = self.hand(h)
        else:
            h = self.hand.weight * h / torch.sqrt(h.square().mean(-1, keepdim=True) + 1e-6)
        return self.v(h)


@pytest.mark.parametrize("method", ["deeplift", "epsilon_lrp"])
def test_hand_written_rms_norm_gets_the_rule_of_what_it_computes(method: str) -> None:
    seeded(7)
    reference = NormVariants("functional").double()
    x = torch.randn(5, 4, dtype=F64)
    expected = gradattr.attribute(reference, x, method=method, target=1)
    for kind in ("module", "hand", "division"):
        model = NormVariants(kind).double()
        model.load_state_dict(reference.state_dict())
        torch.testing.assert_close(gradattr.attribute(model, x, method=method, target=1), expected, rtol=1e-9,
                                   atol=1e-12, msg=kind)  # fmt: skip


class GeluVariants(nn.Module):
    def __init__(self, hand: bool) -> None:
        super().__init__()
        self.w, self.v = nn.Linear(4, 8), nn.Linear(8, 2)
        self.act = NewGELU() if hand else nn.GELU(approximate="tanh")

    def forward(self, x: Tensor) -> Tensor:
        return self.v(self.act(self.w(x)))


@pytest.mark.parametrize("method", ["deeplift", "epsilon_lrp"])
def test_hand_written_gelu_gets_the_rule_of_the_whole_function(method: str) -> None:
    """GPT-2's ``0.5 x (1 + tanh(...))`` is one elementwise nonlinearity: eps-LRP gives it f(z)/(z + ε sign z)
    as for ``nn.GELU(approximate="tanh")``, not the rules of its pieces."""
    seeded(8)
    module = GeluVariants(hand=False).double()
    hand = GeluVariants(hand=True).double()
    hand.load_state_dict(module.state_dict())
    x = torch.randn(5, 4, dtype=F64)
    expected = gradattr.attribute(module, x, method=method, target=0)
    torch.testing.assert_close(gradattr.attribute(hand, x, method=method, target=0), expected, rtol=1e-9, atol=1e-12)
    z = module.w(x).detach()
    identity = F.gelu(z, approximate="tanh") / (z + 1e-4 * torch.where(z >= 0, 1.0, -1.0))
    if method == "epsilon_lrp":
        reference = x * ((identity * module.v.weight[0]) @ module.w.weight)
        torch.testing.assert_close(expected, reference, rtol=1e-8, atol=1e-10)


class TinyAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q, self.k, self.v = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 4)
        self.head = nn.Linear(4, 2)
        self.detach_weights = False

    def forward(self, x: Tensor) -> Tensor:
        scores = self.q(x) @ self.k(x).transpose(1, 2) / 2
        weights = scores.softmax(-1)
        if self.detach_weights:
            weights = weights.detach()
        return self.head((weights @ self.v(x)).sum(1))


def test_cp_lrp_treats_attention_weights_as_constants() -> None:
    seeded(9)
    model = TinyAttention().double()
    x = torch.randn(3, 5, 4, dtype=F64)
    cp = gradattr.attribute(model, x, method="epsilon_lrp", rules="cp", target=0)
    model.detach_weights = True
    expected = gradattr.attribute(model, x, method="gradient_x_input", target=0)  # all linear in x then
    torch.testing.assert_close(cp, expected, **EXACT)
    model.detach_weights = False
    attn = gradattr.attribute(model, x, method="epsilon_lrp", target=0)
    assert (attn - cp).abs().max() > 1e-6


def test_attnlrp_on_attention_divides_q_k_by_four_and_v_by_two() -> None:
    """AttnLRP on one attention layer (Achtibat et al. 2024): relevance reaches v through A·v with ½ and q, k
    through q kᵀ (½) after A·v (½) with the softmax's gradient×input in between."""
    seeded(10)
    model = TinyAttention().double()
    x = torch.randn(2, 5, 4, dtype=F64).requires_grad_()
    q, k, v = model.q(x), model.k(x), model.v(x)
    scale = lambda t: t.detach() + 0.5 * (t - t.detach())  # noqa: E731  (gradient ÷ 2, value kept)
    scores = scale(q) @ scale(k).transpose(1, 2) / 2
    out = model.head((scale(scores.softmax(-1)) @ scale(v)).sum(1))[:, 0]
    (grad,) = torch.autograd.grad(out.sum(), x)
    expected = (x * grad).detach()
    got = gradattr.attribute(model, x.detach(), method="epsilon_lrp", target=0)
    torch.testing.assert_close(got, expected, **EXACT)


def test_epsilon_layer_rule_equals_layer_by_layer_lrp() -> None:
    """rules="epsilon": ε at every linear layer (Bach et al. 2015) — R_j = Σ_k a_j w_jk / (z_k + ε sgn z_k) R_k,
    relevance passed unchanged through ReLUs, written out layer by layer."""
    seeded(11)
    layers = [nn.Linear(5, 7), nn.Linear(7, 6), nn.Linear(6, 3)]
    model = nn.Sequential(layers[0], nn.ReLU(), layers[1], nn.ReLU(), layers[2]).double()
    x = torch.randn(4, 5, dtype=F64)
    eps = 1e-3
    activations = [x]
    for i, layer in enumerate(layers):
        z = layer(activations[-1]).detach()
        activations.append(z.relu() if i < 2 else z)
    relevance = torch.zeros_like(activations[-1])
    relevance[:, 1] = activations[-1][:, 1]
    for i in reversed(range(3)):
        a = activations[i]
        z = layers[i](a).detach()
        s = relevance / (z + eps * torch.where(z >= 0, 1.0, -1.0).to(F64))  # ε in float64, as z
        relevance = a * (s @ layers[i].weight)
    got = gradattr.attribute(model, x, method="epsilon_lrp", rules="epsilon", epsilon=eps, target=1)
    torch.testing.assert_close(got, relevance, **EXACT)
    plain = gradattr.attribute(model, x, method="epsilon_lrp", epsilon=eps, target=1)
    assert (plain - got).abs().max() > 1e-4  # the layer slot changed something


class MaxPoolNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3)
        self.head = nn.Linear(3 * 3 * 3 + 3, 2)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.conv(x))
        pooled = F.max_pool2d(h, 3, stride=2, padding=1).flatten(1)
        top = h.amax(dim=(2, 3))
        return self.head(torch.cat((pooled, top), 1))


def test_exact_max_pooling_makes_deeplift_complete_and_route_does_not() -> None:
    seeded(12)
    model = MaxPoolNet().double()
    x, base = torch.randn(4, 1, 7, 7, dtype=F64), torch.randn(1, 1, 7, 7, dtype=F64)
    delta = (model(x) - model(base))[:, 0]
    exact = gradattr.attribute(model, x, method="deeplift", baseline=base, target=0, max_pooling="exact")
    torch.testing.assert_close(exact.flatten(1).sum(1), delta.detach(), **EXACT)
    route = gradattr.attribute(model, x, method="deeplift", baseline=base, target=0)
    assert float((route.flatten(1).sum(1) - delta).abs().max()) > 1e-4
    with pytest.raises(ValueError, match="max_pooling must be 'route' or 'exact'"):
        gradattr.attribute(model, x, method="deeplift", max_pooling="tree")


def test_division_by_an_input_dependent_tensor_is_exact_for_deeplift() -> None:
    class Ratio(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(4, 3), nn.Linear(4, 3)

        def forward(self, x: Tensor) -> Tensor:
            return (self.a(x) / (2 + torch.sigmoid(self.b(x)))).sum(1)

    seeded(13)
    model = Ratio().double()
    x, base = torch.randn(5, 4, dtype=F64), torch.randn(1, 4, dtype=F64)
    r = gradattr.attribute(model, x, method="deeplift", baseline=base)
    torch.testing.assert_close(r.sum(1), (model(x) - model(base)).detach(), **EXACT)


def test_splits_and_chunks_are_routing_not_unsupported() -> None:
    class Splitter(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Linear(4, 6)

        def forward(self, x: Tensor) -> Tensor:
            h = torch.tanh(self.w(x))
            a, b = torch.functional.split(h, 3, dim=1)
            c, d = h.chunk(2, dim=1)
            e = torch.tensor_split(h, 2, dim=1)[0]
            return (a * 2 - b + c + d.narrow(1, 0, 3) + e + sum(h.unbind(1))[:, None]).sum(1)

    seeded(14)
    model = Splitter().double()
    x = torch.randn(3, 4, dtype=F64)
    r = gradattr.attribute(model, x, method="deeplift")
    torch.testing.assert_close(r.sum(1), (model(x) - model(torch.zeros_like(x))).detach(), **EXACT)


def test_rule_set_overrides_by_module_type_and_path() -> None:
    """A rule set is data: the layer slot's rule can be placed by module class or by dotted path."""
    from gradattr.rules import EpsilonLayer, HoldConstant, Identity, Uniform
    from gradattr.rulesets import Override, RuleSet

    seeded(15)
    layers = [nn.Linear(5, 7), nn.Linear(7, 6), nn.Linear(6, 3)]
    model = nn.Sequential(layers[0], nn.ReLU(), layers[1], nn.ReLU(), layers[2]).double()
    x = torch.randn(4, 5, dtype=F64)
    eps = 1e-2

    def custom(where: type | str) -> RuleSet:
        return RuleSet(
            "custom", Identity(), Uniform(), HoldConstant(), overrides=(Override("layer", EpsilonLayer(eps), where),)
        )

    everywhere = gradattr.attribute(model, x, method="epsilon_lrp", rules="epsilon", epsilon=eps, target=0)
    by_type = gradattr.attribute(model, x, method="epsilon_lrp", rules=custom(nn.Linear), target=0)
    torch.testing.assert_close(by_type, everywhere, **EXACT)
    # ε only at the last layer ("4"), the plain gradient at the others: written out layer by layer
    activations = [x]
    for i, layer in enumerate(layers):
        z = layer(activations[-1]).detach()
        activations.append(z.relu() if i < 2 else z)
    relevance = torch.zeros_like(activations[-1])
    relevance[:, 0] = activations[-1][:, 0]
    for i in reversed(range(3)):
        a, z = activations[i], layers[i](activations[i]).detach()
        stabiliser = eps * torch.where(z >= 0, 1.0, -1.0) if i == 2 else 0
        relevance = a * ((relevance / (z + stabiliser)) @ layers[i].weight)
    by_path = gradattr.attribute(model, x, method="epsilon_lrp", rules=custom("4"), target=0)
    torch.testing.assert_close(by_path, relevance, rtol=1e-8, atol=1e-10)
    with pytest.raises(TypeError, match="rules must be"):
        gradattr.attribute(model, x, method="epsilon_lrp", rules=3)


class PiecewiseByHand(nn.Module):
    """Activations written with masks: ``where``, ``masked_fill``, a product with a comparison."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 6), nn.Linear(6, 2)
        self.kind = kind

    def forward(self, x: Tensor) -> Tensor:
        h = self.a(x)
        h = {
            "module": lambda: F.leaky_relu(h, 0.1),
            "where": lambda: torch.where(h > 0, h, 0.1 * h),
            "masked_fill": lambda: h.masked_fill(h < 0, 0.0) + 0.1 * h.masked_fill(h > 0, 0.0),
            "mask_product": lambda: h * (h > 0).float() + 0.1 * h * (h <= 0),
        }[self.kind]()
        return self.b(h)


@pytest.mark.parametrize("method", ["deeplift", "epsilon_lrp"])
def test_activations_written_with_masks_get_the_rule_of_what_they_compute(method: str) -> None:
    """``torch.where(x > 0, x, 0.1 x)`` is a leaky ReLU: DeepLIFT stays exact and eps-LRP gives it
    f(z)/(z + ε sign z), as for ``F.leaky_relu`` — the mask is an input-dependent step function, not a constant."""
    seeded(16)
    reference = PiecewiseByHand("module").double()
    x, base = torch.randn(6, 4, dtype=F64), torch.randn(1, 4, dtype=F64)
    options = {"baseline": base} if method == "deeplift" else {}
    expected = gradattr.attribute(reference, x, method=method, target=0, **options)
    for kind in ("where", "masked_fill", "mask_product"):
        model = PiecewiseByHand(kind).double()
        model.load_state_dict(reference.state_dict())
        got = gradattr.attribute(model, x, method=method, target=0, **options)
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12, msg=kind)


@pytest.mark.parametrize("spatial", [1, 2, 3])
def test_exact_max_pooling_computes_what_max_pooling_computes(spatial: int) -> None:
    """The tree of ReLUs equals F.max_poolNd for kernel, stride, padding, ceil mode and dilation, and the
    one case it cannot express (dilated windows past the edge) is named in an error."""
    import itertools

    from gradattr.engine.ops.expanders import MAX_POOLS

    pool = getattr(F, f"max_pool{spatial}d")
    exact = MAX_POOLS[f"torch.nn.functional.max_pool{spatial}d"]
    x = torch.randn((2, 3) + (7,) * spatial, dtype=F64)
    checked = 0
    for kernel, stride, padding, ceil, dilation in itertools.product((2, 3), (1, 2, 3), (0, 1), (False, True), (1, 2)):
        if padding > kernel // 2:
            continue
        expected = pool(x, kernel, stride, padding, dilation, ceil)
        try:
            got = exact(x, kernel, stride, padding, dilation, ceil)
        except NotImplementedError:
            assert dilation > 1
            continue
        torch.testing.assert_close(got, expected, rtol=1e-14, atol=1e-15)
        checked += 1
    assert checked >= 30
    model = nn.Sequential(nn.Conv1d(1, 2, 3), nn.MaxPool1d(3, stride=3, dilation=2, ceil_mode=True), nn.Flatten())
    with pytest.raises(gradattr.engine.UnsupportedOperationError, match="max_pooling='route'"):
        gradattr.attribute(model.double(), torch.randn(2, 1, 9, dtype=F64), method="deeplift", target=0,
                           max_pooling="exact")  # fmt: skip


def test_deeplift_softmax_stays_complete_when_the_baseline_row_is_nearly_one_hot() -> None:
    """Found by the fuzzer: logits near 30 at the baseline (ȳ_top = 1 − 2e-5) and a gap of 28 per entry make
    the multiplier of the top entry e^{28}-large, so its 1 − ȳ_top must not be formed as a difference (it cost
    2.4e-4 of Δ(y·w) = 0.41; now the completeness of the rule itself is at float64 rounding of its terms)."""
    from gradattr.rules.softmax import SoftmaxCall, _DeepLiftSoftmax

    x = torch.tensor([[1.0428635856543889, 2.267071312949319, -3.054022796885226, -2.0108272389517645]],
                     dtype=torch.float64, requires_grad=True)  # fmt: skip
    x_ref = torch.tensor([[-10.99884127358293, 30.19328030571539, 19.38549617441178, -8.222698331364306]],
                         dtype=torch.float64)  # fmt: skip
    w = torch.tensor([0.3, -1.2, 0.7, 2.0], dtype=torch.float64)
    for a, b in ((x, x_ref), (x_ref.clone().requires_grad_(), x.detach())):
        (g,) = torch.autograd.grad((_DeepLiftSoftmax.apply(a, b, SoftmaxCall(-1)) * w).sum(), a)
        delta = ((torch.softmax(a, -1) - torch.softmax(b, -1)) * w).sum()
        assert abs(float((g * (a - b)).sum() - delta)) < 1e-6, (float((g * (a - b)).sum()), float(delta))
