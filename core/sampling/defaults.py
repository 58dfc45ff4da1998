"""A backbone family's published run settings (``FamilyDefaults``): what runs unless the user says otherwise."""
from __future__ import annotations

from dataclasses import dataclass

from ..context.strategies import get_spec
from ..latents.format import LatentFormat
from .config import ShotConfig
from .samplers import get_sampler


@dataclass(frozen=True)
class FamilyDefaults:
    """A backbone family's published run settings: used for every setting the user leaves unset when a
    checkpoint of the family is loaded (shown by the CLI and the nodes). Plain data; ``resolve``
    (core/sampling/request.py) builds the run's config over it."""
    latent: LatentFormat                          # channels, VAE, spatial stride, video fps
    frames_per_block: int
    window: int
    sink: int
    sampler: str                                  # a block sampler's name (core/sampling/samplers)
    steps: tuple[int, ...]                        # renoise sampler
    sampling_steps: int                           # unipc sampler
    shift: float
    shots: ShotConfig
    switch: str                                   # what a prompt change does (SwitchConfig.mode)
    start_block: str
    latent_hw: tuple[int, int]                    # the published video size in latents
    first_steps: tuple[int, ...] = ()             # renoise: the video's first block's own steps (empty: ``steps``)
    negative_prompt: str = ""                     # the text a guided run's negative prompt defaults to

    def steps_for(self, sampler: str) -> dict:
        """The step fields (SamplingConfig) of a run with ``sampler``: this family's own for its sampler, the
        sampler's published ones for another (a family states steps for its own sampler only)."""
        if sampler == self.sampler:
            return {"steps": self.steps, "sampling_steps": self.sampling_steps, "first_steps": self.first_steps}
        return dict(get_sampler(sampler).published)

    def switch_for(self, strategy: str) -> str:
        """What a prompt switch does by default: this family's mode for its own sliding window (native, rag),
        the strategy's published one otherwise."""
        spec = get_spec(strategy)
        return self.switch if spec.follows_family else spec.switch

    def describe(self) -> str:
        """One line: what runs unless told otherwise."""
        return settings_line(self, self.latent, self.latent_hw)


def settings_line(s, fmt: LatentFormat, latent_hw: tuple[int, int]) -> str:
    """One line: the video size and rate and the block settings of ``s`` (a SamplingConfig, or a family's
    FamilyDefaults: the same names) — the one summary the CLI, Load Backbone and the sampler's info print."""
    steps = get_sampler(s.sampler).describe(s)
    shots = ""
    if s.shots.on:
        retrieval = getattr(s, "retrieval", None) is not None
        shots = (f"; a cut line starts a new shot (RoPE offset {s.shots.rope_offset:g}, multi-shot sink "
                 f"{'on' if s.shots.sink else 'off' + (' with retrieval' if retrieval else '')})")
    h, w = latent_hw
    return (f"{w * fmt.stride}x{h * fmt.stride} px ({fmt.name} latents, {fmt.channels} channels, {h}x{w}) at "
            f"{fmt.fps} fps; blocks of {s.frames_per_block} latent frame{'s' if s.frames_per_block != 1 else ''}, window {s.window}, sink {s.sink}, {steps}, "
            f"shift {s.shift:g}{shots}")
