"""Prompt schedules: which prompt conditions which latent frames, and the block where each switch fires.

A schedule is an ordered list of segments (start latent frame, prompt embeddings [B, L, text_dim]);
segment 0 starts at frame 0. A switch asked for at latent frame s fires at the first block whose
start b ≥ s, and at most one switch fires per block (a second one asked for inside the same block
fires at the next block): LongLive's rule for ``switch_frame_indices``. The switch block is the first
one generated under the new prompt. A schedule of one segment is a single prompt.

Text form (CLI ``--prompt-schedule``, the Prompt Schedule node), one prompt per line::

    0s: a red fox trots through a snowy birch forest
    12.5s: the fox stops at the edge of a frozen lake
    60f: the ice cracks under its paws

``Ns`` = N seconds of video at the backbone's rate, read by its ``LatentFormat`` (the ``latent`` argument:
Wan2.1, 16 fps and 4 video frames per latent frame: latent frame ⌈4·N⌉; Wan2.2, 24 fps: ⌈6·N⌉), ``Nf`` =
latent frame N. Blank lines and lines starting with ``#`` are skipped. JSON form: a list of
``{"time": "12s", "prompt": "..."}`` (a bare number is seconds).

A prompt can be marked as a hard cut, a new scene rather than a continuation: ``24s cut: a lighthouse at
night`` or, the same, ``24s#: …`` (JSON ``"cut": true``). What a cut does depends on the run: with the
infinity-rope strategy a RoPE cut at that switch (∞-RoPE's scene cut); on a family with shots (LongLive 2.0,
``SamplingConfig.shots``) a new shot — its first block is conditioned on ``SCENE_CUT_PREFIX`` + prompt, as
LongLive 2.0 was trained (``Segment.cut_embeds``), the rest of the shot on the prompt itself. Otherwise a
cut is an ordinary switch.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ..latents.format import LatentFormat

SYNTAX = ("'<time>: <prompt>' with the time in seconds (12s) or latent frames (48f), '<time> cut: <prompt>' "
          "for a hard cut (a new scene or shot)")
SCENE_CUT_PREFIX = "The scene transitions. "   # LongLive 2.0's marker of a shot's first block (its dataset's default)
_LINE = re.compile(r"^(?P<time>\S+?)(?P<hash>#)?(?:\s+(?P<cut>cut))?\s*:\s*(?P<prompt>.*)$", re.IGNORECASE)
_TIME = re.compile(r"^(?P<value>\d+(?:\.\d*)?|\.\d+)(?P<unit>[sf])$")


@dataclass(frozen=True)
class TimedPrompt:
    """One line of a schedule: where it is (``where``, for messages), its time as written, the latent
    frame it asks for, its prompt text and whether it starts with a hard cut."""
    where: str
    time: str
    frame: int
    text: str
    cut: bool = False           # begins with a hard cut (a new scene / shot)

    def describe(self) -> str:
        short = self.text if len(self.text) <= 40 else self.text[:37] + "..."
        return f"{self.where} '{self.time}{' cut' if self.cut else ''}: {short}'"


def parse_time(time: str, where: str, latent: LatentFormat) -> int:
    """'12s' / '12.5s' / '48f' → latent frame (seconds read at ``latent``'s rate); a clear error naming
    ``where`` otherwise."""
    m = _TIME.match(time.strip().lower())
    if m is None or (m["unit"] == "f" and "." in m["value"]):
        raise ValueError(f"{where}: time '{time}' does not parse; write seconds like 12s or 12.5s, or a whole "
                         "number of latent frames like 48f")
    value = float(m["value"])
    return latent.seconds_to_frame(value) if m["unit"] == "s" else int(value)


def parse_schedule_text(text: str, source: str = "schedule", *, latent: LatentFormat) -> list[TimedPrompt]:
    """Lines of ``time: prompt`` → timed prompts, checked (see ``check_timed``). ``source`` names the
    file or node in messages ("schedule.txt line 3 ..."); seconds are of a video in ``latent``'s format."""
    out = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{source} line {number}"
        m = _LINE.match(line)
        if m is None or _TIME.match(m["time"].lower()) is None:
            raise ValueError(f"{where} '{line[:50]}' does not parse; write {SYNTAX}, e.g. '12s: the fox stops'")
        out.append(TimedPrompt(where, m["time"], parse_time(m["time"], where, latent), m["prompt"].strip(),
                               bool(m["cut"] or m["hash"])))
    return check_timed(out, source)


def parse_schedule_json(data, source: str = "schedule", *, latent: LatentFormat) -> list[TimedPrompt]:
    """``[{"time": "12s" | 12.0, "prompt": "..."}, ...]`` → timed prompts, checked like the text form."""
    if not isinstance(data, list):
        raise ValueError(f"{source}: a JSON schedule is a list of {{\"time\": \"12s\", \"prompt\": \"...\"}} objects")
    out = []
    for i, item in enumerate(data):
        where = f"{source} entry {i}"
        if not isinstance(item, dict) or "time" not in item or "prompt" not in item:
            raise ValueError(f"{where} is {json.dumps(item)[:60]}; write {{\"time\": \"12s\", \"prompt\": \"...\"}}")
        time = item["time"]
        time = f"{time}s" if isinstance(time, (int, float)) and not isinstance(time, bool) else str(time)
        cut = item.get("cut", False)
        if not isinstance(cut, bool):
            raise ValueError(f"{where}: \"cut\" is {json.dumps(cut)}; write true or false")
        out.append(TimedPrompt(where, time, parse_time(time, where, latent), str(item["prompt"]).strip(), cut))
    return check_timed(out, source)


def read_schedule_file(path: str | Path, latent: LatentFormat) -> list[TimedPrompt]:
    """A schedule file: JSON when it ends in .json, else the text form (seconds of a video in ``latent``'s
    format)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prompt schedule '{path}' does not exist; pass a text file with lines {SYNTAX}")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"prompt schedule '{path}' is not valid JSON ({exc})") from None
        return parse_schedule_json(data, path.name, latent=latent)
    return parse_schedule_text(text, path.name, latent=latent)


def retime(prompts: list[TimedPrompt], latent: LatentFormat, source: str = "schedule") -> list[TimedPrompt]:
    """The same lines with their seconds read in ``latent``'s format (a backbone of another rate than they
    were parsed for; ``Nf`` times stay), checked again: ``Ns`` and ``Nf`` lines may change order at another
    rate."""
    return check_timed([replace(p, frame=parse_time(p.time, p.where, latent)) for p in prompts], source)


def check_timed(prompts: list[TimedPrompt], source: str = "schedule") -> list[TimedPrompt]:
    """At least one prompt, none empty, the first at 0, times strictly increasing."""
    if not prompts:
        raise ValueError(f"{source} holds no prompt; write one line per prompt, {SYNTAX}, starting at 0s")
    for i, p in enumerate(prompts):
        if not p.text:
            raise ValueError(f"{p.where} '{p.time}:' has no prompt after the time; write the prompt after the "
                             f"colon, e.g. '{p.time}: the fox stops', or delete the line")
        if i == 0 and p.frame != 0:
            raise ValueError(f"{p.describe()}: the first prompt must start at 0s (or 0f); change its time to 0s "
                             "or add a line '0s: ...' before it")
        if i == 0 and p.cut:
            raise ValueError(f"{p.describe()}: the first prompt begins the video, not a new scene or shot; remove its "
                             "'cut' (or #)")
        if i and p.frame <= prompts[i - 1].frame:
            prev = prompts[i - 1]
            raise ValueError(f"{p.describe()} asks for latent frame {p.frame}, not after {prev.where} "
                             f"('{prev.time}' = frame {prev.frame}): times must increase; reorder the lines or "
                             "fix the time")
    return prompts


@dataclass(frozen=True)
class Segment:
    """One prompt of a schedule: the latent frame it was asked for, its embeddings [B, L, text_dim]
    and where it came from (for messages and records). ``cut``: the switch into it is a hard cut (a new
    scene / shot); ``cut_embeds`` (same layout) condition a shot's first block instead of ``embeds`` (None:
    ``embeds`` throughout)."""
    start: int
    embeds: torch.Tensor
    label: str = ""
    cut: bool = False
    cut_embeds: torch.Tensor | None = None


@dataclass(frozen=True)
class PromptSchedule:
    """Segments in order; segment 0 starts at frame 0, later starts strictly increase. ``negative`` [1 or B, L,
    text_dim] (or None): the negative prompt of a guided run (``SamplingConfig.guidance_scale`` ≠ 1), the same for
    every segment."""
    segments: tuple[Segment, ...]
    negative: torch.Tensor | None = None

    def __post_init__(self):
        if not self.segments:
            raise ValueError("a prompt schedule needs at least one prompt")
        first = self.segments[0]
        if first.start != 0 or first.cut:
            raise ValueError(f"{first.label or 'the first prompt'} starts at latent frame {first.start}"
                             f"{' as a cut' if first.cut else ''}; the first prompt must start at frame 0 (and begins the video, not a "
                             "new shot)")
        for prev, seg in zip(self.segments, self.segments[1:]):
            if seg.start <= prev.start:
                raise ValueError(f"{seg.label or 'a prompt'} starts at latent frame {seg.start}, not after "
                                 f"{prev.label or 'the one before'} (frame {prev.start}): starts must increase")
            for emb in (seg.embeds, seg.cut_embeds if seg.cut_embeds is not None else seg.embeds):
                if emb.dim() != 3 or emb.shape[0] != first.embeds.shape[0] or emb.shape[2] != first.embeds.shape[2]:
                    raise ValueError(f"{seg.label or 'a prompt'} has embeddings {list(emb.shape)}; every prompt "
                                     f"of a schedule needs [B, L, text_dim] with B = {first.embeds.shape[0]} and "
                                     f"text_dim = {first.embeds.shape[2]} like the first")
        neg = self.negative
        if neg is not None and (neg.dim() != 3 or neg.shape[0] not in (1, first.embeds.shape[0])
                                or neg.shape[2] != first.embeds.shape[2]):
            raise ValueError(f"the negative prompt has embeddings {list(neg.shape)}; it needs [1 or B, L, text_dim] with "
                             f"B = {first.embeds.shape[0]} and text_dim = {first.embeds.shape[2]} like the prompt: "
                             "encode it with the same text encoder")

    @classmethod
    def single(cls, prompt_embeds: torch.Tensor) -> "PromptSchedule":
        return cls((Segment(0, prompt_embeds, "prompt"),))

    @property
    def batch(self) -> int:
        return self.segments[0].embeds.shape[0]

    def fire_frames(self, frames_per_block: int, num_frames: int | None = None,
                    latent: LatentFormat | None = None) -> list[int]:
        return fire_frames([seg.start for seg in self.segments], frames_per_block, num_frames,
                           [seg.label for seg in self.segments], latent)

    def timeline(self, frames_per_block: int, latent: LatentFormat) -> list[str]:
        return timeline([seg.start for seg in self.segments], [seg.label for seg in self.segments], frames_per_block,
                        latent)


def _block_start(frame: int, frames_per_block: int) -> int:
    return -(-frame // frames_per_block) * frames_per_block


def _seconds(frame: int, latent: LatentFormat | None, form: str = " ({:g} s)") -> str:
    """" (3 s)" for a latent frame (``form``); nothing without a format (the loop knows frames only)."""
    return form.format(latent.frame_to_seconds(frame)) if latent is not None else ""


def fire_frames(starts: list[int], frames_per_block: int, num_frames: int | None = None,
                labels: list[str] | None = None, latent: LatentFormat | None = None) -> list[int]:
    """The block start where each prompt begins, from the frames asked for (``starts[0]`` = 0): the first
    block start ≥ the frame, one switch per block. With ``num_frames``, a prompt that would begin at or
    past the end of the video is an error naming it (``labels``; in seconds too when ``latent`` is given)."""
    fires = [0]
    for i, start in enumerate(starts[1:], start=1):
        fires.append(max(_block_start(start, frames_per_block), fires[-1] + frames_per_block))
        if num_frames is not None and fires[-1] >= num_frames:
            label = labels[i] if labels else f"prompt {i}"
            raise ValueError(
                f"{label} would begin at latent frame {fires[-1]}{_seconds(fires[-1], latent)}, at or past the end "
                f"of the video ({num_frames} latent frames{_seconds(num_frames, latent, ', {:g} s')}); make the "
                "video longer or move it earlier")
    return fires


def timeline(starts: list[int], labels: list[str], frames_per_block: int, latent: LatentFormat) -> list[str]:
    """One line per prompt: the frame asked for and the block where it begins (seconds in ``latent``'s
    format), rounding shown."""
    lines = []
    for start, label, fire in zip(starts, labels, fire_frames(starts, frames_per_block)):
        asked = f"frame {start}{_seconds(start, latent)}"
        block = f"block {fire // frames_per_block} = frame {fire}{_seconds(fire, latent)}"
        if fire == start:
            where = f"begins at block {fire // frames_per_block} = {asked}"
        elif fire == _block_start(start, frames_per_block):
            where = f"asks for {asked}, inside a block: rounded up to the next block start, {block}"
        else:
            where = f"asks for {asked}, but that block already switches (one switch per block): begins at {block}"
        lines.append(f"{label}: {where}")
    return lines


def as_schedule(prompts: torch.Tensor | PromptSchedule, negative: torch.Tensor | None = None) -> PromptSchedule:
    """A schedule as is; embeddings [B, L, text_dim] as a schedule of one prompt. ``negative``: a negative prompt
    [1 or B, L, text_dim] to attach (None: the schedule's own)."""
    schedule = prompts if isinstance(prompts, PromptSchedule) else PromptSchedule.single(prompts)
    return schedule if negative is None else replace(schedule, negative=negative)


def schedule_from_timed(timed: list[TimedPrompt], embeds: list[torch.Tensor],
                        cut_embeds: dict[int, torch.Tensor] | None = None) -> PromptSchedule:
    """Timed prompts and their embeddings (same order) → a schedule; labels name each line. ``cut_embeds``:
    prompt index → embeddings of ``cut_texts``'s text for it (a cut's first block)."""
    cut_embeds = cut_embeds or {}
    return PromptSchedule(tuple(Segment(p.frame, e, p.describe(), p.cut, cut_embeds.get(i))
                                for i, (p, e) in enumerate(zip(timed, embeds))))


def cut_texts(timed: list[TimedPrompt]) -> dict[int, str]:
    """prompt index → the text that conditions the first block of the shot it begins (cuts only)."""
    return {i: SCENE_CUT_PREFIX + p.text for i, p in enumerate(timed) if p.cut}
