"""The Wan causal transformer (modules only: no I/O, no device policy). Wan2.1 T2V and Wan2.2 TI2V-5B
(LongLive 2.0) are the same modules with other sizes: 48 latent channels in and out, dim 3072, 24 heads;
timesteps per frame ([B, F]) and per-frame modulation in both.

Self-attention does not know about caches: it hands its q/k/v to an ``AttentionContext``
(core/model/backbone.py; the KV cache is one) which stores keys, applies RoPE and picks the attended frames.
Without a context the layer attends over its own frames (positions 0..F-1). ``WanTransformer`` provides the
backbone interface (``BackboneModel``, core/model/backbone.py) that the AR loop is written against.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from .attention import attention, attention_heads_first
from .backbone import AttentionContext, CacheWriter, TextContext  # noqa: F401  (re-exported: their old home)
from .rope import apply_rope, rope_table


@dataclass(frozen=True)
class WanConfig:
    """Architecture of a Wan transformer (inferred from weights by ``core/formats``)."""
    dim: int
    ffn_dim: int
    num_layers: int
    num_heads: int
    in_dim: int                    # latent channels in and out: the backbone family's latent format's
    out_dim: int
    freq_dim: int = 256
    text_dim: int = 4096
    text_len: int = 512
    patch_size: tuple[int, int, int] = (1, 2, 2)
    eps: float = 1e-6

    def __post_init__(self):
        if self.dim % self.num_heads:
            raise ValueError(f"dim {self.dim} is not divisible by num_heads {self.num_heads}")
        if (self.dim // self.num_heads) % 2:
            raise ValueError(f"head_dim {self.dim // self.num_heads} must be even for RoPE")

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        if x.dtype == torch.float32 and self.weight.dtype == torch.float32:   # one fused kernel, same values
            return F.rms_norm(x, self.weight.shape, self.weight, self.eps)
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + self.eps)).type_as(x) * self.weight


class LayerNorm(nn.LayerNorm):
    def forward(self, x):
        return super().forward(x).type_as(x)


class GELUTanh(nn.Module):
    """GELU, tanh approximation (Wan's FFN activation), computed on CPU as x·sigmoid(2u), u = √(2/π)(x + 0.044715x³).

    The same function as 0.5·x·(1 + tanh u): torch's CPU tanh kernel made F.gelu twice as slow as this,
    and this form is closer to the float64 value. Other devices and half precision keep F.gelu (one
    fused kernel; it computes half precision in float32 internally).
    """

    def forward(self, x):
        if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
            return F.gelu(x, approximate="tanh")
        return torch.addcmul(x, x * x, x, value=0.044715).mul_(2 * math.sqrt(2 / math.pi)).sigmoid_().mul_(x)


def sinusoidal_embedding(dim: int, t: torch.Tensor) -> torch.Tensor:
    """[N] timesteps → [N, dim] (cos ‖ sin), float64."""
    half = dim // 2
    pos = t.to(torch.float64)
    sinusoid = torch.outer(pos, torch.pow(10000, -torch.arange(half, device=t.device).to(pos).div(half)))
    return torch.cat([torch.cos(sinusoid), torch.sin(sinusoid)], dim=1)


class SelfAttention(nn.Module):
    def __init__(self, cfg: WanConfig, layer: int):
        super().__init__()
        self.layer, self.heads = layer, cfg.num_heads
        self.q, self.k, self.v, self.o = (nn.Linear(cfg.dim, cfg.dim) for _ in range(4))
        self.norm_q, self.norm_k = RMSNorm(cfg.dim, cfg.eps), RMSNorm(cfg.dim, cfg.eps)

    def forward(self, x, grid: tuple[int, int, int], ctx: AttentionContext | None):
        return self.o(self.attend(*self.qkv(x), grid, ctx).flatten(2))

    def qkv(self, x) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [B, S, dim] → q, k (normed, before RoPE), v [B, S, heads, head_dim]."""
        b, s, _ = x.shape
        return (self.norm_q(self.q(x)).view(b, s, self.heads, -1), *self.kv(x))

    def attend(self, q, k, v, grid: tuple[int, int, int], ctx: AttentionContext | None) -> torch.Tensor:
        """Attention output [B, S, heads, head_dim]: through ``ctx``, or over the frames themselves."""
        if ctx is not None:
            return ctx.attend(self.layer, q, k, v)
        f, h, w = grid
        table = rope_table(torch.arange(f, device=q.device), h, w, q.shape[-1])
        return attention(apply_rope(q, table), apply_rope(k, table), v)

    def kv(self, x) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, S, dim] → k (normed, before RoPE), v [B, S, heads, head_dim]."""
        b, s, _ = x.shape
        return self.norm_k(self.k(x)).view(b, s, self.heads, -1), self.v(x).view(b, s, self.heads, -1)


class CrossAttention(nn.Module):
    def __init__(self, cfg: WanConfig):
        super().__init__()
        self.heads = cfg.num_heads
        self.q, self.k, self.v, self.o = (nn.Linear(cfg.dim, cfg.dim) for _ in range(4))
        self.norm_q, self.norm_k = RMSNorm(cfg.dim, cfg.eps), RMSNorm(cfg.dim, cfg.eps)

    def text_kv(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The prompt's K, V [B, heads, L, head_dim], contiguous in that layout (computed once per prompt,
        read by every forward: the attention kernel runs faster on it than on a transposed view)."""
        b, d = context.shape[0], self.q.out_features // self.heads
        return (self.norm_k(self.k(context)).view(b, -1, self.heads, d).transpose(1, 2).contiguous(),
                self.v(context).view(b, -1, self.heads, d).transpose(1, 2).contiguous())

    def forward(self, x, kv: tuple[torch.Tensor, ...]):
        """kv = (k, v) or (k, v, bias): the prompt's K/V [B, heads, L, d] and an additive logit bias [1, 1, 1, L]."""
        b = x.shape[0]
        q = self.norm_q(self.q(x)).view(b, -1, self.heads, kv[0].shape[-1])
        return self.o(attention_heads_first(q, *kv).flatten(2))


