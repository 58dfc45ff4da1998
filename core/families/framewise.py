"""Frame-wise Causal Forcing and Causal Forcing++ (thu-ml/Causal-Forcing 1fc7bbc): variants of the Wan2.1 1.3B
family whose blocks are ONE latent frame. Same transformer, same key names, same file layouts as the chunk-wise
checkpoints — only the training differs, so only the file name tells them apart (``NAME_HINTS``) and only the run
settings change (``VARIANTS``: preset → ``FamilyDefaults``; ``BackboneFamily.defaults_for``).

Released files (Hugging Face ``zhuhz22/Causal-Forcing``), pickles ``{"generator": …, "generator_ema": …}`` of
``model.<Wan name>`` tensors; the published commands pass ``--use_ema`` for all three, which this pack's loader
does by default (``use_ema``: ``generator_ema`` first):

  ``causal-forcing++/framewise-2step.pt``  Causal Forcing++ 2-step  (configs/causal_forcing_dmd_framewise_2step.yaml)
  ``causal-forcing++/framewise-1step.pt``  Causal Forcing++ 1-step  (configs/causal_forcing_dmd_framewise_1step.yaml)
  ``framewise/causal_forcing.pt``          Causal Forcing frame-wise, 4 steps (configs/causal_forcing_dmd_framewise.yaml)

Steps: the Causal Forcing++ configs give the first block its own list (``denoising_step_list_first_chunk``
[1000, 750, 500, 250]: a first frame without context gets four steps) and every later block [1000, 500] (2-step)
or [1000] (1-step, which draws no re-noise); all warped at shift 5 (1000/937.5/833.33/625, 1000/833.33).

Window: the published configs set none — every frame attends all earlier ones in a cache hard-coded to 21 Wan
480p frames, and a 22nd latent frame fails there, so the published setup ends at 81 video frames. This pack's
default is the reference's own sliding-window path (``local_attn_size`` 21, ``sink_size`` 1: the cache holds the
sink, the recent frames and the current frame; the oldest frame after the sink leaves, K cached after RoPE).
Window 21 because that is exactly what the published setup attends at its longest: the first 81 video frames are
the published run unchanged, and after them every frame keeps the context length it was trained with. Sink 1:
the first frame (the 4-step one), the sink of the chunk-wise Wan2.1 backbones here.
"""
from __future__ import annotations

from dataclasses import replace

from ..sampling.defaults import FamilyDefaults

FIRST_STEPS = (1000, 750, 500, 250)        # denoising_step_list_first_chunk of both Causal Forcing++ configs
WINDOW, SINK = 21, 1                       # see the module docstring

CF_PP_2STEP = "Causal-Forcing++ 2-step"
CF_PP_1STEP = "Causal-Forcing++ 1-step"
CF_FRAMEWISE = "Causal-Forcing frame-wise"
PRESETS = (CF_PP_2STEP, CF_PP_1STEP, CF_FRAMEWISE)

# (file-name fragment, preset), checked before the family's other hints; names are lower-cased with "-" → "_"
NAME_HINTS = (("framewise_2step", CF_PP_2STEP), ("framewise_1step", CF_PP_1STEP),
              ("framewise/causal_forcing", CF_FRAMEWISE), ("causal_forcing_framewise", CF_FRAMEWISE))


def variants(chunkwise: FamilyDefaults) -> dict[str, FamilyDefaults]:
    """Each frame-wise preset's run settings: the chunk-wise family's, with blocks of one frame, the window above
    and its own steps."""
    framewise = replace(chunkwise, frames_per_block=1, window=WINDOW, sink=SINK)
    return {CF_PP_2STEP: replace(framewise, steps=(1000, 500), first_steps=FIRST_STEPS),
            CF_PP_1STEP: replace(framewise, steps=(1000,), first_steps=FIRST_STEPS),
            CF_FRAMEWISE: replace(framewise, steps=FIRST_STEPS)}
