"""Wan2.1 latent normalisation: raw VAE space (ComfyUI LATENT) ↔ the backbone's model space.

z_model = (z_raw − mean) / std per channel; the backbones and the retrieval encoder work in model
space, ComfyUI's LATENT and VAE in raw space.
"""
from __future__ import annotations

import torch

WAN21_MEAN = (-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
              0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921)
WAN21_STD = (2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
             3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160)


def _stats(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if z.dim() != 5 or z.shape[1] != len(WAN21_MEAN):
        raise ValueError(f"expected Wan2.1 video latents [B, 16, T, H, W]; got {list(z.shape)}")
    shape = (1, -1, 1, 1, 1)
    return (torch.tensor(WAN21_MEAN, dtype=z.dtype, device=z.device).view(shape),
            torch.tensor(WAN21_STD, dtype=z.dtype, device=z.device).view(shape))


def to_model_space(z_raw: torch.Tensor) -> torch.Tensor:
    """[B, 16, T, H, W] raw VAE latents → model-normalised."""
    mean, std = _stats(z_raw)
    return (z_raw - mean) / std


def to_raw_space(z_model: torch.Tensor) -> torch.Tensor:
    """[B, 16, T, H, W] model-normalised → raw VAE latents (what VAE decoders and ComfyUI expect)."""
    mean, std = _stats(z_model)
    return z_model * std + mean


def video_frames_to_latent_frames(video_frames: int) -> int:
    """T_video = 4·(T_latent − 1) + 1 ⇒ T_latent = (T_video − 1) / 4 + 1 (rounded up)."""
    return (max(video_frames, 1) - 1 + 3) // 4 + 1


def latent_frames_to_video_frames(latent_frames: int) -> int:
    return 4 * (latent_frames - 1) + 1


VAE_STRIDE = 8      # Wan2.1 VAE: 8× spatial, 4× temporal compression
VIDEO_FPS = 16


def latent_frames_for_video(video_frames: int, frames_per_block: int, start: int = 0) -> int:
    """Video frames → latent frames ((n − 1)/4 + 1), rounded up to whole blocks; after a start of
    ``start`` latent frames, rounded up to the start's remainder (start mod frames_per_block, its
    shorter first block: ``SamplingConfig.blocks``) plus whole blocks."""
    latent = video_frames_to_latent_frames(video_frames)
    r = start % frames_per_block
    return r + -(-max(latent - r, 0) // frames_per_block) * frames_per_block


def latent_frames_for_seconds(seconds: float, frames_per_block: int) -> int:
    """Latent frames for a duration at 16 fps (4 video frames per latent frame), in whole blocks (≥ 1)."""
    if seconds <= 0:
        raise ValueError(f"length {seconds} s must be > 0")
    blocks = max(1, round(seconds * VIDEO_FPS / 4 / frames_per_block))
    return blocks * frames_per_block


def latent_size_for_video(width: int, height: int, patch: int = 2) -> tuple[int, int]:
    """Video width × height → latent (H, W); both must be multiples of the VAE stride × the patch (16)."""
    step = VAE_STRIDE * patch
    if width <= 0 or height <= 0 or width % step or height % step:
        raise ValueError(f"width {width} and height {height} must be positive multiples of {step} "
                         f"(e.g. {max(step, width - width % step)}x{max(step, height - height % step)})")
    return height // VAE_STRIDE, width // VAE_STRIDE