class Block(nn.Module):
    def __init__(self, cfg: WanConfig, layer: int):
        super().__init__()
        self.norm1 = LayerNorm(cfg.dim, eps=cfg.eps, elementwise_affine=False)
        self.self_attn = SelfAttention(cfg, layer)
        self.norm3 = LayerNorm(cfg.dim, eps=cfg.eps, elementwise_affine=True)
        self.cross_attn = CrossAttention(cfg)
        self.norm2 = LayerNorm(cfg.dim, eps=cfg.eps, elementwise_affine=False)
        self.ffn = nn.Sequential(nn.Linear(cfg.dim, cfg.ffn_dim), GELUTanh(), nn.Linear(cfg.ffn_dim, cfg.dim))
        self.modulation = nn.Parameter(torch.zeros(1, 6, cfg.dim))
        # whether ffn.0 is a plain Linear (its weight used as it is): None = this module's own nn.Linear; a host
        # whose layers cast or patch weights per call says so for its layers (``from_modules``)
        self.plain_ffn: bool | None = None

    def forward(self, x, e, grid, text_kv, ctx):
        """x [B, F·T, dim]; e [B, F, 6, dim] (per-frame modulation)."""
        e = (_like(self.modulation, e).unsqueeze(1) + e).chunk(6, dim=2)
        attn = self.self_attn.attend(*self._qkv(x, e[0], e[1]), grid, ctx)
        return self._after_attention(x, attn, e, text_kv)

    def write_kv(self, x, e, ctx: CacheWriter) -> None:
        """Only the self-attention K/V of x, handed to ``ctx.write`` (same arithmetic as ``forward``)."""
        e = (_like(self.modulation, e).unsqueeze(1) + e).chunk(6, dim=2)
        ctx.write(self.self_attn.layer, *self._qkv(x, e[0], e[1])[1:])

    # The two cache-free halves of a layer (what ``WanTransformer.compile_blocks`` compiles).
    def _qkv(self, x, shift, scale):
        return self.self_attn.qkv(_modulate(self.norm1(x), shift, scale))

    def _after_attention(self, x, attn, e, text_kv):
        x = x + _gate(self.self_attn.o(attn.flatten(2)), e[2])
        x = x + self.cross_attn(self.norm3(x), text_kv)
        return x + _gate(self._ffn(_modulate(self.norm2(x), e[3], e[4])), e[5])

    def _ffn(self, h):
        up, act, down = self.ffn
        plain = type(up) is nn.Linear if self.plain_ffn is None else self.plain_ffn
        if h.device.type == "cpu" and plain:   # CPU addmm adds a wide bias slower than an in-place add
            return down(act(F.linear(h, up.weight).add_(up.bias)))
        return self.ffn(h)


