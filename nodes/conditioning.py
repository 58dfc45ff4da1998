"""Load Prompt Embeds: CONDITIONING from a safetensors file (reproducible runs without a text encoder)."""
from __future__ import annotations

import hashlib

from ..core.sampling.prompt_files import load_prompt_embeds
from . import bridge
from .bridge import io

CHUNK = 1 << 20


def file_digest(path: str) -> str:
    """SHA-256 of the file's bytes (hex): what makes ComfyUI read a changed file again."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


class LoadPromptEmbeds(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="LongLiveRAG_LoadPromptEmbeds", display_name="Load Prompt Embeds (LongLive-RAG)",
            category="LongLive-RAG/conditioning",
            description=("Reads precomputed Wan prompt embeddings ('prompt_embeds' [B, L, 4096] in a .safetensors "
                         "file, as used by `python -m core generate --embeds`) and outputs CONDITIONING. Use it "
                         "instead of CLIPLoader + CLIPTextEncode to reproduce a headless run exactly. The file is "
                         "read again whenever its content changes."),
            inputs=[io.Combo.Input("path",
                                   options=bridge.list_models(bridge.EMBEDS_FOLDER, tuple(bridge.EMBEDS_EXTENSIONS)),
                                   tooltip="A .safetensors file in ComfyUI's input folder or in "
                                           "models/prompt_embeds (press R after adding one). Only files inside "
                                           "these folders can be chosen.")],
            outputs=[io.Conditioning.Output(display_name="conditioning",
                                            tooltip="The prompt embeddings as CONDITIONING, for the AR Block "
                                                    "Sampler's 'positive'.")],
        )

    @classmethod
    def fingerprint_inputs(cls, path) -> str:
        return file_digest(bridge.model_path(bridge.EMBEDS_FOLDER, path))

    @classmethod
    def execute(cls, path) -> io.NodeOutput:
        full = bridge.model_path(bridge.EMBEDS_FOLDER, path)
        shown = f"'{path}' (ComfyUI's '{bridge.EMBEDS_FOLDER}' folder)"
        return io.NodeOutput([[load_prompt_embeds(full, shown=shown), {}]])
