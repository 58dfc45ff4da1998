"""The run planner, shared by every front end: what the user asked (``RunRequest``, every field optional) and the
backbone's family → a ``RunPlan`` with nothing left unset (the sampling config, latent frames, latent size, blocks,
how the length was rounded, and the ``info`` text).

The CLI and the nodes only parse their inputs into a request, ask ``plan_run``, generate and wrap the result;
neither derives a setting of its own. A family's values come from its ``FamilyDefaults``; a strategy's from
``StrategySpec.defaults_for`` on that family; the user's from the request.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..context.strategies import describe as describe_strategy
from ..families.family import BackboneFamily
from ..sampling.config import SamplingConfig, check_latent_size
from ..sampling.defaults import FamilyDefaults, settings_line
from ..sampling import limits
from ..sampling.request import SamplingRequest, resolve
from .default_family import default_family


@dataclass(frozen=True)
class RunRequest:
    """What a front end was asked for; None = not set.

    Length: exactly one of ``frames`` (latent frames, exact), ``video_frames`` (rounded up to whole blocks) or
    ``seconds`` (the nearest whole number of blocks, at least one). Size: ``latent_hw``, or ``width``/``height`` in
    px (0 or None: the start's size, else the family's). ``start_frames``/``start_hw``: the latent frames the video
    begins with (an image, a clip, earlier latents) and their size.
    """
    sampling: SamplingRequest = field(default_factory=SamplingRequest)
    frames: int | None = None
    video_frames: int | None = None
    seconds: float | None = None
    latent_hw: tuple[int, int] | None = None
    width: int | None = None
    height: int | None = None
    start_frames: int = 0
    start_hw: tuple[int, int] | None = None


@dataclass(frozen=True)
class RunPlan:
    """A run with every setting resolved: ``config`` for ``generate``, ``frames`` latent frames of
    ``latent_hw``, the first ``start_frames`` given; ``notes``: how the request was rounded or scaled."""
    family: FamilyDefaults
    config: SamplingConfig
    frames: int
    latent_hw: tuple[int, int]
    start_frames: int = 0
    asked_video_frames: int | None = None
    preset: str = ""

    @property
    def blocks(self) -> list[tuple[int, int]]:
        """(first frame, frames) of every block, the start's included."""
        return self.config.blocks(self.frames, self.start_frames)

    @property
    def video_frames(self) -> int:
        return self.family.latent.latent_to_video_frames(self.frames)

    def info(self) -> list[str]:
        """What the run makes and with which settings, one fact per line (the sampler's ``info``, the CLI's log)."""
        fmt, cfg, video = self.family.latent, self.config, self.video_frames
        lines = [f"{self.frames} latent frames = {video} video frames ({video / fmt.fps:.2f} s at {fmt.fps} fps)"]
        if self.start_frames:
            p = self.start_frames
            kind = "an image" if p == 1 else f"{fmt.latent_to_video_frames(p)} video frames"
            held = (f", held clean inside the first block{'s' * (p > cfg.frames_per_block)}"
                    if cfg.start_block == "clamp" else "")
            lines.append(f"starts from the given {p} latent frames ({kind}), kept as given{held}")
        if self.asked_video_frames is not None and video != self.asked_video_frames:
            r = cfg.first_block(self.start_frames)
            after = f"a first block of the start's {r} latent frame{'s' * (r > 1)}, then " if r else ""
            lines.append(f"length {self.asked_video_frames} rounded up to {video} video frames ({after}whole blocks "
                         f"of {cfg.frames_per_block} latent frames)")
        lines.append(strategy_line(cfg))
        lines.append((f"{self.preset}: " if self.preset else "") + settings_line(cfg, fmt, self.latent_hw))
        return lines


def strategy_line(cfg: SamplingConfig) -> str:
    """The strategy a run uses and its settings, in one line (and what was scaled to the family's blocks)."""
    d = describe_strategy(cfg.strategy)
    options = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in cfg.strategy_options)
    return (f"strategy {cfg.strategy} ({d['title']}): window {cfg.window}, sink {cfg.sink}"
            + (f", top_k {cfg.retrieval.top_k}" if cfg.retrieval is not None else "")
            + f", prompt switch '{cfg.switch.mode}'" + (f", {options}" if options else "")
            + (f"; scaled to this backbone's blocks: {cfg.scaled}" if cfg.scaled else "") + f". Ref: {d['reference']}")


