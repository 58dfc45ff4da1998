"""Load Prompt Embeds: CONDITIONING from a safetensors file (reproducible runs without a text encoder)."""
from __future__ import annotations

import os

from ..core.sampling.prompt_files import load_prompt_embeds
from . import bridge
from .bridge import io


class LoadPromptEmbeds(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="LongLiveRAG_LoadPromptEmbeds", display_name="Load Prompt Embeds (LongLive-RAG)",
            category="LongLive-RAG/conditioning",
            description=("Reads precomputed Wan prompt embeddings ('prompt_embeds' [B, L, 4096] in a .safetensors "
                         "file, as used by `python -m core generate --embeds`) and outputs CONDITIONING. Use it "
                         "instead of CLIPLoader + CLIPTextEncode to reproduce a headless run exactly."),
            inputs=[io.String.Input("path", default="prompt_embeds.safetensors",
                                    tooltip="Absolute path, or relative to ComfyUI's input folder.")],
            outputs=[io.Conditioning.Output(display_name="conditioning",
                                            tooltip="The prompt embeddings as CONDITIONING, for the AR Block "
                                                    "Sampler's 'positive'.")],
        )

    @classmethod
    def execute(cls, path) -> io.NodeOutput:
        if not os.path.isabs(path) and bridge.input_directory() is not None:
            path = os.path.join(bridge.input_directory(), path)
        return io.NodeOutput([[load_prompt_embeds(path), {}]])
