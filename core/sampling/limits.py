"""The bounds of one run, stated once: the planner, the config's checks, the samplers' step parsing, the CLI and
the node widgets refuse beyond them before anything is allocated. They lie far above every published setting;
below them, the memory that exists decides (core/sampling/budget.py, the planner's ``check_memory``)."""
from __future__ import annotations

import math

from ..latents.format import LatentFormat, formats

MAX_SECONDS = 3600          # video length: one hour
MAX_SIDE_PX = 4096          # either side of the video, in px
MAX_WINDOW = 128            # the KV cache window, in latent frames
MAX_STEPS = 1000            # denoising steps per block (the training grid has 1000 timesteps)
MAX_STEPS_TEXT = 8 * MAX_STEPS   # characters of a steps text: MAX_STEPS timesteps of up to 4 digits and a comma


def max_latent_frames(latent: LatentFormat, frames_per_block: int) -> int:
    """The most latent frames a run may make: MAX_SECONDS of video at the format's rate in whole blocks, and one
    block more (a start's shorter first block)."""
    return latent.latent_frames_for_seconds(MAX_SECONDS, frames_per_block) + frames_per_block


def max_video_frames(latent: LatentFormat | None = None) -> int:
    """The most video frames a run may be asked for: MAX_SECONDS at the format's rate (None: the fastest of the
    known formats, the node's widget bound), rounded up to a whole latent frame."""
    fps = latent.fps if latent is not None else max(f.fps for f in formats())
    return MAX_SECONDS * fps + 1


def max_latent_side(latent: LatentFormat) -> int:
    """The largest latent height or width: MAX_SIDE_PX at the format's spatial stride."""
    return MAX_SIDE_PX // latent.stride


def check_seconds(seconds: float) -> float:
    """A length in seconds: a number in (0, MAX_SECONDS]."""
    if not math.isfinite(seconds) or not 0 < seconds <= MAX_SECONDS:
        raise ValueError(f"length {seconds:g} s is outside the bounds of one run, more than 0 and at most "
                         f"{MAX_SECONDS} s ({MAX_SECONDS // 60} min): ask for a length in between")
    return seconds


def check_video_frames(video_frames: int, latent: LatentFormat) -> None:
    """A length in video frames: at most MAX_SECONDS at the format's rate."""
    most = max_video_frames(latent)
    if video_frames > most:
        raise ValueError(f"length {video_frames} video frames is {video_frames / latent.fps:.0f} s at {latent.fps} "
                         f"fps, beyond the bound of one run, {MAX_SECONDS} s: ask for at most {most} video frames")


def check_latent_frames(frames: int, latent: LatentFormat, frames_per_block: int) -> None:
    """A length in latent frames: at most ``max_latent_frames``."""
    most = max_latent_frames(latent, frames_per_block)
    if frames > most:
        seconds = latent.latent_to_video_frames(frames) / latent.fps
        raise ValueError(f"{frames} latent frames are {seconds:.0f} s of video at {latent.fps} fps, beyond the bound "
                         f"of one run, {MAX_SECONDS} s: ask for at most {most} latent frames")


def check_size(latent_hw: tuple[int, int], latent: LatentFormat) -> None:
    """A video size: at most MAX_SIDE_PX a side."""
    (h, w), most = latent_hw, max_latent_side(latent)
    if max(h, w) > most:
        raise ValueError(f"latent size {h}x{w} is {w * latent.stride}x{h * latent.stride} px, beyond the bound of "
                         f"{MAX_SIDE_PX} px a side ({latent.name} latents: at most {most}x{most}): choose a smaller "
                         "size (width/height or --latent-size)")


def check_steps(count: int, what: str) -> None:
    """A number of denoising steps (``what`` names the setting): 1 to MAX_STEPS."""
    if count > MAX_STEPS:
        raise ValueError(f"{what}: {count} steps per block is beyond the bound of {MAX_STEPS} (the training grid's "
                         "timesteps): ask for fewer")


def check_steps_text(text: str) -> None:
    """The text of a steps setting: at most MAX_STEPS_TEXT characters (checked before it is split)."""
    if len(text) > MAX_STEPS_TEXT:
        raise ValueError(f"steps text of {len(text)} characters is beyond the bound of {MAX_STEPS_TEXT} (at most "
                         f"{MAX_STEPS} steps): give a short list such as 1000,750,500,250 or a count such as 4")


def check_window(window: int) -> None:
    """The KV cache window: at most MAX_WINDOW latent frames."""
    if window > MAX_WINDOW:
        raise ValueError(f"window (local_attn_size) {window} latent frames is beyond the bound of {MAX_WINDOW}: ask "
                         f"for at most {MAX_WINDOW}")
