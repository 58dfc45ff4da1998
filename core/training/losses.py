"""The retrieval encoder's training loss (the "Window Temporal Delta" recipe).

Loss = MSE reconstruction + λΔ·Window-Temporal-Delta + λs·smoothness over ``seq_len`` consecutive
frames. Both regularisers see the raw (not L2-normalised) embeddings, as in the published
``ae/train.py``; only the delta hinge is scale-free (cosine), the smoothness term is not.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import TrainConfig

LOSS_NAMES = ("recon", "delta", "smooth", "total")


def delta_loss(emb: torch.Tensor, margin: float, window: int) -> torch.Tensor:
    """Window Temporal Delta on emb [B, S, D]: mean over k = 1..min(w, S−1) of
    mean_{b,t}(relu(cos(e_t, e_{t−k}) − m)). Zero when S < 2."""
    w = min(emb.shape[1] - 1, window)
    if w <= 0:
        return emb.new_zeros((), dtype=torch.float32)
    emb = emb.float()
    terms = [F.relu(F.cosine_similarity(emb[:, k:], emb[:, :-k], dim=-1) - margin).mean() for k in range(1, w + 1)]
    return torch.stack(terms).mean()


def smooth_loss(emb: torch.Tensor) -> torch.Tensor:
    """Trajectory smoothness on emb [B, S, D]: mean over b, t of sqrt(‖e_{t+1} − 2e_t + e_{t−1}‖² + 1e-8).
    Zero when S < 3."""
    if emb.shape[1] < 3:
        return emb.new_zeros((), dtype=torch.float32)
    accel = emb[:, 2:] - 2 * emb[:, 1:-1] + emb[:, :-2]
    return torch.sqrt(accel.float().pow(2).sum(-1) + 1e-8).mean()


def losses(model: nn.Module, chunk: torch.Tensor, cfg: TrainConfig) -> dict[str, torch.Tensor]:
    """chunk [B, S, C, H, W] → {"recon", "delta", "smooth", "total"} (scalars; delta and smooth weighted)."""
    b, s = chunk.shape[:2]
    flat = chunk.flatten(0, 1)
    recon, emb = model(flat)
    seq = emb.view(b, s, -1)
    out = {"recon": F.mse_loss(recon.float(), flat.float()),
           "delta": cfg.delta_weight * delta_loss(seq, cfg.delta_margin, cfg.delta_window),
           "smooth": cfg.smooth_weight * smooth_loss(seq)}
    out["total"] = out["recon"] + out["delta"] + out["smooth"]
    return out
