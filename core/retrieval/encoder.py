"""The retrieval encoder: a small convolutional autoencoder on latent frames.

Key names follow the released ``ae_latent_mem.pt`` (``encoder.conv_stack.*``,
``encoder.final_norm.*``, ``encoder.fc.*``, ``decoder.*``). Only the encoder is used for
retrieval; the decoder exists for training. The encoder works at any spatial size
(global average pooling); the decoder reconstructs the configured size.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..files.safe_reader import read_weights, why_unreadable


@dataclass
class EncoderConfig:
    """The encoder's sizes. The defaults are those of the released LongLive-RAG encoder (ae_latent_mem.pt, Wan2.1
    latents at 480x832): a file that states no size is read with them; everything else states its own."""
    in_channels: int = 16
    spatial_h: int = 60
    spatial_w: int = 104
    latent_dim: int = 1024
    hidden_dims: list[int] = field(default_factory=lambda: [64, 128, 256])


def group_count(channels: int) -> int:
    """Largest of (32, 16, 8, 4, 1) dividing channels."""
    return next(g for g in (32, 16, 8, 4, 1) if channels % g == 0)


class ResBlock(nn.Module):
    """GN → SiLU → conv → GN → SiLU → conv, plus skip."""

    def __init__(self, ch: int):
        super().__init__()
        self.block = nn.Sequential(
            nn.GroupNorm(group_count(ch), ch), nn.SiLU(), nn.Conv2d(ch, ch, 3, padding=1),
            nn.GroupNorm(group_count(ch), ch), nn.SiLU(), nn.Conv2d(ch, ch, 3, padding=1))
        nn.init.zeros_(self.block[-1].weight)
        nn.init.zeros_(self.block[-1].bias)

    def forward(self, x):
        return x + self.block(x)


class Encoder(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        layers: list[nn.Module] = []
        ch = cfg.in_channels
        for hd in cfg.hidden_dims:
            layers += [nn.Conv2d(ch, hd, 3, stride=2, padding=1), nn.GroupNorm(group_count(hd), hd), nn.SiLU(),
                       ResBlock(hd)]
            ch = hd
        self.conv_stack = nn.Sequential(*layers)
        self.final_norm = nn.Sequential(nn.GroupNorm(group_count(ch), ch), nn.SiLU())
        self.fc = nn.Linear(ch, cfg.latent_dim)

    def forward(self, x):
        """[N, C, H, W] → [N, latent_dim] (not normalised)."""
        h = self.final_norm(self.conv_stack(x))
        return self.fc(h.mean(dim=(-2, -1)))


def bottleneck_size(cfg: EncoderConfig) -> tuple[int, int]:
    h, w = cfg.spatial_h, cfg.spatial_w
    for _ in cfg.hidden_dims:  # conv 3x3, stride 2, pad 1
        h, w = (h - 1) // 2 + 1, (w - 1) // 2 + 1
    return h, w


class Decoder(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        bh, bw = bottleneck_size(cfg)
        rev = list(reversed(cfg.hidden_dims))
        self.feat_shape = (rev[0], bh, bw)
        self.target = (cfg.spatial_h, cfg.spatial_w)
        self.fc = nn.Sequential(nn.Linear(cfg.latent_dim, rev[0] * bh * bw), nn.SiLU())
        layers: list[nn.Module] = []
        for a, b in zip(rev[:-1], rev[1:]):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(a, b, 3, padding=1),
                       nn.GroupNorm(group_count(b), b), nn.SiLU(), ResBlock(b)]
        self.upsample_stack = nn.Sequential(*layers)
        self.final = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                   nn.Conv2d(rev[-1], cfg.in_channels, 3, padding=1))

    def forward(self, z):
        h = self.fc(z).view(-1, *self.feat_shape)
        h = self.final(self.upsample_stack(h))
        return h[:, :, : self.target[0], : self.target[1]]


class RetrievalEncoder(nn.Module):
    """Autoencoder on latent frames; ``describe`` gives the L2-normalised retrieval descriptor."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)

    def forward(self, x):
        """x [N, C, H, W] → (reconstruction [N, C, H, W], embedding [N, latent_dim])."""
        z = self.encoder(x)
        return self.decoder(z), z

    @torch.no_grad()
    def describe(self, frames: torch.Tensor) -> torch.Tensor:
        """frames [N, C, H, W] (any dtype) → L2-normalised descriptors [N, latent_dim], float32."""
        p = next(self.parameters())
        return F.normalize(self.encoder(frames.to(device=p.device, dtype=p.dtype)).float(), dim=-1)


def load_encoder(path: str | Path, device: str | torch.device = "cpu") -> RetrievalEncoder:
    """Load a ``{"model": state_dict, "config": {...}}`` checkpoint (the released format).

    Raises ValueError naming the file when it is not a retrieval-encoder checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"retrieval encoder '{path}' does not exist; pass the path of ae_latent_mem.pt "
                                "(or a train-encoder checkpoint), or use avg_pool")
    ckpt = read_weights(path, "retrieval encoder").content   # CheckpointError (a ValueError) names the problem
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        found = sorted(ckpt)[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"retrieval encoder '{path}' has top-level {found}; expected a dict with 'model' "
                         "(state dict) and 'config' (in_channels, spatial_h, spatial_w, latent_dim, hidden_dims)")
    names = {f.name for f in dataclasses.fields(EncoderConfig)}
    cfg = EncoderConfig(**{k: v for k, v in dict(ckpt["config"]).items() if k in names})
    cfg.hidden_dims = [int(h) for h in cfg.hidden_dims]
    state = ckpt["model"]
    if not any(k.startswith("encoder.conv_stack.") for k in state):
        raise ValueError(f"retrieval encoder '{path}' has no 'encoder.conv_stack.*' weights (found e.g. "
                         f"{sorted(state)[:3]}); it is not a LongLive-RAG retrieval encoder")
    model = RetrievalEncoder(cfg)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatch
        raise ValueError(f"retrieval encoder '{path}' weights do not fit its config "
                         f"{dataclasses.asdict(cfg)}: {why_unreadable(exc)}; train it again or use avg_pool") from exc
    missing_enc = [k for k in missing if k.startswith("encoder.")]
    if missing_enc or [k for k in unexpected if k.startswith("encoder.")]:
        raise ValueError(f"retrieval encoder '{path}' does not match its config {dataclasses.asdict(cfg)}: "
                         f"missing {missing_enc[:4]}, unexpected {[k for k in unexpected][:4]}")
    return model.to(device).eval()