def _like(p: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A loose parameter (a modulation) on ``x``'s device and in its dtype: itself when it already is (this
    module's own layers), else a copy (layers another memory manager keeps elsewhere, ``from_modules``)."""
    return p if p.device == x.device and p.dtype == x.dtype else p.to(device=x.device, dtype=x.dtype)


def _modulate(h, shift, scale):
    """h [B, F·T, dim] with per-frame shift/scale [B, F, 1, dim]."""
    return (h.unflatten(1, (shift.shape[1], -1)) * (1 + scale) + shift).flatten(1, 2)


def _gate(h, g):
    return (h.unflatten(1, (g.shape[1], -1)) * g).flatten(1, 2)


class Head(nn.Module):
    def __init__(self, cfg: WanConfig):
        super().__init__()
        self.norm = LayerNorm(cfg.dim, eps=cfg.eps, elementwise_affine=False)
        self.head = nn.Linear(cfg.dim, math.prod(cfg.patch_size) * cfg.out_dim)
        self.modulation = nn.Parameter(torch.zeros(1, 2, cfg.dim))

    def forward(self, x, e):
        """e [B, F, 1, dim] (time embedding per frame)."""
        f = e.shape[1]
        shift, scale = (_like(self.modulation, e).unsqueeze(1) + e).chunk(2, dim=2)
        return self.head(self.norm(x).unflatten(1, (f, -1)) * (1 + scale) + shift)


_LAYERS = (nn.Linear, nn.Conv3d, nn.LayerNorm, RMSNorm)     # what ``from_modules`` takes whole


def merge_padding(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """rows [B, L, D] → (the first L' rows, logit bias [1, 1, 1, L'] or None).

    The rows after a prompt's tokens are padding: identical rows, hence identical keys and values in
    every layer. Attention over m identical keys equals attention over one of them whose logit is raised
    by log m (softmax weights e^s·m = e^(s + log m)), so the trailing run of rows equal to the last row
    is kept once, weighted. Same result, a fraction of the cross-attention work (at the published 512
    rows and a ~20-token prompt, 24× fewer keys), and closer to the exact value in float32 (measured:
    6e-8 vs 1.8e-6 relative to float64, since no long sum of equal terms is rounded).
    """
    n = rows.shape[1]
    if rows.is_meta:    # a dry run (core/files/memory_trace.py): no values; stand-in: every row kept (the most)
        return rows, None
    same = (rows == rows[:, -1:]).all(-1)                                     # [B, L]
    run = same.flip(1).to(torch.int32).cumprod(1).sum(1)                      # trailing run per sample
    keep = int(n - int(run.min()) + 1)
    if keep >= n:
        return rows, None
    bias = torch.zeros(1, 1, 1, keep, dtype=torch.float32, device=rows.device)
    bias[..., -1] = math.log(n - keep + 1)
    return rows[:, :keep], bias


class WanTransformer(nn.Module):
    """Wan transformer predicting flow (noise − x0) for a block of frames."""

    def __init__(self, cfg: WanConfig):
        super().__init__()
        self.cfg = cfg
        self.patch_embedding = nn.Conv3d(cfg.in_dim, cfg.dim, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.text_embedding = nn.Sequential(nn.Linear(cfg.text_dim, cfg.dim), nn.GELU(approximate="tanh"),
                                            nn.Linear(cfg.dim, cfg.dim))
        self.time_embedding = nn.Sequential(nn.Linear(cfg.freq_dim, cfg.dim), nn.SiLU(), nn.Linear(cfg.dim, cfg.dim))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(cfg.dim, cfg.dim * 6))
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.num_layers))
        self.head = Head(cfg)

    def tokens_per_frame(self, height: int, width: int) -> int:
        return (height // self.cfg.patch_size[1]) * (width // self.cfg.patch_size[2])

    def encode_text(self, prompt_embeds: torch.Tensor) -> TextContext:
        """prompt_embeds [B, L, text_dim] → per-layer cross-attention K/V (pad/cut to text_len rows first)."""
        b, length, _ = prompt_embeds.shape
        n = self.cfg.text_len
        if length >= n:
            padded = prompt_embeds[:, :n]
        else:
            padded = torch.cat([prompt_embeds, prompt_embeds.new_zeros(b, n - length, prompt_embeds.shape[2])], 1)
        rows, bias = merge_padding(padded)
        context = self.text_embedding(rows)
        extra = () if bias is None else (bias.to(context.dtype),)
        return TextContext([(*blk.cross_attn.text_kv(context), *extra) for blk in self.blocks])

    def forward(self, x: torch.Tensor, t: torch.Tensor, text: TextContext,
                ctx: AttentionContext | None = None) -> torch.Tensor:
        """x [B, C, F, H, W] noisy latents, t [B, F] timesteps (0..1000) → flow [B, C_out, F, H, W]."""
        x, e, e0, grid = self._embed(x, t)
        for blk, kv in zip(self.blocks, text.kv):
            x = blk(x, e0, grid, kv, ctx)
        x = self.head(x, e.unflatten(0, t.shape).unsqueeze(2))
        return self.unpatchify(x, grid, t.shape[0])

    def compile_blocks(self, **options) -> "WanTransformer":
        """torch.compile each layer's two cache-free halves (norms, modulation, projections, cross-attention,
        FFN); the cache and RoPE bookkeeping stay eager. ``options`` go to torch.compile. Returns self.

        Fuses the element-wise chains into few kernels; measured 1.06-1.09x per block on a 2-core CPU
        (benchmarks/compile_check.py); expected to pay more on CUDA, where element-wise work is a larger share.
        """
        for blk in self.blocks:
            blk._qkv = torch.compile(blk._qkv, **options)
            blk._after_attention = torch.compile(blk._after_attention, **options)
        return self

    def write_cache(self, x: torch.Tensor, t: torch.Tensor, text: TextContext, ctx: CacheWriter) -> None:
        """The K/V ``forward`` would hand to ``ctx`` for every layer, and nothing else (the AR loop's
        context pass): the last layer stops after its K/V projections and the head is skipped,
        since nothing reads the output. x [B, C, F, H, W], t [B, F] as in ``forward``."""
        x, _, e0, grid = self._embed(x, t)
        *layers, last = self.blocks
        for blk, kv in zip(layers, text.kv):
            x = blk(x, e0, grid, kv, ctx)
        last.write_kv(x, e0, ctx)

    def _embed(self, x: torch.Tensor, t: torch.Tensor):
        """Patch and time embeddings → tokens [B, F·H'·W', dim], e [B·F, dim], e0 [B, F, 6, dim], grid (F, H', W')."""
        x = self.patch_embed(x)
        grid = tuple(x.shape[2:])
        x = x.flatten(2).transpose(1, 2).contiguous()   # else every residual add keeps the transposed layout and every norm copies it
        e = self.time_embedding(sinusoidal_embedding(self.cfg.freq_dim, t.flatten()).type_as(x))
        e0 = self.time_projection(e).unflatten(1, (6, self.cfg.dim)).unflatten(0, t.shape)
        return x, e, e0, grid

    def patch_embed(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, F, H, W] → [B, dim, F, H', W'] (a subclass may run it in another dtype)."""
        return self.patch_embedding(x)

    @classmethod
    def from_modules(cls, cfg: WanConfig, modules: Mapping[str, nn.Module]) -> "WanTransformer":
        """This transformer's arithmetic over another implementation's layers of the same names (e.g. a host
        application's layers that cast, de-quantise or patch their weights per call, placed by its own memory
        manager). Built on the meta device; then every layer holding weights (Linear, Conv3d, the norms) is
        ``modules[name]`` and every loose parameter (the modulations) is the one the module of the same name holds.
        Only the weights come from ``modules``: activations, attention, RoPE and the cache stay this module's.
        Raises KeyError naming a layer ``modules`` lacks."""
        with torch.device("meta"):
            model = cls(cfg)
        for name, mod in list(model.named_modules()):
            own = [n for n, _ in mod.named_parameters(recurse=False)]
            if not own:
                continue
            if name not in modules:
                raise KeyError(f"the given layers have no '{name}' (a Wan transformer's layer)")
            if isinstance(mod, _LAYERS):
                parent, _, child = name.rpartition(".")
                setattr(model.get_submodule(parent), child, modules[name])
            else:
                for n in own:
                    setattr(mod, n, getattr(modules[name], n))
        return model.eval()

    def unpatchify(self, x: torch.Tensor, grid, b: int) -> torch.Tensor:
        """[B, F, H'·W', p·q·r·C] → [B, C, F·p, H'·q, W'·r]."""
        f, h, w = grid
        p, q, r = self.cfg.patch_size
        return rearrange(x, "b f (h w) (p q r c) -> b c (f p) (h q) (w r)", h=h, w=w, p=p, q=q, r=r)
