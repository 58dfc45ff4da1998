"""Where a text→video run begins: nothing, latents from a file, an image or a clip (encoded with the run's VAE).

An image is one latent frame; a clip of n video frames is trimmed to the first s·k + 1 (s = the latent
format's ``time_stride``, 4 for the Wan VAEs; k = ⌊(n − 1)/s⌋, what the VAE encodes) and becomes k + 1
latent frames. An image or clip of another size than the run's (the format's stride × the latent size: 8× for
Wan2.1, 16× for Wan2.2) is centre-cropped to the run's aspect ratio and scaled to its size, as ComfyUI's Upscale
Image with crop "center" does in the image-to-video workflows. The start's frames are replayed, then the rest is
generated (core/sampling/loop.py ``generate``).
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

    def check(self, latent_hw: tuple[int, int], latent: LatentFormat, report=None) -> int:
        """Latent frames of the start (0: none), read without any model (``latent``: the backbone's latent format,
        its stride 8 Wan2.1 / 16 Wan2.2); ``report`` is told when an image or clip will be fitted to the run's size."""
        if self.image is None and self.video is None:
            return self.frames(latent)
        frames = self._read(latent)                                                   # read once
        px = (latent_hw[0] * latent.stride, latent_hw[1] * latent.stride)
        if report is not None and frames.shape[1:3] != px:
            report(f"start '{self.image or self.video}' is {frames.shape[2]}x{frames.shape[1]} px: centre-cropped to "
                   f"the run's aspect ratio and scaled to its {px[1]}x{px[0]} px (latent "
                   f"{latent_hw[0]}x{latent_hw[1]}; another size: --width/--height or --latent-size)")
        return latent.video_to_latent_frames(len(frames))

    def _read(self, latent: LatentFormat) -> np.ndarray:
        return _read_image(self.image) if self.image is not None else _read_clip(self.video, latent)

    def load(self, vae, latent_hw: tuple[int, int]) -> torch.Tensor | None:
        """Model-space latents [1, C, P, H, W] (files: as stored; an image or clip fitted to the run's size first),
        or None."""
        if self.latents is not None:
            return read_start(self.latents)
        if self.image is None and self.video is None:
            return None
        stride = vae.latent.stride
        frames = fit_frames(self._read(vae.latent), (latent_hw[0] * stride, latent_hw[1] * stride))
        video = torch.from_numpy(frames).permute(3, 0, 1, 2).unsqueeze(0).float() / 255.0   # [1, 3, T, H, W]
        return vae.encode(video).float().cpu()


def fit_frames(frames: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """uint8 frames [T, h, w, 3] → [T, H, W, 3] for ``hw`` = (H, W) px: each centre-cropped to the aspect ratio of
    (H, W) and scaled to it (bicubic); returned as given when already (H, W)."""
    if tuple(frames.shape[1:3]) == tuple(hw):
        return frames
    from PIL import Image, ImageOps
    size = (hw[1], hw[0])
    return np.stack([np.asarray(ImageOps.fit(Image.fromarray(f), size, Image.Resampling.BICUBIC)) for f in frames])


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
