"""Prompt lists of text runs: reading them, naming their outputs, encoding them (and a guided run's negative
prompt) with the text encoder."""
from __future__ import annotations

import re
from pathlib import Path

import torch


def read_prompts(prompt: str | None, prompts_file: str | None) -> list[str]:
    if prompt is not None:
        return [prompt]
    path = Path(prompts_file)
    if not path.is_file():
        raise FileNotFoundError(f"prompt list '{path}' does not exist; pass a text file with one prompt per line")
    prompts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not prompts:
        raise ValueError(f"prompt list '{path}' holds no prompts (one per line expected)")
    return prompts


def output_stem(index: int, prompt: str) -> str:
    """Deterministic, filesystem-safe name: index + the prompt's first words."""
    slug = re.sub(r"[^a-z0-9]+", "_", prompt.lower()).strip("_")[:40].rstrip("_")
    return f"{index:04d}_{slug or 'prompt'}"


def encode_prompts(text_encoder: str, prompts: list[str], device, dtype) -> list[torch.Tensor]:
    """Embeddings [1, 512, dim] per prompt on CPU; the text encoder is freed afterwards."""
    from ..formats.text_encoder import load_text_encoder
    te = load_text_encoder(text_encoder, device=device, dtype=dtype)
    out = [te.encode([p]).float().cpu() for p in prompts]
    del te
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out
