"""Prompt-embedding files: one prompt, or a prompt schedule with its switch frames and cuts."""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from ..files.safe_reader import why_unreadable
from .prompts import PromptSchedule, Segment


def load_prompt_embeds(path: str | Path, text_dim: int | None = None, shown: str | None = None) -> torch.Tensor:
    """Read ``prompt_embeds`` [B, L, text_dim] from a safetensors file, with clear errors; ``shown``: how they name
    the file (default: its path, quoted)."""
    path = Path(path)
    shown = shown or f"'{path}'"
    if not path.is_file():
        raise FileNotFoundError(f"prompt embeddings {shown} do not exist; pass a .safetensors file holding "
                                "'prompt_embeds' [B, L, text_dim]")
    try:
        tensors = load_file(str(path))
    except Exception as exc:
        raise ValueError(f"prompt embeddings {shown} are not a readable .safetensors file: {why_unreadable(exc)}; "
                         "save them again (a .safetensors file holding 'prompt_embeds')") from exc
    if "prompt_embeds" not in tensors:
        raise ValueError(f"prompt embeddings {shown} hold {sorted(tensors)} but no 'prompt_embeds' "
                         "[B, L, text_dim] tensor; save it under that key")
    emb = tensors["prompt_embeds"]
    if emb.dim() == 2:
        emb = emb.unsqueeze(0)
    if emb.dim() != 3:
        raise ValueError(f"prompt embeddings {shown}: 'prompt_embeds' has shape {list(emb.shape)}; "
                         "expected [B, L, text_dim]")
    if text_dim is not None and emb.shape[-1] != text_dim:
        raise ValueError(f"prompt embeddings {shown} have text_dim {emb.shape[-1]} but the backbone expects "
                         f"{text_dim} (umT5-XXL embeddings are 4096 wide); encode the prompt with the Wan2.1 "
                         "text encoder")
    return emb.float()


def prompt_batch(path: str | Path) -> int:
    """Videos per run of a prompt-embedding file (B of ``prompt_embeds`` [B, L, text_dim]) from its header alone;
    1 when it cannot be read yet (loading it later names the problem)."""
    try:
        with safe_open(str(path), "pt") as fh:
            shape = fh.get_slice("prompt_embeds").get_shape()
    except Exception:           # missing, damaged, no prompt_embeds: load_prompt_schedule says which
        return 1
    return int(shape[0]) if len(shape) == 3 else 1


def load_prompt_schedule(path: str | Path, text_dim: int | None = None):
    """A prompt-embedding file as a PromptSchedule: ``prompt_embeds`` [B, L, text_dim] is segment 0; the file
    may add ``prompt_embeds_1``, ``prompt_embeds_2``, … (same B and text_dim) and ``switch_frames`` (int64
    [S−1]: the latent frame where segment s ≥ 1 is asked to begin, LongLive's ``switch_frame_indices``).
    Cuts: ``cuts`` (int64 or bool [S−1], 1 = segment s begins with a hard cut: ∞-RoPE's RoPE cut, LongLive
    2.0's new shot; ``switch_cuts`` is the same) and ``prompt_embeds_<s>_cut`` (shots: the embeddings of the
    shot's first block, e.g. of "The scene transitions. " + its prompt). ``negative_prompt_embeds`` ([L, D] or
    [1 or B, L, D]): the negative prompt of a guided run (``guidance_scale`` ≠ 1)."""
    first = load_prompt_embeds(path, text_dim)
    tensors = load_file(str(path))
    negative = _batched(tensors.get("negative_prompt_embeds"))
    extra = sorted((int(k.rsplit("_", 1)[1]), k) for k in tensors
                   if k.startswith("prompt_embeds_") and k.rsplit("_", 1)[1].isdigit())
    if [i for i, _ in extra] != list(range(1, len(extra) + 1)):
        raise ValueError(f"prompt embeddings '{path}' hold {[k for _, k in extra]}; number the extra prompts "
                         "prompt_embeds_1, prompt_embeds_2, … without gaps")
    switches = tensors.get("switch_frames")
    if switches is None and not extra:
        return PromptSchedule(PromptSchedule.single(first).segments, negative)
    if switches is None or switches.dim() != 1 or switches.is_floating_point() or len(switches) != len(extra):
        found = "no 'switch_frames'" if switches is None else f"'switch_frames' {switches.dtype} {list(switches.shape)}"
        raise ValueError(f"prompt embeddings '{path}' hold {len(extra)} extra prompt(s) and {found}; save "
                         f"'switch_frames' as int64 [{len(extra)}], the latent frame where each extra prompt begins")
    if "cuts" in tensors and "switch_cuts" in tensors:
        raise ValueError(f"prompt embeddings '{path}' hold both 'cuts' and 'switch_cuts' (the same thing); keep one")
    cuts = tensors.get("cuts", tensors.get("switch_cuts", torch.zeros(len(extra), dtype=torch.int64)))
    if cuts.dim() != 1 or cuts.is_floating_point() or len(cuts) != len(extra):
        raise ValueError(f"prompt embeddings '{path}': 'cuts' is {cuts.dtype} {list(cuts.shape)}; save it as int64 "
                         f"or bool [{len(extra)}], 1 where an extra prompt begins with a hard cut (or leave it out)")
    segments = [Segment(0, first, "prompt_embeds")]
    for (i, key), frame, cut in zip(extra, switches.tolist(), cuts.tolist()):
        emb, first_block = (_batched(tensors.get(k)) for k in (key, f"{key}_cut"))
        if frame < 1:
            raise ValueError(f"prompt embeddings '{path}': switch_frames[{i - 1}] = {frame} ({key}); a switch "
                             "frame must be ≥ 1 (prompt_embeds itself starts at frame 0)")
        segments.append(Segment(int(frame), emb, f"switch_frames[{i - 1}] = {frame} ({key})", bool(cut),
                                first_block if cut else None))
    return PromptSchedule(tuple(segments), negative)


def _batched(emb: torch.Tensor | None) -> torch.Tensor | None:
    """[L, D] or [B, L, D] → float32 [B, L, D] (None stays None)."""
    if emb is None:
        return None
    emb = emb.float()
    return emb.unsqueeze(0) if emb.dim() == 2 else emb
