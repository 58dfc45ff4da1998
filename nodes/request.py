"""The AR Block Sampler's inputs → a run request for the planner (core/app/plan.py); nothing here resolves a
setting: the planner does, from the backbone's family.

A widget at its "auto" value (0; -1 for the sink; "auto" for steps) asks for nothing, so the family's (or the
strategy's) setting is used; any other value is the artist's. The values earlier workflows saved (sink 1, window
12, blocks of 3, steps 1000,750,500,250, shift 5, 832x480) are the Wan2.1 family's own, so on those backbones they
mean exactly what they meant.
"""
from __future__ import annotations

from ..core.app.plan import RunRequest
from ..core.retrieval.config import RetrievalConfig
from ..core.sampling.samplers import get_sampler
from ..core.sampling.defaults import FamilyDefaults
from ..core.sampling.request import SamplingRequest
from .schedule import DEFAULT_SWITCH, SwitchChoice
from .settings import SamplerSettings
from .strategy import StrategyInput

AUTO = "auto"


def steps_fields(sampler: str, text: str) -> dict:
    """The 'steps' widget: 'auto' asks for nothing; otherwise what the run's sampler reads from it (re-noising:
    timesteps such as 1000,750,500,250; UniPC: a step count), in its own words when it does not parse."""
    text = str(text).strip().lower()
    return {} if text in ("", AUTO) else get_sampler(sampler).parse_steps(text)


def switch_mode(strategy: StrategyInput | None, switch: SwitchChoice) -> str | None:
    """The prompt-switch mode asked for: the Context Strategy's, else the Prompt Schedule's (its saved default
    'recache' next to a Context Strategy means "the strategy's own", as in workflows saved before strategies), else
    none (the family's or strategy's)."""
    if strategy is not None and strategy.switch is not None:
        return strategy.switch
    if strategy is not None and switch == SwitchChoice(DEFAULT_SWITCH.mode):
        return None
    return switch.mode


def sampling_request(family: FamilyDefaults, strategy: StrategyInput | None, retrieval: RetrievalConfig | None,
                     switch: SwitchChoice | None, noise: str, sink_size: int, local_attn_size: int,
                     frames_per_block: int, steps: str, shift: float,
                     settings: SamplerSettings | None = None) -> SamplingRequest:
    """The sampler's widgets, its Context Strategy, Retrieve Context and Sampler Settings inputs and the
    schedule's switch settings."""
    if strategy is not None and retrieval is not None and strategy.name != "rag":
        raise ValueError(f"Retrieve Context is connected but the Context Strategy is '{strategy.name}', which "
                         "retrieves nothing: disconnect Retrieve Context or set the strategy to rag")
    switch = switch or SwitchChoice()
    window, sink = local_attn_size or None, None if sink_size < 0 else sink_size
    if strategy is not None:                     # the strategy node's window and sink replace the sampler's
        window, sink = strategy.window, strategy.sink
    return SamplingRequest(strategy=strategy.name if strategy is not None else None, window=window, sink=sink,
                           options=strategy.options if strategy is not None else (), retrieval=retrieval,
                           frames_per_block=frames_per_block or None, shift=shift or None, noise=noise,
                           switch=switch_mode(strategy, switch), global_sink=switch.global_sink,
                           retrieval_scope=switch.retrieval_scope, **(settings or SamplerSettings()).fields(),
                           **steps_fields(settings.sampler if settings and settings.sampler else family.sampler,
                                          steps))


def run_request(sampling: SamplingRequest, length: int, width: int, height: int, start) -> RunRequest:
    """The whole run: ``length`` video frames, ``width`` x ``height`` px (0: the start's, else the family's), after
    the ``start`` (nodes/start.py ``StartLatent``, or None)."""
    return RunRequest(sampling, video_frames=length, width=width or None, height=height or None,
                      start_frames=start.frames if start is not None else 0,
                      start_hw=tuple(start.raw.shape[-2:]) if start is not None else None)
