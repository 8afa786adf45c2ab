"""Every op of SPEC "Modern ops" in the forms users call it — functional, module, tensor method — inside a
tiny model: DeepLIFT's Σ R = S_c(x) − S_c(x̄) to float precision (float64, random baseline), eps-LRP finite,
and both differ from Gradient*Input (the rules reach the op)."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import gradattr

F64 = torch.float64


class OpNet(nn.Module):
    """``head(op(a(x), b(x)))`` with two input-dependent operands of shape (B, 4, 6)."""

    def __init__(self, op: Callable[[nn.Module, Tensor, Tensor], Tensor]) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(5, 24), nn.Linear(5, 24)
        self.extra = nn.ModuleDict(
            {
                "softmax": nn.Softmax(dim=-1),
                "log_softmax": nn.LogSoftmax(dim=-1),
                "instance": nn.InstanceNorm1d(4, affine=True),
                "group": nn.GroupNorm(2, 4),
                "layer": nn.LayerNorm(6),
                "rms": nn.RMSNorm(6),
                "mha": nn.MultiheadAttention(6, 2, batch_first=True),
            }
        )
        self.op = op
        self.head = nn.Linear(24, 3)

    def forward(self, x: Tensor) -> Tensor:
        a = torch.tanh(self.a(x)).view(-1, 4, 6)
        b = self.b(x).view(-1, 4, 6)
        return self.head(self.op(self, a, b).reshape(x.shape[0], -1))


def native_mha(m: nn.Module, a: Tensor, b: Tensor) -> Tensor:
    mha = m.extra["mha"]
    out, _ = torch._native_multi_head_attention(
        a, b, b, 6, 2, mha.in_proj_weight, mha.in_proj_bias, mha.out_proj.weight, mha.out_proj.bias, None, False
    )
    return out


OPS: dict[str, Callable[[nn.Module, Tensor, Tensor], Tensor]] = {
    "mul": lambda m, a, b: a * b,
    "torch.mul": lambda m, a, b: torch.mul(a, b),
    "matmul": lambda m, a, b: a @ b.transpose(1, 2) @ b,
    "bmm": lambda m, a, b: torch.bmm(torch.bmm(a, b.transpose(1, 2)), a),
    "einsum": lambda m, a, b: torch.einsum("bij,bkj->bik", a, b).repeat(1, 1, 2)[..., :6] * 0.1,
    "einsum(list)": lambda m, a, b: torch.einsum("bij,bij->bij", [a, b]),
    "baddbmm": lambda m, a, b: torch.baddbmm(b[:, :, :4], a, b.transpose(1, 2)).repeat(1, 1, 2)[..., :6],
    "division": lambda m, a, b: a / (1.5 + torch.sigmoid(b)),
    "F.softmax": lambda m, a, b: F.softmax(a + b, dim=-1),
    "nn.Softmax": lambda m, a, b: m.extra["softmax"](a * 3),
    "Tensor.softmax": lambda m, a, b: (a - b).softmax(-1) * b,
    "log_softmax": lambda m, a, b: m.extra["log_softmax"](a + b) + torch.log_softmax(b, dim=1),
    "softmin": lambda m, a, b: F.softmin(a, dim=-1),
    "layer_norm": lambda m, a, b: m.extra["layer"](a + b),
    "rms_norm": lambda m, a, b: m.extra["rms"](a + b) + F.rms_norm(b, (6,)),
    "group_norm": lambda m, a, b: m.extra["group"](a + b),
    "instance_norm": lambda m, a, b: m.extra["instance"](a + b),
    "F.normalize": lambda m, a, b: F.normalize(a + b, dim=-1),
    "var/std": lambda m, a, b: (b - b.mean(-1, keepdim=True)) / (b.std(-1, keepdim=True) + a.var(-1, keepdim=True)),
    "norm": lambda m, a, b: b / (1 + b.norm(dim=-1, keepdim=True)),
    "sdpa": lambda m, a, b: F.scaled_dot_product_attention(a[:, None], b[:, None], b[:, None])[:, 0],
    "sdpa(causal)": lambda m, a, b: F.scaled_dot_product_attention(a, b, a, is_causal=True),
    "sdpa(mask)": lambda m, a, b: F.scaled_dot_product_attention(
        a, b, b, attn_mask=torch.tensor([[True, False, True, True]] * 4)
    ),
    "sdpa(float mask, scale)": lambda m, a, b: F.scaled_dot_product_attention(
        a, b, b, attn_mask=torch.linspace(-1, 0, 4, dtype=a.dtype).expand(4, 4), scale=0.3
    ),
    "nn.MultiheadAttention": lambda m, a, b: m.extra["mha"](a, b, b, need_weights=False)[0],
    "nn.MultiheadAttention(weights)": lambda m, a, b: m.extra["mha"](a, b, a, average_attn_weights=False)[1]
    .sum(1)
    .repeat(1, 1, 2)[..., :6],
    "_native_multi_head_attention": native_mha,
    "F.glu": lambda m, a, b: F.glu(torch.cat((a, b), dim=-1), dim=-1),
    "swiglu": lambda m, a, b: F.silu(a) * b,
    "gelu(tanh) by hand": lambda m, a, b: 0.5 * b * (1 + torch.tanh(math.sqrt(2 / math.pi) * (b + 0.044715 * b**3))),
    "squeeze-excitation": lambda m, a, b: b * F.hardsigmoid(a.mean(-1, keepdim=True)),
    "maximum": lambda m, a, b: torch.maximum(a, b) + torch.max(a, b) - torch.minimum(a, b),
    "logsumexp": lambda m, a, b: b - torch.logsumexp(a, dim=-1, keepdim=True),
    "rotary": lambda m, a, b: a * torch.linspace(0, 1, 6, dtype=a.dtype).cos()
    + torch.cat((-a[..., 3:], a[..., :3]), -1) * torch.linspace(0, 1, 6, dtype=a.dtype).sin(),
}


@pytest.mark.parametrize("name", sorted(OPS))
def test_deeplift_is_exact_and_rules_reach_the_op(name: str) -> None:
    torch.manual_seed(sorted(OPS).index(name))
    model = OpNet(OPS[name]).double().eval()
    x, baseline = torch.randn(4, 5, dtype=F64), torch.randn(1, 5, dtype=F64)
    r = gradattr.attribute(model, x, method="deeplift", target=1, baseline=baseline)
    with torch.no_grad():
        delta = model(x)[:, 1] - model(baseline)[:, 1]
    gap = (r.sum(1) - delta).abs() / delta.abs().clamp_min(1e-9)
    assert float(gap.max()) < 1e-8, f"{name}: completeness gap {float(gap.max()):.1e}"
    lrp = gradattr.attribute(model, x, method="epsilon_lrp", target=1)
    assert torch.isfinite(lrp).all()
    if name == "_native_multi_head_attention":  # torch has no derivative for the fused kernel: only the
        return  # rule-based methods (which evaluate it step by step) can go through it
    plain = gradattr.attribute(model, x, method="gradient_x_input", target=1)
    if name not in ("rotary",):  # rotary embeddings are linear: every rule is the gradient there
        assert (r - (x - baseline) * (plain / x)).abs().max() > 1e-8 or (lrp - plain).abs().max() > 1e-8
