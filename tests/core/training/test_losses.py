"""The retrieval encoder's training losses as published: Window Temporal Delta and smoothness on the raw embedding."""
import math

import pytest
import torch
import torch.nn as nn

from core.training.config import TrainConfig
from core.training.losses import delta_loss, losses, smooth_loss


def cos(a, b):
    return float(a @ b / (a.norm() * b.norm()))


def test_delta_loss_is_the_mean_over_offsets_of_the_mean_cosine_hinge():
    e = torch.randn(2, 5, 7, generator=torch.Generator().manual_seed(0))
    m = 0.1
    per_k = []
    for k in (1, 2, 3):
        hinges = [max(0.0, cos(e[b, t], e[b, t - k]) - m) for b in range(2) for t in range(k, 5)]
        per_k.append(sum(hinges) / len(hinges))
    assert delta_loss(e, m, 3).item() == pytest.approx(sum(per_k) / 3, rel=1e-5)


def test_delta_loss_uses_at_most_seq_len_minus_one_offsets_and_zero_below_the_margin():
    e = torch.tensor([[[1.0, 0.0], [1.0, 0.1]]])            # S = 2: only k = 1
    assert delta_loss(e, 0.5, 3).item() == pytest.approx(cos(e[0, 1], e[0, 0]) - 0.5, rel=1e-5)
    assert delta_loss(e, 0.999, 3).item() == 0.0
    assert delta_loss(e[:, :1], 0.5, 3).item() == 0.0


def test_smooth_loss_is_the_mean_acceleration_norm():
    e = torch.zeros(1, 5, 2)
    e[0, :, 0] = torch.tensor([0.0, 1.0, 4.0, 9.0, 16.0])   # second difference 2 everywhere
    e[0, :, 1] = torch.tensor([0.0, 0.0, 0.0, 3.0, 0.0])    # adds 0, 3, −6 at t = 1, 2, 3
    want = (math.sqrt(4 + 1e-8) + math.sqrt(4 + 9 + 1e-8) + math.sqrt(4 + 36 + 1e-8)) / 3
    assert smooth_loss(e).item() == pytest.approx(want, rel=1e-6)
    assert smooth_loss(e[:, :2]).item() == 0.0


class FixedEmbedding(nn.Module):
    """Reconstructs perfectly and embeds frame t as scale·(t², 1)."""

    def __init__(self, scale):
        super().__init__()
        self.scale = scale

    def forward(self, x):
        t = torch.arange(x.shape[0], dtype=torch.float32) % 4
        return x, self.scale * torch.stack([t * t, torch.ones_like(t)], -1)


def test_regularisers_see_the_raw_embedding_as_published():
    chunk = torch.zeros(2, 4, 1, 1, 1)
    cfg = TrainConfig(delta_margin=0.5, delta_weight=2.0, smooth_weight=3.0)
    one, ten = losses(FixedEmbedding(1.0), chunk, cfg), losses(FixedEmbedding(10.0), chunk, cfg)
    assert one["recon"].item() == 0.0
    assert ten["delta"].item() == pytest.approx(one["delta"].item(), rel=1e-5)      # cosine: scale-free
    assert ten["smooth"].item() == pytest.approx(10 * one["smooth"].item(), rel=1e-5)  # not normalised
    emb = FixedEmbedding(1.0)(chunk.flatten(0, 1))[1].view(2, 4, 2)
    assert one["smooth"].item() == pytest.approx(3.0 * smooth_loss(emb).item())
    assert one["delta"].item() == pytest.approx(2.0 * delta_loss(emb, 0.5, 3).item())
    assert one["total"].item() == pytest.approx(one["recon"].item() + one["delta"].item() + one["smooth"].item())
