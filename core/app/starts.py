"""Where a text→video run begins: nothing, latents from a file, an image or a clip (encoded with the run's VAE).

An image is one latent frame; a clip of n video frames is trimmed to the first s·k + 1 (s = the latent
format's ``time_stride``, 4 for the Wan VAEs; k = ⌊(n − 1)/s⌋, what the VAE encodes) and becomes k + 1
latent frames. Its size must be the run's (the format's stride × the latent size: 8× for Wan2.1, 16× for
Wan2.2). The start's frames are replayed, then the rest is generated (core/sampling/loop.py ``generate``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..latents.format import LatentFormat
from .resume import read_start


@dataclass(frozen=True)
class StartFiles:
    """The CLI's start: latents (--continue-from), an image (--image) or a clip (--video); at most one."""
    latents: str | None = None      # --continue-from
    image: str | None = None        # --image
    video: str | None = None        # --video

    def __post_init__(self):
        given = [p for p in (self.latents, self.image, self.video) if p is not None]
        if len(given) > 1:
            raise ValueError("give one start: --continue-from, --image or --video")
        for p in given:
            if not Path(p).is_file():
                raise FileNotFoundError(f"start '{p}' does not exist")

    @property
    def given(self) -> bool:
        return any(p is not None for p in (self.latents, self.image, self.video))

    def frames(self, latent: LatentFormat) -> int:
        """Latent frames of the start in the run's ``latent`` format, read without any model (0 when there is
        none)."""
        if self.latents is not None:
            return read_start(self.latents).shape[2]
        if self.image is not None:
            return 1
        if self.video is not None:
            return latent.video_to_latent_frames(len(_read_clip(self.video, latent)))
        return 0

    def check(self, latent_hw: tuple[int, int], latent: LatentFormat) -> int:
        """Latent frames of the start (0: none), after checking an image's or clip's size against the run
        (``latent``: the backbone's latent format, its stride 8 Wan2.1 / 16 Wan2.2)."""
        if self.image is None and self.video is None:
            return self.frames(latent)
        frames = _read_image(self.image) if self.image is not None else _read_clip(self.video, latent)  # read once
        self._check_size(frames.shape[1:3], latent_hw, latent.stride)
        return latent.video_to_latent_frames(len(frames))

    def _check_size(self, hw, latent_hw, stride: int) -> None:
        h, w = latent_hw[0] * stride, latent_hw[1] * stride
        if tuple(hw) != (h, w):
            raise ValueError(f"start '{self.image or self.video}' is {hw[1]}x{hw[0]} px; the run is {w}x{h} (latent "
                             f"{latent_hw[0]}x{latent_hw[1]}): resize it, or pass --latent-size "
                             f"{hw[0] // stride}x{hw[1] // stride} if both sides are multiples of {stride * 2}")

    def load(self, vae, latent_hw: tuple[int, int]) -> torch.Tensor | None:
        """Model-space latents [1, C, P, H, W] (files: as stored), or None."""
        if self.latents is not None:
            return read_start(self.latents)
        if self.image is None and self.video is None:
            return None
        frames = _read_image(self.image) if self.image is not None else _read_clip(self.video, vae.latent)
        self._check_size(frames.shape[1:3], latent_hw, vae.latent.stride)
        video = torch.from_numpy(frames).permute(3, 0, 1, 2).unsqueeze(0).float() / 255.0   # [1, 3, T, H, W]
        return vae.encode(video).float().cpu()


def _read_image(path: str) -> np.ndarray:
    from PIL import Image
    with Image.open(path) as im:
        return np.array(im.convert("RGB"))[None]                                     # [1, H, W, 3]


def _read_clip(path: str, latent: LatentFormat) -> np.ndarray:
    """The clip's first s·k + 1 frames (s = the format's time stride): what its VAE encodes whole."""
    from ..files.video import read_video
    frames = read_video(path)
    if len(frames) == 0:
        raise ValueError(f"start video '{path}' has no frames")
    return frames[:latent.whole_video_frames(len(frames))]
