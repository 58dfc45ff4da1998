"""Latent formats: one VAE's latent space, every frames/seconds/pixels conversion of it, and raw VAE space
(ComfyUI LATENT) ↔ the backbone's model space.

z_model = (z_raw − mean) / std per channel; the backbones and the retrieval encoder work in model
space, ComfyUI's LATENT and VAE in raw space. The formats are told apart by their channel count:

- ``WAN21``: the Wan2.1 VAE, 16 channels, 8× spatial compression, 16 fps video (Wan2.1 T2V backbones);
- ``WAN22``: the Wan2.2 VAE, 48 channels, 16× spatial compression, 24 fps video (Wan2.2-TI2V-5B,
  LongLive 2.0). Values as ComfyUI's ``latent_formats.Wan22`` and the LongLive 2.0 VAE wrapper.

Both compress time 4× (``time_stride``): T_video = 4·(T_latent − 1) + 1. Every value of a format is
stated once, here or by whoever registers another one (``add_format``; the family registry does it for
each family's format), and everything else asks the format.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

WAN21_MEAN = (-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
              0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921)
WAN21_STD = (2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
             3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160)
WAN22_MEAN = (-0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557,
              -0.1382, 0.0542, 0.2813, 0.0891, 0.1570, -0.0098, 0.0375, -0.1825,
              -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108, -0.2158, 0.2502,
              -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.1230,
              -0.0313, -0.1649, 0.0117, 0.0723, -0.2839, -0.2083, -0.0520, 0.3748,
              0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667)
WAN22_STD = (0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013,
             0.8158, 1.0344, 0.5894, 1.0901, 0.6885, 0.6165, 0.8454, 0.4978,
             0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659,
             0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999, 0.6866, 0.4093,
             0.5709, 0.6065, 0.6415, 0.4944, 0.5726, 1.2042, 0.5458, 1.6887,
             0.3971, 1.0600, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744)


@dataclass(frozen=True)
class LatentFormat:
    """One VAE's latent space: its channels, normalisation, compression, the video rate of its models, the
    files its VAE ships as and ComfyUI's name for it. Every frames / seconds / pixels conversion is a method."""
    name: str                   # "Wan2.1" / "Wan2.2", in messages
    vae: str                    # what encodes it, in messages: "the Wan2.1 VAE"
    mean: tuple[float, ...]
    std: tuple[float, ...]
    stride: int                 # spatial compression (video px per latent px)
    time_stride: int            # temporal compression: T_video = time_stride·(T_latent − 1) + 1
    fps: int                    # video frame rate of the backbones working in it
    vae_file: str               # ComfyUI's file of the VAE (models/vae/)
    vae_original: str           # the VAE as its authors released it
    comfy_latent: str           # ComfyUI's latent format (comfy.latent_formats.<name>), e.g. for previews

    def __post_init__(self):
        if len(self.mean) != len(self.std) or not self.mean:
            raise ValueError(f"latent format {self.name}: {len(self.mean)} means and {len(self.std)} stds; give one "
                             "of each per channel")
        if min(self.stride, self.time_stride, self.fps) < 1:
            raise ValueError(f"latent format {self.name}: stride {self.stride}, time stride {self.time_stride} and "
                             f"fps {self.fps} must all be ≥ 1")

    @property
    def channels(self) -> int:
        return len(self.mean)

    # ------------------------------------------------------------------ time
    def video_to_latent_frames(self, video_frames: int) -> int:
        """T_video = s·(T_latent − 1) + 1 ⇒ T_latent = (T_video − 1) / s + 1, rounded up (s = ``time_stride``)."""
        s = self.time_stride
        return (max(video_frames, 1) - 1 + s - 1) // s + 1

    def latent_to_video_frames(self, latent_frames: int) -> int:
        return self.time_stride * (latent_frames - 1) + 1

    def whole_video_frames(self, video_frames: int) -> int:
        """The longest clip of at most ``video_frames`` frames the VAE encodes whole: s·⌊(n − 1)/s⌋ + 1."""
        return (video_frames - 1) // self.time_stride * self.time_stride + 1

    def latent_frames_for_video(self, video_frames: int, frames_per_block: int, start: int = 0) -> int:
        """Video frames → latent frames, rounded up to whole blocks; after a start of ``start`` latent frames,
        rounded up to the start's remainder (start mod frames_per_block, its shorter first block:
        ``SamplingConfig.blocks``) plus whole blocks."""
        latent = self.video_to_latent_frames(video_frames)
        r = start % frames_per_block
        return r + -(-max(latent - r, 0) // frames_per_block) * frames_per_block

    def latent_frames_for_seconds(self, seconds: float, frames_per_block: int) -> int:
        """Latent frames of a video of at least ``seconds`` at this format's rate, in whole blocks (≥ 1): the
        blocks that hold seconds·fps video frames after the first (30 s at 16 fps, blocks of 3: 120 latent
        frames = 477 video frames; at 24 fps, blocks of 8: 184 = 733), as the sampler rounds its ``length``."""
        if seconds <= 0:
            raise ValueError(f"length {seconds} s must be > 0")
        blocks = max(1, math.ceil(seconds * self.fps / self.time_stride / frames_per_block - 1e-9))
        return blocks * frames_per_block

    def seconds_to_frame(self, seconds: float) -> int:
        """The first latent frame at or after ``seconds`` (latent frame i shows time i·time_stride/fps s)."""
        return math.ceil(seconds * self.fps / self.time_stride - 1e-9)

    def frame_to_seconds(self, frame: int) -> float:
        return frame * self.time_stride / self.fps

    # ------------------------------------------------------------------ space
    def latent_size_for_video(self, width: int, height: int, patch: int = 2) -> tuple[int, int]:
        """Video width × height → latent (H, W); both must be multiples of the stride × the transformer's
        spatial ``patch`` (Wan2.1: 8 × 2 = 16; Wan2.2: 16 × 2 = 32)."""
        step = self.stride * patch
        if width <= 0 or height <= 0 or width % step or height % step:
            raise ValueError(f"width {width} and height {height} must be positive multiples of {step} "
                             f"(e.g. {max(step, width - width % step)}x{max(step, height - height % step)})")
        return height // self.stride, width // self.stride

    def video_size(self, latent_hw: tuple[int, int]) -> tuple[int, int]:
        """Latent (H, W) → video (width, height) in px."""
        return latent_hw[1] * self.stride, latent_hw[0] * self.stride


WAN21 = LatentFormat("Wan2.1", "the Wan2.1 VAE", WAN21_MEAN, WAN21_STD, stride=8, time_stride=4, fps=16,
                     vae_file="wan_2.1_vae.safetensors", vae_original="Wan2.1_VAE.pth", comfy_latent="Wan21")
WAN22 = LatentFormat("Wan2.2", "the Wan2.2 VAE", WAN22_MEAN, WAN22_STD, stride=16, time_stride=4, fps=24,
                     vae_file="wan2.2_vae.safetensors", vae_original="Wan2.2_VAE.pth", comfy_latent="Wan22")
_FORMATS: list[LatentFormat] = [WAN21, WAN22]


def formats() -> tuple[LatentFormat, ...]:
    """Every known latent format (the Wan ones and any a registered family brought), in registration order."""
    return tuple(_FORMATS)


def add_format(fmt: LatentFormat) -> bool:
    """Make ``fmt`` known to the channel lookups; False when it already was. Two formats with one channel count
    cannot be told apart: that is an error naming both."""
    if fmt in _FORMATS:
        return False
    other = format_for_channels(fmt.channels)
    if other is not None:
        raise ValueError(f"latent format {fmt.name} has {fmt.channels} channels like {other.name}: latents are told "
                         f"apart by their channel count; give it another count or reuse {other.name}'s format")
    _FORMATS.append(fmt)
    return True


def remove_format(fmt: LatentFormat) -> None:
    """Forget a format ``add_format`` added (unknown formats are ignored)."""
    if fmt in _FORMATS:
        _FORMATS.remove(fmt)


def format_for_channels(channels: int) -> LatentFormat | None:
    """The latent format with this many channels (16: Wan2.1, 48: Wan2.2, or a registered one), or None."""
    return next((f for f in _FORMATS if f.channels == channels), None)


def channel_counts() -> str:
    """The known channel counts for messages: "16 or 48"."""
    counts = [str(f.channels) for f in _FORMATS]
    return " or ".join([", ".join(counts[:-1]), counts[-1]] if len(counts) > 1 else counts)


def _stats(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    fmt = format_for_channels(z.shape[1]) if z.dim() == 5 else None
    if fmt is None:
        names = " / ".join(f.vae for f in _FORMATS)
        raise ValueError(f"expected video latents [B, {channel_counts()}, T, H, W] ({names}); got {list(z.shape)}")
    shape = (1, -1, 1, 1, 1)
    return (torch.tensor(fmt.mean, dtype=z.dtype, device=z.device).view(shape),
            torch.tensor(fmt.std, dtype=z.dtype, device=z.device).view(shape))


def to_model_space(z_raw: torch.Tensor) -> torch.Tensor:
    """[B, C, T, H, W] raw VAE latents (C tells the format: 16 Wan2.1, 48 Wan2.2, …) → model-normalised."""
    mean, std = _stats(z_raw)
    return (z_raw - mean) / std


def to_raw_space(z_model: torch.Tensor) -> torch.Tensor:
    """[B, C, T, H, W] model-normalised → raw VAE latents (what VAE decoders and ComfyUI expect)."""
    mean, std = _stats(z_model)
    return z_model * std + mean
