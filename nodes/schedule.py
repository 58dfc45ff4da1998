"""Prompt Schedule: timed prompts, each encoded like CLIPTextEncode, for the AR Block Sampler (a story)."""
from __future__ import annotations

import weakref
from dataclasses import dataclass, replace

import torch

from ..core.app.default_family import default_family
from ..core.families.registry import FAMILIES
from ..core.latents.format import LatentFormat
from ..core.app.fact_text import fragment
from ..core.sampling.config import RETRIEVAL_SCOPES, SWITCH_MODES, SwitchConfig
from ..core.sampling.prompts import (PromptSchedule, TimedPrompt, cut_texts, parse_schedule_text, retime,
                                   schedule_from_timed)
from .bridge import io, ui
from .comfy_model import as_backbone
from .loaders import BACKBONE

WAN_TOKENS = "umt5xxl"     # the key ComfyUI's Wan (umT5-XXL) tokenizer puts its tokens under
AUTO = "auto"
DEFAULT_SWITCH = SwitchConfig()
SOURCE = "Prompt Schedule"
EXAMPLE = ("0s: a red fox trots through a snowy birch forest at dawn, soft golden light, tracking shot\n"
           "10s: the fox stops at the edge of a frozen lake and looks across the ice\n"
           "20s: the fox steps onto the ice as snow begins to fall, the camera rises above the lake")


@dataclass(frozen=True)
class SwitchChoice:
    """The schedule's switch settings; ``mode`` None ('auto') = the run's own: the backbone family's for the
    sampler's sliding window (LongLive 1.0 recache, LongLive 2.0 none), else the Context Strategy's."""
    mode: str | None = None
    global_sink: bool = DEFAULT_SWITCH.global_sink
    retrieval_scope: str = DEFAULT_SWITCH.retrieval_scope


@dataclass(frozen=True)
class ScheduleInput:
    """LLRAG_SCHEDULE: the encoded prompts, what a switch does, and where each prompt begins (shown).
    ``schedule`` is timed in the ``latent`` format (its fps and time stride) with blocks of
    ``frames_per_block`` (what ``timeline`` shows); the sampler re-reads the lines' seconds at its
    backbone's rate (``for_run``)."""
    schedule: PromptSchedule
    switch: SwitchChoice
    timeline: str
    timed: tuple[TimedPrompt, ...]
    latent: LatentFormat
    frames_per_block: int

    def for_run(self, latent: LatentFormat, shots: bool) -> PromptSchedule:
        """The schedule of a run in the ``latent`` format; a cut's first-block prompt only on a family with
        ``shots`` (elsewhere a cut is ∞-RoPE's RoPE cut or an ordinary switch, conditioned on the line itself)."""
        segments = self.schedule.segments
        timed = self.timed if latent == self.latent else retime(list(self.timed), latent, SOURCE)
        cuts = {i: s.cut_embeds for i, s in enumerate(segments) if shots and s.cut_embeds is not None}
        return schedule_from_timed(list(timed), [s.embeds for s in segments], cuts)


SCHEDULE = io.Custom("LLRAG_SCHEDULE")          # carries a ScheduleInput


