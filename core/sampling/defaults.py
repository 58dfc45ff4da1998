"""A backbone family's published run settings (``FamilyDefaults``): what runs unless the user says otherwise."""
from __future__ import annotations

from dataclasses import dataclass

from ..context.strategies import get_spec
from ..latents.format import LatentFormat
from ..retrieval.config import RetrievalConfig
from .config import SamplingConfig, ShotConfig, SwitchConfig
from .samplers import get_sampler


@dataclass(frozen=True)
class FamilyDefaults:
    """A backbone family's published run settings: used for every setting the user leaves unset when a
    checkpoint of the family is loaded (shown by the CLI and the nodes). Plain data; ``sampling`` builds
    the run's config from it."""
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

    def sampling(self, retrieval: RetrievalConfig | None, switch: SwitchConfig | None = None,
                 shot_sink: bool | None = None, shot_rope_offset: float | None = None, **settings) -> SamplingConfig:
        """The run's config: ``settings`` (SamplingConfig fields; None = this family's value) over these
        defaults. ``switch`` None = SwitchConfig with this family's mode. The shot sink defaults to the
        family's in the native regime and to off otherwise (it pins frames of the native window).

        The family's window, sink and switch are those of its own sliding window (strategies native and
        rag); another ``strategy`` keeps its published window, sink and switch unless they are given. Likewise
        the family's steps are its own sampler's; another ``sampler`` brings its published steps."""
        strategy = settings.get("strategy")
        sampler = settings.get("sampler") or self.sampler
        own = {"frames_per_block": self.frames_per_block, "sampler": sampler, **self.steps_for(sampler),
               "shift": self.shift, "start_block": self.start_block}
        window_of_family = strategy in (None, "native", "rag")
        if window_of_family:
            own.update(window=self.window, sink=self.sink)
            switch = switch or SwitchConfig(self.switch)
        own.update({k: v for k, v in settings.items() if v is not None})
        native = strategy in (None, "native") and retrieval is None
        sink = (self.shots.sink and native) if shot_sink is None else shot_sink
        offset = self.shots.rope_offset if shot_rope_offset is None else shot_rope_offset
        return SamplingConfig(retrieval=retrieval, switch=switch, shots=ShotConfig(offset, sink), **own)

    def steps_for(self, sampler: str) -> dict:
        """The step fields (SamplingConfig) of a run with ``sampler``: this family's own for its sampler, the
        sampler's published ones for another (a family states steps for its own sampler only)."""
        if sampler == self.sampler:
            return {"steps": self.steps, "sampling_steps": self.sampling_steps}
        return dict(get_sampler(sampler).published)

    def switch_for(self, strategy: str) -> str:
        """What a prompt switch does by default: this family's mode for its own sliding window (native, rag),
        the strategy's published one otherwise."""
        return self.switch if strategy in ("native", "rag") else get_spec(strategy).switch

    def describe(self) -> str:
        """One line: what runs unless told otherwise."""
        steps = get_sampler(self.sampler).describe(self)
        shots = (f", shot RoPE offset {self.shots.rope_offset:g}" + (", multi-shot sink" if self.shots.sink else "")
                 if self.shots.rope_offset or self.shots.sink else "")
        h, w = self.latent_hw
        return (f"blocks of {self.frames_per_block} frames, window {self.window}, sink {self.sink}, {steps}, "
                f"shift {self.shift:g}{shots}; {self.latent.name} latents ({self.latent.channels} channels), "
                f"{w * self.latent.stride}x{h * self.latent.stride} px at {self.latent.fps} fps")
