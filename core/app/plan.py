"""The run planner, shared by every front end: what the user asked (``RunRequest``, every field optional) and the
backbone's family → a ``RunPlan`` with nothing left unset (the sampling config, latent frames, latent size, blocks,
how the length was rounded, and the ``info`` text).

The CLI and the nodes only parse their inputs into a request, ask ``plan_run``, generate and wrap the result;
neither derives a setting of its own. A family's values come from its ``FamilyDefaults``; a strategy's from
``StrategySpec.defaults_for`` on that family; the user's from the request.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch

from ..context.strategies import describe as describe_strategy
from ..families.family import BackboneFamily
from ..files.memory import device_available, disk_free, host_available
from ..model.backbone import BackboneModel
from ..model.fp8_linear import to_fp8
from ..retrieval.pool import pool_folder
from ..sampling.budget import LATENT_COPIES, RunBytes, device_bytes, run_bytes, weight_bytes
from ..sampling.memory import AUTO, EXACT, MemorySettings
from ..sampling.config import SamplingConfig, check_latent_size
from ..sampling.defaults import FamilyDefaults, settings_line
from ..sampling import limits
from ..sampling.request import SamplingRequest, resolve
from .default_family import default_family
from .fact_text import size


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


def check_memory(plan: RunPlan, model: BackboneModel, batch: int, device, dtype: torch.dtype, *,
                 device_room: int | None = None, memory: MemorySettings = EXACT) -> RunBytes:
    """Refuse, before anything is allocated, a run that the memory which exists cannot hold, in one line with the
    numbers and the fix. On the compute ``device``: the weights (unless ``model`` is already there), the window's
    cache, the context buffers and one block's forward, against its free memory (``device_room`` when the front
    end knows better: ComfyUI frees its own models). In RAM: the video's latents at their peak and the history
    pool's RAM part (on a CPU the device's bytes too), against what the machine leaves this process
    (core/files/memory.py). On disk: what the pool spills, against the free space there. ``model``: the
    backbone, possibly on the meta device; ``batch``: prompts per run; ``memory``: the run's resolved memory
    settings (``choose_memory``). Returns the estimate."""
    need = run_bytes(model, plan.config, plan.latent_hw, plan.frames, batch, dtype, memory)
    device = torch.device(device)
    resident = _resident(model, device)
    on_device = (0 if resident else need.device.weights) + need.working
    cpu = device.type == "cpu"
    rooms = {"host": host_available(), "device": host_available() if cpu else
             device_room if device_room is not None else device_available(device)}
    reserved = {"host": need.host + (on_device if cpu else 0), "device": on_device}
    pool = _pool_placement(plan, need.pool, rooms, reserved)
    d = need.device
    parts = {"the weights": 0 if resident else d.weights, "the KV cache": d.cache, "the context buffers": d.buffers,
             "the retrieved frames": d.retrieved, "the prompt's K/V": d.text, "one block's forward": d.activations}
    ram = {f"the video's latents ×{LATENT_COPIES}": need.host, "the History Pool": pool.get("host", 0)}
    if cpu:
        _refuse(plan, need, {**parts, **ram, "the History Pool": pool.get("host", 0) + pool.get("device", 0)},
                rooms["host"], "RAM")
    else:
        on_gpu = {**parts, "the History Pool": pool.get("device", 0)}
        _refuse(plan, need, on_gpu, rooms["device"], f"{device} memory")
        _refuse(plan, need, ram, rooms["host"], "RAM")
    folder = pool_folder(plan.config.retrieval.pool.directory) if plan.config.retrieval else None
    free = disk_free(folder) if folder is not None else None
    if pool.get("disk", 0) and free is not None and pool["disk"] > free:
        raise ValueError(f"the History Pool spills {size(pool['disk'])} to disk in '{folder}' but {size(free)} is "
                         "free there: free space, choose another pool folder, store it compactly (kv-half, kv-fp8, latent) "
                         "or make the video shorter")
    return need


def memory_choices(settings: MemorySettings, layers: int, device) -> list[MemorySettings]:
    """The settings ``auto`` may become, best first: lossless before lossy (exact K/V before fp8), and among the
    lossless the fastest first (one context buffer per layer, then one shared, then ever more swapped blocks).
    A CPU swaps nothing (host memory is its device memory)."""
    swaps = [0] if torch.device(device).type == "cpu" else list(range(layers + 1))
    pick = lambda asked, options: options if asked == AUTO else [asked]   # noqa: E731
    out, contexts = [], pick(settings.context, ["per-layer", "shared"])
    for kv in pick(settings.kv, ["exact", "fp8"]):
        for context in contexts:       # blocks are swapped only once the context is as small as it gets
            for swap in pick(settings.block_swap, swaps if context == contexts[-1] else swaps[:1]):
                out.append(MemorySettings(context, kv, swap))
    return out


@dataclass(frozen=True)
class MemoryChoice:
    """The resolved memory settings, a line for the run's info, and whether they fit the free memory."""
    settings: MemorySettings
    line: str
    fits: bool = True


