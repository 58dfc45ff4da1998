"""Rolling Forcing checkpoints: variants of the Wan2.1 1.3B family that run with the rolling block sampler
(core/sampling/samplers/rolling.py). Same transformer, same key names; Rolling Forcing's file has Self-Forcing's
layout and Causal-Forcing's long-video file the chunk-wise one, so only the file name tells them apart
(``NAME_HINTS``) and only the run settings change (``variants``: preset → ``FamilyDefaults``;
``BackboneFamily.defaults_for``).

Released files:

  ``checkpoints/rolling_forcing_dmd.pt``  TencentARC/RollingForcing a1477d0 (configs/rolling_forcing_dmd.yaml):
                                          steps 1000,800,600,400,200 — five blocks denoised together
  ``chunkwise/longvideo.pt``              thu-ml/Causal-Forcing 1fc7bbc (long_video/configs/rolling_forcing_dmd.yaml):
                                          the same code with steps 1000,750,500,250 — four blocks together

Window 21 and sink 3 (every call attends at most 21 frames, the published 21·1560 tokens, with the video's first
block as the anchor) and Rolling Forcing's steps are the rolling sampler's ``published`` settings, read from there.
"""
from __future__ import annotations

from dataclasses import replace

from ..sampling.defaults import FamilyDefaults
from ..sampling.samplers import get_sampler

ROLLING_FORCING = "Rolling Forcing"
CF_LONG_VIDEO = "Causal-Forcing long video"
PRESETS = (ROLLING_FORCING, CF_LONG_VIDEO)
CF_LONG_VIDEO_STEPS = (1000, 750, 500, 250)      # Causal-Forcing long_video/configs/rolling_forcing_dmd.yaml

# (file-name fragment, preset), checked before the family's other hints; names are lower-cased with "-" → "_"
NAME_HINTS = (("rolling_forcing", ROLLING_FORCING), ("rollingforcing", ROLLING_FORCING),
              ("longvideo", CF_LONG_VIDEO), ("long_video", CF_LONG_VIDEO))


def variants(chunkwise: FamilyDefaults) -> dict[str, FamilyDefaults]:
    """Each rolling preset's run settings: the chunk-wise family's, with the rolling sampler's published window,
    anchor and steps (Causal-Forcing's long video: its config's steps)."""
    published = get_sampler("rolling").published
    rolling = replace(chunkwise, sampler="rolling", window=published["window"], sink=published["sink"],
                      steps=tuple(published["steps"]), first_steps=())
    return {ROLLING_FORCING: rolling, CF_LONG_VIDEO: replace(rolling, steps=CF_LONG_VIDEO_STEPS)}
