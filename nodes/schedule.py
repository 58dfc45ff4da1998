"""Prompt Schedule: timed prompts, each encoded like CLIPTextEncode, for the AR Block Sampler (a story)."""
from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch

from ..core.config import RETRIEVAL_SCOPES, SWITCH_MODES, SamplingConfig, SwitchConfig
from ..core.prompts import PromptSchedule, TimedPrompt, parse_schedule_text, schedule_from_timed
from .bridge import io, ui

WAN_TOKENS = "umt5xxl"     # the key ComfyUI's Wan (umT5-XXL) tokenizer puts its tokens under
FRAMES_PER_BLOCK = SamplingConfig().frames_per_block
DEFAULT_SWITCH = SwitchConfig()
EXAMPLE = ("0s: a red fox trots through a snowy birch forest at dawn, soft golden light, tracking shot\n"
           "10s: the fox stops at the edge of a frozen lake and looks across the ice\n"
           "20s: the fox steps onto the ice as snow begins to fall, the camera rises above the lake")


@dataclass(frozen=True)
class ScheduleInput:
    """LLRAG_SCHEDULE: the encoded prompts, what a switch does, and where each prompt begins (shown)."""
    schedule: PromptSchedule
    switch: SwitchConfig
    timeline: str


SCHEDULE = io.Custom("LLRAG_SCHEDULE")          # carries a ScheduleInput


class PromptScheduleNode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="LongLiveRAG_PromptSchedule", display_name="Prompt Schedule (LongLive-RAG)",
            category="LongLive-RAG/conditioning",
            description=("Timed prompts for one long video (a story): one line per prompt, '0s: a fox in the snow' / "
                         "'12s: the fox reaches a lake' (seconds at 16 fps) or '48f: ...' (latent frames). Each line "
                         "is encoded like CLIPTextEncode with the connected text encoder (CLIPLoader type 'wan', "
                         "umt5_xxl; quantised loaders work too); only changed lines are re-encoded. Connect to the AR "
                         "Block Sampler's 'positive'. A prompt begins at the first block start at or after its time; "
                         "the 'timeline' output shows where each line begins after that rounding (blocks of 3 latent "
                         "frames)."),
            inputs=[
                io.Clip.Input("clip", tooltip="The Wan text encoder: CLIPLoader type 'wan' with umt5_xxl (any "
                                              "precision)."),
                io.String.Input("schedule", default=EXAMPLE, multiline=True,
                                tooltip="One prompt per line, 'time: prompt'. Time in seconds (12s, 7.5s) or latent "
                                        "frames (48f); the first line at 0s; times increasing; lines starting with # "
                                        "are skipped."),
                io.Combo.Input("switch", options=list(SWITCH_MODES), default=DEFAULT_SWITCH.mode,
                               tooltip="recache (LongLive): at a switch the recent frames in the KV cache are "
                                       "re-encoded under the new prompt, so the scene follows it without a cut. none: "
                                       "only the prompt changes. flush (∞-RoPE): the cache is cut to the sink and the "
                                       "last frames; a line written '10s#: …' also makes a hard scene cut. With a "
                                       "Context Strategy connected to the sampler, recache here means the strategy's "
                                       "own default (∞-RoPE flush, MemRoPE and Deep Forcing none)."),
                io.Boolean.Input("global_sink", default=DEFAULT_SWITCH.global_sink,
                                 tooltip="A re-cache keeps the sink frames (the video's first frames) as they were, "
                                         "once the window has filled (LongLive's default)."),
                io.Combo.Input("retrieval_scope", options=list(RETRIEVAL_SCOPES),
                               default=DEFAULT_SWITCH.retrieval_scope,
                               tooltip="With retrieval: after a switch, retrieve from all past frames, or only from "
                                       "those made under the current prompt (segment)."),
            ],
            outputs=[
                SCHEDULE.Output(display_name="schedule", tooltip="For the AR Block Sampler's 'positive' input."),
                io.String.Output(display_name="timeline", tooltip="Where each line begins after rounding to blocks; "
                                                                   "connect to Preview as Text."),
            ],
            hidden=[io.Hidden.unique_id],     # whose line cache to use (a V3 node keeps no state of its own)
        )

    @classmethod
    def execute(cls, clip, schedule, switch, global_sink, retrieval_scope) -> io.NodeOutput:
        timed = parse_schedule_text(schedule, "Prompt Schedule")
        node_id = cls.hidden.unique_id if cls.hidden is not None else None
        prompts = schedule_from_timed(timed, LINES.encode(node_id, clip, timed))
        timeline = "\n".join(prompts.timeline(FRAMES_PER_BLOCK))
        out = ScheduleInput(prompts, SwitchConfig(switch, global_sink, retrieval_scope), timeline)
        return io.NodeOutput(out, timeline, ui=ui.PreviewText(timeline))


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