def choose_memory(plan: RunPlan | tuple[SamplingConfig, tuple[int, int]], model: BackboneModel, batch: int, device,
                  dtype: torch.dtype, settings: MemorySettings = MemorySettings(), *, device_room: int | None = None
                  ) -> MemoryChoice:
    """``settings`` with each ``auto`` resolved: the first of ``memory_choices`` whose device bytes
    (core/sampling/budget.py ``needed``) fit the free device memory (``device_room`` when the front end knows
    better), else the most compact (check_memory then refuses it with the numbers). ``plan``: a RunPlan or
    (config, latent_hw)."""
    cfg, latent_hw = (plan.config, plan.latent_hw) if isinstance(plan, RunPlan) else plan
    device = torch.device(device)
    cpu = device.type == "cpu"
    room = host_available() if cpu else device_room if device_room is not None else device_available(device)
    options = memory_choices(settings, model.cfg.num_layers, device)
    if room is None:
        return MemoryChoice(options[0], f"memory: {options[0].describe()}")
    room += weight_bytes(model, dtype) if _resident(model, device) else 0
    for choice in options:
        need = device_bytes(model, cfg, latent_hw, batch, dtype, choice).needed
        if need <= room:
            how = "" if settings.resolved else f" (auto: {size(need)} of the {size(room)} free)"
            return MemoryChoice(choice, f"memory: {choice.describe()}{how}")
    return MemoryChoice(options[-1], f"memory: {options[-1].describe()} (the most compact; it does not fit)", False)


def choose_weights(plan: RunPlan, model: BackboneModel, batch: int, device, dtype: torch.dtype,
                   settings: MemorySettings, weights: str, file_fp8: bool, *, device_room: int | None = None) -> str:
    """The weights setting with ``auto`` resolved: native on a CPU; fp8 for an fp8 file on a GPU, or when the run
    fits only with fp8 weights (``model``: the backbone on the meta device, in its native dtype)."""
    if weights != AUTO:
        return weights
    if torch.device(device).type == "cpu":
        return "native"
    if file_fp8:
        return "fp8"
    if choose_memory(plan, model, batch, device, dtype, settings, device_room=device_room).fits:
        return "native"
    fp8 = to_fp8(copy.deepcopy(model))
    return "fp8" if choose_memory(plan, fp8, batch, device, dtype, settings, device_room=device_room).fits else "native"


def _resident(model: BackboneModel, device: torch.device) -> bool:
    return any(p.device.type == device.type and device.index in (None, p.device.index) for p in model.parameters())


def _pool_placement(plan: RunPlan, total: int, rooms: dict, reserved: dict) -> dict[str, int]:
    """Bytes of the history pool in each of its tiers at the end of the run, as the pool will place them."""
    out, left = {}, total
    if plan.config.retrieval is None or not total:
        return out
    pool = plan.config.retrieval.pool
    for i, kind in enumerate(pool.tier_kinds):
        budget = None if kind == "disk" else pool.budget_for(i, rooms[kind], reserved[kind])
        out[kind] = left if budget is None else min(left, budget)
        left -= out[kind]
    return out


def _refuse(plan: RunPlan, need: RunBytes, parts: dict[str, int], room: int | None, where: str) -> None:
    """Raise when ``parts`` (name → bytes) do not fit in ``room`` bytes of ``where``, naming the largest parts
    and what to change about the largest."""
    total = sum(parts.values())
    if room is None or total <= room:
        return
    shown = ", ".join(f"{name} {size(n)}" for name, n in sorted(parts.items(), key=lambda p: -p[1]) if n)
    largest = max(parts, key=parts.get)
    raise ValueError(f"this run needs {size(total)} of {where} ({shown}) but {size(room)} is free: "
                     f"{_fix(plan, need, largest, total - room)}")


def _fix(plan: RunPlan, need: RunBytes, largest: str, over: int) -> str:
    """What to change when ``largest`` (a part's name) is the largest part of a run ``over`` bytes too big."""
    if largest.startswith("the video's latents"):
        per_frame = LATENT_COPIES * need.latents // plan.frames
        fit = max(0, plan.frames - -(-over // per_frame))
        fit -= fit % plan.config.frames_per_block
        fmt = plan.family.latent
        return (f"make the video shorter (about {fit} latent frames = {fmt.latent_to_video_frames(max(fit, 1))} video "
                "frames fit) or smaller (width and height)")
    if largest == "the weights":
        return ("load the backbone in a 16-bit dtype (bfloat16) or with fp8 weights, swap blocks to host memory "
                "(block swap), or run on a device with more memory")
    if largest == "the History Pool":
        pool = plan.config.retrieval.pool
        how = ("keep it in RAM (location host)" if pool.location == "device" else
               "give it the auto budget (it spills to disk beyond what memory holds)" if pool.budget_mb is None else
               "give it a smaller budget or the auto one")
        return (f"the History Pool keeps every frame that left the window; {how}, or store it compactly "
                "(kv-half, kv-fp8, latent)")
    return ("make the video smaller (width and height) or the window shorter, or leave the memory settings on auto "
            "(shared context buffers, block swap, an fp8 KV cache)")


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