class PromptScheduleNode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="LongLiveRAG_PromptSchedule", display_name="Prompt Schedule (LongLive-RAG)",
            category="LongLive-RAG/conditioning",
            description=("Timed prompts for one long video (a story): one line per prompt, '0s: a fox in the snow' / "
                         "'12s: the fox reaches a lake' (seconds of video) or '48f: ...' (latent frames); "
                         "'20s cut: a lighthouse at night' starts a new shot (LongLive 2.0) or scene. Each line is "
                         "encoded like CLIPTextEncode with the connected text encoder (CLIPLoader type 'wan', "
                         "umt5_xxl; quantised loaders work too); only changed lines are re-encoded. Connect to the AR "
                         f"Block Sampler's 'positive'. Seconds are read at the backbone's rate ({fragment('fps')}; "
                         "connect Load Backbone to 'backbone' to see its timing "
                         "here; the sampler always uses its own). A prompt begins at the first block start at or after "
                         "its time; the 'timeline' output shows where each line begins after that rounding."),
            inputs=[
                io.Clip.Input("clip", tooltip="The Wan text encoder: CLIPLoader type 'wan' with umt5_xxl (any "
                                              "precision)."),
                io.String.Input("schedule", default=EXAMPLE, multiline=True,
                                tooltip="One prompt per line, 'time: prompt'. Time in seconds (12s, 7.5s) or latent "
                                        "frames (48f); the first line at 0s; times increasing; lines starting with # "
                                        "are skipped. 'time cut: prompt' (or 'time#: prompt') is a hard cut: a new "
                                        "shot on LongLive 2.0 (its first block is prompted 'The scene transitions. "
                                        "…'), a RoPE cut with ∞-RoPE, an ordinary switch otherwise."),
                io.Combo.Input("switch", options=[AUTO, *SWITCH_MODES], default=AUTO,
                               tooltip="What a switch does to the KV cache. auto: what the backbone was trained with "
                                       "(LongLive 1.0 recache, LongLive 2.0 none) or, with a Context Strategy, the "
                                       "strategy's own. recache (LongLive): the recent frames in the cache are "
                                       "re-encoded under the new prompt, so the scene follows it without a cut. none: "
                                       "only the prompt changes. flush (∞-RoPE): the cache is cut to the sink and the "
                                       "last frames. With a Context Strategy connected to the sampler, recache here "
                                       "also means the strategy's own default (as in earlier workflows)."),
                io.Boolean.Input("global_sink", default=DEFAULT_SWITCH.global_sink,
                                 tooltip="A re-cache keeps the sink frames (the video's first frames) as they were, "
                                         "once the window has filled (LongLive's default)."),
                io.Combo.Input("retrieval_scope", options=list(RETRIEVAL_SCOPES),
                               default=DEFAULT_SWITCH.retrieval_scope,
                               tooltip="With retrieval: after a switch, retrieve from all past frames, or only from "
                                       "those made under the current prompt (segment)."),
                io.MultiType.Input("backbone", types=[BACKBONE, io.Model], optional=True,
                               tooltip="Optional: the backbone the sampler uses (Load Backbone or a MODEL), so that "
                                       "'timeline' shows its "
                                       f"timing ({fragment('timing')}). Unconnected: timed for "
                                       f"{fragment('default-timing')}; the sampler re-reads the seconds at its own "
                                       "backbone's rate either way."),
            ],
            outputs=[
                SCHEDULE.Output(display_name="schedule", tooltip="For the AR Block Sampler's 'positive' input."),
                io.String.Output(display_name="timeline", tooltip="Where each line begins after rounding to blocks, "
                                                                   "and at which frame rate; connect to Preview as "
                                                                   "Text."),
            ],
            hidden=[io.Hidden.unique_id],     # whose line cache to use (a V3 node keeps no state of its own)
        )

    @classmethod
    def execute(cls, clip, schedule, switch, global_sink, retrieval_scope, backbone=None) -> io.NodeOutput:
        family = as_backbone(backbone).backbone.defaults if backbone is not None else default_family().defaults
        latent, frames_per_block = family.latent, family.frames_per_block
        timed = parse_schedule_text(schedule, SOURCE, latent=latent)
        # a cut's first-block prompt: needed on a family with shots, so unless the backbone says it has none
        shots = backbone is None or family.shots.on
        cuts = cut_texts(timed) if shots else {}
        node_id = cls.hidden.unique_id if cls.hidden is not None else None
        embeds = LINES.encode(node_id, clip, timed + [replace(timed[i], text=t) for i, t in cuts.items()])
        prompts = schedule_from_timed(timed, embeds[:len(timed)], dict(zip(cuts, embeds[len(timed):])))
        lines = prompts.timeline(frames_per_block, latent)
        if backbone is None:
            lines.append(unconnected_note())
        timeline = "\n".join(lines)
        out = ScheduleInput(prompts, SwitchChoice(None if switch == AUTO else switch, global_sink, retrieval_scope),
                            timeline, tuple(timed), latent, frames_per_block)
        return io.NodeOutput(out, timeline, ui=ui.PreviewText(timeline))


def unconnected_note() -> str:
    """The timeline's last line without a backbone: which rate it assumed, and the other families' rates."""
    assumed = default_family()
    fps = assumed.defaults.latent.fps
    others = ", ".join(f"{f.name} {f.defaults.latent.fps} fps" for f in FAMILIES if f.defaults.latent.fps != fps)
    return (f"(timed for a {assumed.name} backbone: seconds at {fps} fps, blocks of "
            f"{assumed.defaults.frames_per_block} latent frames. Other backbones read the seconds at their own rate "
            f"({others}): connect Load Backbone to 'backbone' to see their timing here)")


class LineCache:
    """Each Prompt Schedule node's encoded lines (by node id): only the lines of its last run, and only while the
    CLIP they were encoded with lives; a node given another CLIP encodes everything again."""

    def __init__(self):
        self.entries: dict[str | None, tuple[weakref.ref, dict[str, torch.Tensor]]] = {}

    def encode(self, node_id: str | None, clip, timed: list[TimedPrompt]) -> list[torch.Tensor]:
        """Embeddings [1, L, D] (float32, CPU) of each line; lines this node encoded last time with this CLIP
        are reused."""
        self.entries = {k: e for k, e in self.entries.items() if e[0]() is not None}      # CLIPs that are gone
        ref, encoded = self.entries.get(node_id, (None, {}))
        if ref is None or ref() is not clip:
            encoded = {}
        embeds = []
        for prompt in timed:
            if prompt.text not in encoded:
                encoded[prompt.text] = encode_line(clip, prompt)
            embeds.append(encoded[prompt.text])
        self.entries[node_id] = (weakref.ref(clip), {p.text: e for p, e in zip(timed, embeds)})
        return embeds


LINES = LineCache()


def encode_line(clip, prompt: TimedPrompt) -> torch.Tensor:
    """CLIPTextEncode's two calls: embeddings [1, L, D] (float32, CPU)."""
    tokens = clip.tokenize(prompt.text)
    if not isinstance(tokens, dict) or WAN_TOKENS not in tokens:
        found = sorted(tokens) if isinstance(tokens, dict) else type(tokens).__name__
        raise ValueError(f"{prompt.describe()}: the connected text encoder is not Wan's umT5-XXL (its "
                         f"tokenizer gives {found}); load umt5_xxl with CLIPLoader type 'wan'")
    cond = clip.encode_from_tokens_scheduled(tokens)
    return cond[0][0].detach().float().cpu()
