"""Modern blocks written the ways their authors write them, for the engine tests (no torchvision here):
a ViT block, a pre-norm GPT block with causal SDPA and a hand-written GELU, a Llama block (hand-written
RMSNorm, rotary embeddings, SwiGLU), a ConvNeXt block (LayerNorm over channels, layer scale, GELU), a
MobileNetV3 squeeze-excitation block, ``nn.TransformerEncoder`` and ``nn.MultiheadAttention``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class HandRMSNorm(nn.Module):
    """RMSNorm as HuggingFace writes it (Llama, Qwen2, T5)."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(1 + 0.1 * torch.randn(dim))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        variance = x.to(torch.float32 if x.dtype == torch.float32 else x.dtype).pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(variance + self.eps))


class NewGELU(nn.Module):
    """GPT-2's GELU, written out (HuggingFace ``NewGELUActivation``)."""

    def forward(self, x: Tensor) -> Tensor:
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def rotate_half(x: Tensor) -> Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def rotary(x: Tensor) -> Tensor:
    """Rotary position embeddings (Su et al. 2021) as Llama applies them: ``x cos + rotate_half(x) sin``."""
    steps, dim = x.shape[-2], x.shape[-1]
    inverse = 1.0 / (10000 ** (torch.arange(0, dim, 2, dtype=x.dtype) / dim))
    angles = torch.outer(torch.arange(steps, dtype=x.dtype), inverse)
    angles = torch.cat((angles, angles), dim=-1)
    return x * angles.cos() + rotate_half(x) * angles.sin()


class LlamaBlock(nn.Module):
    def __init__(self, dim: int = 16, heads: int = 4, hidden: int = 24, classes: int = 3) -> None:
        super().__init__()
        self.heads = heads
        self.input_norm = HandRMSNorm(dim)
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim, bias=False) for _ in range(4))
        self.post_norm = HandRMSNorm(dim)
        self.gate, self.up = nn.Linear(dim, hidden, bias=False), nn.Linear(dim, hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: Tensor) -> Tensor:
        batch, steps, dim = x.shape
        h = self.input_norm(x)
        q, k, v = (p(h).view(batch, steps, self.heads, -1).transpose(1, 2) for p in (self.q, self.k, self.v))
        attended = F.scaled_dot_product_attention(rotary(q), rotary(k), v, is_causal=True)
        x = x + self.o(attended.transpose(1, 2).reshape(batch, steps, dim))
        h = self.post_norm(x)
        x = x + self.down(F.silu(self.gate(h)) * self.up(h))
        return self.head(x[:, -1])


class GPTBlock(nn.Module):
    """Pre-norm GPT block: causal SDPA with a boolean mask, hand-written GELU MLP."""

    def __init__(self, dim: int = 16, heads: int = 4, classes: int = 3) -> None:
        super().__init__()
        self.heads = heads
        self.ln_1, self.ln_2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.fc, self.act, self.out = nn.Linear(dim, 4 * dim), NewGELU(), nn.Linear(4 * dim, dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: Tensor) -> Tensor:
        batch, steps, dim = x.shape
        q, k, v = self.qkv(self.ln_1(x)).split(dim, dim=2)
        q, k, v = (t.view(batch, steps, self.heads, -1).transpose(1, 2) for t in (q, k, v))
        mask = torch.ones(steps, steps, dtype=torch.bool).tril()
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.proj(attended.transpose(1, 2).reshape(batch, steps, dim))
        x = x + self.out(self.act(self.fc(self.ln_2(x))))
        return self.head(x.mean(1))


class ViTBlock(nn.Module):
    """Patch embedding, class token, position embeddings, one pre-norm block with ``nn.MultiheadAttention``."""

    def __init__(self, dim: int = 16, classes: int = 3) -> None:
        super().__init__()
        self.patch = nn.Conv2d(1, dim, 4, stride=4)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.1)
        self.pos = nn.Parameter(torch.randn(1, 5, dim) * 0.1)
        self.norm1, self.norm2, self.norm = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, 4, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.head = nn.Linear(dim, classes)

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        tokens = torch.cat((self.cls.expand(x.shape[0], -1, -1), tokens), dim=1) + self.pos
        h = self.norm1(tokens)
        tokens = tokens + self.attn(h, h, h, need_weights=False)[0]
        tokens = tokens + self.mlp(self.norm2(tokens))
        return self.head(self.norm(tokens)[:, 0])


class ConvNeXtBlock(nn.Module):
    """Depthwise conv, LayerNorm over channels (channels-last), inverted MLP with GELU, layer scale."""

    def __init__(self, channels: int = 8, classes: int = 3) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, channels, 2, stride=2)
        self.dwconv = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.norm = nn.LayerNorm(channels, eps=1e-6)
        self.pw1, self.pw2 = nn.Linear(channels, 4 * channels), nn.Linear(4 * channels, channels)
        self.gamma = nn.Parameter(torch.rand(channels))
        self.pool_norm = nn.GroupNorm(2, channels)
        self.head = nn.Linear(channels, classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.gamma * self.pw2(F.gelu(self.pw1(self.norm(y))))
        x = self.pool_norm(x + y.permute(0, 3, 1, 2))
        return self.head(x.mean((2, 3)))


class SqueezeExcitation(nn.Module):
    """MobileNetV3's block: hardswish conv, then ``x * hardsigmoid(fc(relu(fc(avgpool(x)))))``."""

    def __init__(self, channels: int = 8, classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, channels, 3)
        self.bn = nn.BatchNorm2d(channels)
        self.fc1, self.fc2 = nn.Conv2d(channels, 4, 1), nn.Conv2d(4, channels, 1)
        self.head = nn.Linear(channels, classes)

    def forward(self, x: Tensor) -> Tensor:
        h = F.hardswish(self.bn(self.conv(x)))
        scale = F.hardsigmoid(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(h, 1)))))
        return self.head((h * scale).mean((2, 3)))


class Encoder(nn.Module):
    """``nn.TransformerEncoder`` (its fast path runs in eval mode without gradients) with a padding mask."""

    def __init__(self, dim: int = 16, classes: int = 3) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(dim, 4, 32, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: Tensor) -> Tensor:
        padding = torch.zeros(x.shape[:2], dtype=torch.bool)
        padding[:, -1] = True
        return self.head(self.encoder(x, src_key_padding_mask=padding)[:, 0])


class Attention(nn.Module):
    """``nn.MultiheadAttention`` with separate key/value inputs and averaged attention weights returned."""

    def __init__(self, dim: int = 16, classes: int = 3) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, 2, batch_first=True)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: Tensor) -> Tensor:
        out, weights = self.attn(x, x.flip(1), x, need_weights=True)
        return self.head(out.mean(1) + torch.bmm(weights, x).mean(1))


Factory = Callable[[], tuple[nn.Module, Tensor]]

BLOCKS: dict[str, Factory] = {
    "llama": lambda: (LlamaBlock(), torch.randn(3, 5, 16)),
    "gpt": lambda: (GPTBlock(), torch.randn(3, 5, 16)),
    "vit": lambda: (ViTBlock(), torch.randn(3, 1, 8, 8)),
    "convnext": lambda: (ConvNeXtBlock(), torch.randn(3, 3, 8, 8)),
    "squeeze_excitation": lambda: (SqueezeExcitation(), torch.randn(3, 3, 8, 8)),
    "transformer_encoder": lambda: (Encoder(), torch.randn(3, 5, 16)),
    "multihead_attention": lambda: (Attention(), torch.randn(3, 5, 16)),
}
"""Name -> (model with random weights, example batch), seeded by the caller."""
