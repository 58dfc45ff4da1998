"""Generation speed in one line, stated the way the field asks ("honest FPS"): video frames per second of the block
loop, and how it was measured.

    from speed_line import Measured, speed_line
    print(speed_line(Measured(...)))

Every speed figure this project prints (benchmarks/strategies.py on CPU, benchmarks/gpu_check.py on CUDA) goes through
``speed_line``, so a CPU medium-size row and the first GPU run's row read the same. A video frame per block is a
latent frame per block times the latent format's temporal stride (Wan: 4); what is timed is the block loop only.
"""
from __future__ import annotations

import os
import platform
from dataclasses import dataclass

import torch

INCLUDED = "the block loop (every denoising forward, the context pass, retrieval and pool work)"
EXCLUDED = "text encoding, VAE decode, model load"


@dataclass(frozen=True)
class Measured:
    """One measured run: the median seconds of its timed blocks and everything a reader needs to judge them.

    ``block_s``: median seconds per block; ``blocks``: how many blocks the median is over; ``latent_frames_per_block``
    and ``time_stride`` (video frames per latent frame); ``latent_hw`` and ``spatial_stride`` (px per latent px);
    ``tokens_per_frame``; ``steps``: the sampler's steps in words ("steps 1000,750,500,250", "UniPC 4 steps");
    ``forwards_per_block``: backbone calls per block, counted (denoising + context pass, ×2 when guided);
    ``model``: "medium 4×512, random weights" or the released model's name; ``device``: ``device_name()``;
    ``skipped``: what leaves the median out at the start ("blocks before latent frame 30: window filling, warm-up").
    """
    block_s: float
    blocks: int
    latent_frames_per_block: int
    time_stride: int
    latent_hw: tuple[int, int]
    spatial_stride: int
    tokens_per_frame: int
    steps: str
    forwards_per_block: float
    model: str
    dtype: torch.dtype
    device: str
    skipped: str
    extra: str = ""            # e.g. "strategy rag (6 retrieved)", "guidance 3 (a second cache)"

    @property
    def video_frames_per_block(self) -> int:
        return self.latent_frames_per_block * self.time_stride

    @property
    def video_fps(self) -> float:
        """Video frames generated per second of the block loop."""
        return self.video_frames_per_block / self.block_s


def device_name(device: torch.device | str = "cpu", threads: int | None = None) -> str:
    """'NVIDIA H100 80GB HBM3' on CUDA; on CPU the model name and the threads torch uses ('CPU AMD EPYC, 2
    threads of 2 cores')."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = _cpu_model() or platform.processor() or platform.machine()
    n = threads or torch.get_num_threads()
    return f"CPU {model}, {n} thread{'s' if n > 1 else ''} of {os.cpu_count()} cores"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        return ""


def _dtype(dtype: torch.dtype) -> str:
    return {torch.float32: "float32", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, str(dtype))


def speed_line(m: Measured) -> str:
    """One line: '<fps> video fps (<n> video frames per block in <ms> ms) — <how it was measured>'."""
    h, w = m.latent_hw
    forwards = f"{m.forwards_per_block:g}"
    return (f"{m.video_fps:.2f} video fps ({m.latent_frames_per_block} latent × {m.time_stride} = "
            f"{m.video_frames_per_block} video frames per block in {1e3 * m.block_s:.1f} ms, median of {m.blocks} "
            f"blocks) — {m.device}, {_dtype(m.dtype)}, {w * m.spatial_stride}×{h * m.spatial_stride} px "
            f"({h}×{w} latents, {m.tokens_per_frame} tokens per frame), {m.steps}: {forwards} backbone forwards "
            f"per block incl. the context pass, model {m.model}" + (f", {m.extra}" if m.extra else "")
            + f"; timed: {INCLUDED}; excluded: {EXCLUDED}, {m.skipped}")


class ForwardCounter:
    """Counts the backbone's calls block by block: use it as ``generate``'s callback on a model wrapped with
    ``count(model)``; ``per_block[b]`` = forwards (denoising, guidance, context pass: ``model(...)`` and
    ``model.write_cache(...)``) that block ``b`` ran."""

    def __init__(self):
        self.calls, self._at, self.per_block = 0, 0, {}

    def reset(self) -> None:
        """Start a new run on the same counted model."""
        self._at, self.per_block = self.calls, {}

    def count(self, model):
        for name in ("forward", "write_cache"):
            original = getattr(model, name, None)
            if original is not None:
                setattr(model, name, self._counted(original))
        return model

    def _counted(self, fn):
        def call(*args, **kwargs):
            self.calls += 1
            return fn(*args, **kwargs)
        return call

    def __call__(self, update) -> None:
        self.per_block[update.block], self._at = self.calls - self._at, self.calls