def plan_run(request: RunRequest, family: FamilyDefaults, preset: str = "") -> RunPlan:
    """The plan of ``request`` on a backbone of ``family`` (``preset``: its name for the info, e.g.
    "Self-Forcing"). Raises ValueError naming the setting to change when the request cannot run."""
    cfg = resolve(request.sampling, family)
    latent_hw = latent_size(request, family)
    frames = _frames(request, cfg, family)
    return RunPlan(family, cfg, frames, latent_hw, request.start_frames, request.video_frames, preset)


def latent_size(request: RunRequest, family: FamilyDefaults) -> tuple[int, int]:
    """The latent (H, W): asked in latents, or in px (0/None: the start's, else the family's published size);
    a start of another size is refused naming the widths and heights to use."""
    fmt = family.latent
    if request.latent_hw is not None:
        hw = check_latent_size(request.latent_hw)
    else:
        w, h = fmt.video_size(request.start_hw or family.latent_hw)
        hw = fmt.latent_size_for_video(request.width or w, request.height or h)
    limits.check_size(hw, fmt)
    if request.start_hw is not None and tuple(request.start_hw) != tuple(hw):
        (have_w, have_h), (want_w, want_h), (lh, lw) = fmt.video_size(request.start_hw), fmt.video_size(hw), request.start_hw
        raise ValueError(f"the start is {have_w}x{have_h} px (latent {lh}x{lw}) but the run makes {want_w}x{want_h}: "
                         f"set width {have_w} and height {have_h} (or 0: the start's size), or scale the image/clip "
                         f"to {want_w}x{want_h} before encoding it")
    return hw


def _frames(request: RunRequest, cfg: SamplingConfig, family: FamilyDefaults) -> int:
    """Latent frames of the whole video (the start included) from the one length the request gives."""
    given = [k for k in ("frames", "video_frames", "seconds") if getattr(request, k) is not None]
    if len(given) != 1:
        raise ValueError("give the length once: latent frames (--frames), video frames (--length / the sampler's "
                         f"'length') or seconds (--seconds); got {', '.join(given) or 'none'}")
    p, nf = request.start_frames, cfg.frames_per_block
    if request.frames is not None:
        frames = int(request.frames)
    elif request.seconds is not None:
        seconds = limits.check_seconds(float(request.seconds))
        frames = family.latent.latent_frames_for_seconds(seconds, nf) + cfg.first_block(p)
    else:
        if request.video_frames < 1:
            raise ValueError(f"length {request.video_frames} must be at least 1 video frame "
                             f"(e.g. {family.latent.latent_to_video_frames(4 * nf)})")
        limits.check_video_frames(request.video_frames, family.latent)
        frames = family.latent.latent_frames_for_video(request.video_frames, nf, cfg.first_block(p))
        if p and frames <= p:
            least = p + nf if cfg.start_block == "short" else -(-(p + 1) // nf) * nf
            raise ValueError(f"the start already holds {p} latent frames ({family.latent.latent_to_video_frames(p)} "
                             f"video frames) and length {request.video_frames} asks for no more: set length to at "
                             f"least {family.latent.latent_to_video_frames(least)}")
    limits.check_latent_frames(frames, family.latent, nf)
    cfg.check_frames(frames, p)
    return frames


def _family_defaults(family) -> FamilyDefaults:
    """The public API's ``family`` argument: a FamilyDefaults, a BackboneFamily, or None (the default family)."""
    if family is None:
        return default_family().defaults
    return family.defaults if isinstance(family, BackboneFamily) else family


def sampling_config(family=None, **request) -> SamplingConfig:
    """The resolved config of ``request`` (SamplingRequest fields) on ``family`` (None: the default family)."""
    return resolve(SamplingRequest(**request), _family_defaults(family))


def strategy_config(name: str, family=None, *, window: int | None = None, sink: int | None = None, options=None,
                    **request) -> SamplingConfig:
    """The config of a run with strategy ``name``: its defaults on ``family`` (None: the default family), with
    ``window``/``sink`` (None = the strategy's), ``options`` (its own settings, name → value) and any other
    SamplingRequest field overridden."""
    return sampling_config(family, strategy=name, window=window, sink=sink,
                           options=tuple((options or {}).items()), **request)
