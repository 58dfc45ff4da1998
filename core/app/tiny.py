"""Tiny random Wan transformers: the one factory of the tests, the benchmarks and ``python -m core demo``.

``tiny_config()`` is 2 layers and 2 heads of width 64 on 16 latent channels (any other ``WanConfig`` field can be
given); ``tiny_model(seed)`` builds one with seeded random-normal weights, so the same seed and sizes give the
same weights everywhere. Sizes that matter to a caller (a checkpoint's shapes, a benchmark's real size) are
written out there, not here.
"""
from __future__ import annotations

import torch

from ..model.transformer import WanConfig, WanTransformer


def tiny_config(dim: int = 64, layers: int = 2, heads: int = 2, text_dim: int = 32, channels: int = 16,
                **fields) -> WanConfig:
    """A Wan transformer of ``layers`` layers and ``heads`` heads of total width ``dim`` (ffn 2·dim, time embedding
    32 wide) on ``channels`` latent channels; ``fields`` override any other ``WanConfig`` field (e.g. freq_dim)."""
    sizes = dict(dim=dim, ffn_dim=2 * dim, num_layers=layers, num_heads=heads, text_dim=text_dim, freq_dim=32,
                 in_dim=channels, out_dim=channels)
    return WanConfig(**{**sizes, **fields})


def randomise(model: torch.nn.Module, std: float = 0.05, bias_std: float = 0.02) -> torch.nn.Module:
    """Every weight N(0, std), every 1-d parameter (biases, norm scales) N(0, bias_std), drawn in parameter order
    from torch's global generator; returns the model in eval mode without gradients."""
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, std) if p.dim() > 1 else p.normal_(0, bias_std)
    return model.eval().requires_grad_(False)


def tiny_model(seed: int = 0, config: WanConfig | None = None, *, std: float = 0.05, bias_std: float = 0.02,
               module=WanTransformer, **sizes) -> WanTransformer:
    """A random Wan transformer of ``config`` (default: ``tiny_config(**sizes)``): torch's global generator seeded
    with ``seed``, the model built (``module``: the class, e.g. another copy of it), then ``randomise``d."""
    torch.manual_seed(seed)
    return randomise(module(config or tiny_config(**sizes)), std, bias_std)
