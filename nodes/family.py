"""How the AR Block Sampler follows its backbone's family (core ``FamilyDefaults``, ``Backbone.defaults``).

A widget at its "auto" value (0; -1 for the sink; "auto" for steps) takes the family's published
setting, any other value is the artist's. The values earlier workflows saved (sink 1, window 12, blocks
of 3, steps 1000,750,500,250, shift 5, 832x480) are the Wan2.1 family's own, so on those backbones they
mean exactly what they meant; the new defaults are the auto values, which is what a LongLive 2.0 run
needs (blocks of 8, window 32, sink 8, UniPC 4 steps, 1280x704 at 24 fps).
"""
from __future__ import annotations

from ..core.sampling.defaults import FamilyDefaults
from ..core.sampling.config import SamplingConfig, parse_steps
from ..core.latents.format import LatentFormat

AUTO = "auto"


def sampler_fields(family: FamilyDefaults, sink_size: int, local_attn_size: int, frames_per_block: int, steps: str,
                   shift: float) -> dict:
    """The sampler's widgets → SamplingConfig fields (None = the family's)."""
    fields = {"frames_per_block": frames_per_block or None, "window": local_attn_size or None,
              "sink": None if sink_size < 0 else sink_size, "shift": shift or None}
    return {**fields, **steps_fields(family, steps)}


def steps_fields(family: FamilyDefaults, text: str) -> dict:
    """'auto' → the family's; a renoise family takes timesteps (1000,750,500,250), a UniPC one a step count."""
    text = str(text).strip().lower()
    if text in ("", AUTO):
        return {}
    if family.sampler == "unipc":
        try:
            return {"sampling_steps": int(text)}
        except ValueError:
            raise ValueError(f"steps '{text}': this backbone ({family.latent.name} latents) denoises each block with "
                             f"a UniPC solver; give its number of steps ({family.sampling_steps} as published) or "
                             "auto") from None
    return {"steps": parse_steps(text)}


def video_size(width: int, height: int, family: FamilyDefaults, start_hw: tuple[int, int] | None) -> tuple[int, int]:
    """Latent (H, W) of the run: a width or height of 0 is the start's when there is one, else the family's
    published size; sizes are checked against the family's latent format (Wan2.1: multiples of 16 px,
    Wan2.2: 32)."""
    fmt = family.latent
    h, w = start_hw or family.latent_hw
    return fmt.latent_size_for_video(width or w * fmt.stride, height or h * fmt.stride)


def run_info(name: str, cfg: SamplingConfig, fmt: LatentFormat, latent_hw: tuple[int, int]) -> str:
    """One line: what the backbone family made the run use (the widgets left at auto follow it)."""
    sampler = (f"UniPC {cfg.sampling_steps} steps" if cfg.sampler == "unipc"
               else f"steps {','.join(map(str, cfg.steps))}")
    shots = ""
    if cfg.shots.rope_offset or cfg.shots.sink:
        shots = (f"; a cut line starts a new shot (RoPE offset {cfg.shots.rope_offset:g}, multi-shot sink "
                 f"{'on' if cfg.shots.sink else 'off' + (' with retrieval' if cfg.retrieval is not None else '')})")
    h, w = latent_hw
    return (f"{name}: {w * fmt.stride}x{h * fmt.stride} px ({fmt.name} latents, {fmt.channels} channels, "
            f"{h}x{w}) at {fmt.fps} fps; blocks of {cfg.frames_per_block} latent frames, {sampler}, shift "
            f"{cfg.shift:g}{shots}")
