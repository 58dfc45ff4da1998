"""Prompt Schedule: timed prompts, each encoded like CLIPTextEncode, for the AR Block Sampler (a story)."""
from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch

from ..core.config import RETRIEVAL_SCOPES, SWITCH_MODES, SamplingConfig, SwitchConfig
from ..core.prompts import PromptSchedule, TimedPrompt, parse_schedule_text, schedule_from_timed

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


class PromptScheduleNode:
    DESCRIPTION = ("Timed prompts for one long video (a story): one line per prompt, '0s: a fox in the snow' / "
                   "'12s: the fox reaches a lake' (seconds at 16 fps) or '48f: ...' (latent frames). Each line is "
                   "encoded like CLIPTextEncode with the connected text encoder (CLIPLoader type 'wan', umt5_xxl; "
                   "quantised loaders work too); only changed lines are re-encoded. Connect to the AR Block "
                   "Sampler's 'positive'. A prompt begins at the first block start at or after its time; the "
                   "'timeline' output shows where each line begins after that rounding (blocks of 3 latent frames).")
    CATEGORY = "LongLive-RAG/conditioning"
    FUNCTION = "build"
    RETURN_TYPES = ("LLRAG_SCHEDULE", "STRING")
    RETURN_NAMES = ("schedule", "timeline")
    OUTPUT_TOOLTIPS = ("For the AR Block Sampler's 'positive' input.",
                       "Where each line begins after rounding to blocks; connect to Preview as Text.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "clip": ("CLIP", {"tooltip": "The Wan text encoder: CLIPLoader type 'wan' with umt5_xxl (any precision)."}),
            "schedule": ("STRING", {"default": EXAMPLE, "multiline": True,
                                    "tooltip": "One prompt per line, 'time: prompt'. Time in seconds (12s, 7.5s) or "
                                               "latent frames (48f); the first line at 0s; times increasing; lines "
                                               "starting with # are skipped."}),
            "switch": (list(SWITCH_MODES), {"default": DEFAULT_SWITCH.mode,
                                            "tooltip": "recache (LongLive): at a switch the recent frames in the KV "
                                                       "cache are re-encoded under the new prompt, so the scene "
                                                       "follows it without a cut. none: only the prompt changes."}),
            "global_sink": ("BOOLEAN", {"default": DEFAULT_SWITCH.global_sink,
                                        "tooltip": "A re-cache keeps the sink frames (the video's first frames) as "
                                                   "they were, once the window has filled (LongLive's default)."}),
            "retrieval_scope": (list(RETRIEVAL_SCOPES), {"default": DEFAULT_SWITCH.retrieval_scope,
                                                         "tooltip": "With retrieval: after a switch, retrieve from "
                                                                    "all past frames, or only from those made under "
                                                                    "the current prompt (segment)."}),
        }}

    def __init__(self):
        self._clip = None                          # weak reference to the CLIP the cache belongs to
        self._encoded: dict[str, torch.Tensor] = {}

    def build(self, clip, schedule, switch, global_sink, retrieval_scope):
        timed = parse_schedule_text(schedule, "Prompt Schedule")
        if self._clip is None or self._clip() is not clip:
            self._clip, self._encoded = weakref.ref(clip), {}
        embeds = [self._encode(clip, p) for p in timed]
        self._encoded = {p.text: e for p, e in zip(timed, embeds)}      # keep only the current lines
        prompts = schedule_from_timed(timed, embeds)
        timeline = "\n".join(prompts.timeline(FRAMES_PER_BLOCK))
        out = ScheduleInput(prompts, SwitchConfig(switch, global_sink, retrieval_scope), timeline)
        return {"ui": {"text": [timeline]}, "result": (out, timeline)}

    def _encode(self, clip, prompt: TimedPrompt) -> torch.Tensor:
        """CLIPTextEncode's two calls, cached per line text: embeddings [1, L, D] (float32, CPU)."""
        if prompt.text not in self._encoded:
            tokens = clip.tokenize(prompt.text)
            if not isinstance(tokens, dict) or WAN_TOKENS not in tokens:
                found = sorted(tokens) if isinstance(tokens, dict) else type(tokens).__name__
                raise ValueError(f"{prompt.describe()}: the connected text encoder is not Wan's umT5-XXL (its "
                                 f"tokenizer gives {found}); load umt5_xxl with CLIPLoader type 'wan'")
            cond = clip.encode_from_tokens_scheduled(tokens)
            self._encoded[prompt.text] = cond[0][0].detach().float().cpu()
        return self._encoded[prompt.text]
