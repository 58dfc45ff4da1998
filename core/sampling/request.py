"""What the user asked for (``SamplingRequest``: every field optional) and how it resolves against a backbone
family's published settings into the run's ``SamplingConfig`` (every field set).

The request is kept apart from the result: ``SamplingConfig.request`` is what was asked, and
``replace(config, **changes)`` re-resolves from it, so changing the strategy also changes the window,
sink, switch and options that follow from it. Precedence, for each setting: the user's value, else the
strategy's default on this family (core/context/strategies: ``StrategySpec.defaults_for``), else the family's.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace as replace_fields

from ..context.strategies import get_spec
from ..retrieval.config import RetrievalConfig
from .config import SamplingConfig, ShotConfig, SwitchConfig
from .defaults import FamilyDefaults


@dataclass(frozen=True)
class SamplingRequest:
    """The sampling settings a user set; None = not set (the strategy's or the family's value is used).

    ``strategy`` None: ``rag`` when ``retrieval`` is given, else ``native``. ``options``: the strategy's own
    settings, name → value pairs. ``switch``: the prompt-switch mode; ``global_sink``/``retrieval_scope`` its
    details. ``shot_sink`` None: the family's multi-shot sink in the native regime, off otherwise.
    """
    strategy: str | None = None
    window: int | None = None
    sink: int | None = None
    options: tuple[tuple[str, float], ...] = ()
    retrieval: RetrievalConfig | None = None
    frames_per_block: int | None = None
    sampler: str | None = None
    steps: tuple[int, ...] | None = None
    first_steps: tuple[int, ...] | None = None      # () = the first block takes ``steps`` like every other
    sampling_steps: int | None = None
    shift: float | None = None
    warp_steps: bool | None = None
    context_noise: float | None = None
    noise: str | None = None
    switch: str | None = None
    global_sink: bool | None = None
    retrieval_scope: str | None = None
    shot_rope_offset: float | None = None
    shot_sink: bool | None = None
    shot_clean_recache: bool | None = None
    start_block: str | None = None
    guidance_scale: float | None = None

    def __post_init__(self):
        object.__setattr__(self, "options", tuple(sorted(dict(self.options).items())))
        for name in ("steps", "first_steps"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, tuple(int(s) for s in getattr(self, name)))

    @property
    def strategy_name(self) -> str:
        return self.strategy if self.strategy is not None else "rag" if self.retrieval is not None else "native"


def resolve(request: SamplingRequest, family: FamilyDefaults) -> SamplingConfig:
    """The run's config: ``request`` over the strategy's defaults on ``family`` over the family's settings.
    Raises ValueError naming the setting when they do not fit together (SamplingConfig's checks)."""
    name = request.strategy_name
    spec = get_spec(name)
    defaults = spec.defaults_for(family.frames_per_block if request.frames_per_block is None
                                 else request.frames_per_block, family.window, family.sink)
    retrieval = request.retrieval
    if spec.top_k and retrieval is None:
        retrieval = RetrievalConfig(top_k=spec.top_k)
    elif not spec.top_k and retrieval is not None:
        raise ValueError(f"retrieval settings apply to strategy 'rag' only; strategy '{name}' retrieves nothing: "
                         "drop them (disconnect Retrieve Context) or choose rag")
    switch = SwitchConfig(request.switch or family.switch_for(name),
                          **{k: v for k, v in (("global_sink", request.global_sink),
                                               ("retrieval_scope", request.retrieval_scope)) if v is not None})
    native = name == "native"
    shots = ShotConfig(family.shots.rope_offset if request.shot_rope_offset is None else request.shot_rope_offset,
                       (family.shots.sink and native) if request.shot_sink is None else request.shot_sink,
                       bool(request.shot_clean_recache))
    pick = lambda asked, default: default if asked is None else asked   # noqa: E731
    sampler = pick(request.sampler, family.sampler)
    own = family.steps_for(sampler)       # the family's steps for its own sampler, another sampler's published ones
    # (with, for a sampler that publishes them, its window and sink: the rolling sampler's attention window, anchor)
    return SamplingConfig(
        strategy=name, window=pick(request.window, own.get("window", defaults.window)),
        sink=pick(request.sink, own.get("sink", defaults.sink)),
        strategy_options=_options(spec, {**defaults.options, **dict(request.options)}),
        retrieval=retrieval, frames_per_block=pick(request.frames_per_block, family.frames_per_block),
        sampler=sampler, steps=pick(request.steps, own.get("steps", family.steps)),
        first_steps=pick(request.first_steps, own.get("first_steps", ())),
        sampling_steps=pick(request.sampling_steps, own.get("sampling_steps", family.sampling_steps)), shift=pick(request.shift, family.shift),
        warp_steps=pick(request.warp_steps, True), context_noise=pick(request.context_noise, 0.0),
        noise=pick(request.noise, "per-block"), switch=switch, shots=shots,
        guidance_scale=pick(request.guidance_scale, 1.0),
        start_block=pick(request.start_block, family.start_block), scaled=defaults.scaled,
        request=request, family=family)


def replace(config: SamplingConfig, **changes) -> SamplingConfig:
    """The config of ``config``'s request with ``changes`` (SamplingRequest fields), resolved again over the same
    family: everything that follows from a changed setting (a strategy's window, sink, switch, options) follows."""
    if config.request is None or config.family is None:
        raise ValueError("this SamplingConfig was built field by field, not resolved from a request; build it with "
                         "resolve(SamplingRequest(...), family) to replace its settings")
    return resolve(replace_fields(config.request, **changes), config.family)


def _options(spec, options: dict) -> tuple[tuple[str, float], ...]:
    """Every option of the strategy with its value (its published default unless ``options`` sets it)."""
    params = spec.resolve_params(options)
    return tuple(sorted(asdict(params).items())) if params is not None else ()


def parse_options(text: str) -> dict[str, float]:
    """A strategy's options as text, 'compressed_frames=5, alpha_long=0.01' (commas or lines) → {name: number}
    (whole numbers written without a point stay ints); a clear error otherwise."""
    out = {}
    for item in (p.strip() for line in str(text).splitlines() for p in line.split(",")):
        if not item:
            continue
        name, sep, value = item.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = None
        if not sep or not name.strip() or number is None:
            raise ValueError(f"strategy option '{item}' must read name=number, e.g. compressed_frames=5")
        out[name.strip()] = int(number) if number.is_integer() and "." not in value else number
    return out

