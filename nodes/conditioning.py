"""Load Prompt Embeds: CONDITIONING from a safetensors file (reproducible runs without a text encoder)."""
from __future__ import annotations

import os

from ..core.io import load_prompt_embeds
from . import bridge


class LoadPromptEmbeds:
    DESCRIPTION = ("Reads precomputed Wan prompt embeddings ('prompt_embeds' [B, L, 4096] in a .safetensors file, "
                   "as used by `python -m core generate --embeds`) and outputs CONDITIONING. Use it instead of "
                   "CLIPLoader + CLIPTextEncode to reproduce a headless run exactly.")
    CATEGORY = "LongLive-RAG/conditioning"
    FUNCTION = "load"
    RETURN_TYPES = ("CONDITIONING",)
    RETURN_NAMES = ("conditioning",)
    OUTPUT_TOOLTIPS = ("The prompt embeddings as CONDITIONING, for the AR Block Sampler's 'positive'.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"path": ("STRING", {"default": "prompt_embeds.safetensors",
                                                 "tooltip": "Absolute path, or relative to ComfyUI's input folder."})}}

    def load(self, path):
        if not os.path.isabs(path) and bridge.input_directory() is not None:
            path = os.path.join(bridge.input_directory(), path)
        return ([[load_prompt_embeds(path), {}]],)
