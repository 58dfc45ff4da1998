"""Frame descriptors and the per-block retrieval choice (top-k cosine with a recency guard)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .encoder import RetrievalEncoder

Describer = Callable[[torch.Tensor], torch.Tensor]


def avg_pool_descriptor(frames: torch.Tensor) -> torch.Tensor:
    """frames [N, C, H, W] → spatial mean [N, C]."""
    return frames.mean(dim=(-2, -1))


def make_describer(encoder: RetrievalEncoder | None) -> Describer:
    """The descriptor function: the encoder's L2-normalised embedding, or avg_pool when None."""
    return avg_pool_descriptor if encoder is None else encoder.describe


@dataclass
class RetrievalChoice:
    """Frames retrieved for one block: pool indices and cosine similarities [B, k], descending."""
    pool_indices: torch.Tensor
    similarities: torch.Tensor
    num_evicted: int


def select_frames(descriptors: torch.Tensor, num_generated: int, num_evicted: int, sink: int,
                  recent_exclude: int, top_k: int, first_frame: int = 0) -> RetrievalChoice | None:
    """Choose the block's retrieved frames.

    descriptors [B, T, D]: one per generated frame (rows ≥ num_generated unused).
    Eligible = the first (num_evicted − recent_exclude) pool entries (global frames sink + i), minus
    those before global frame ``first_frame`` (retrieval scope ``segment``: the current prompt's first
    frame); query = the last generated frame's descriptor. None when nothing is eligible.
    """
    eligible = max(num_evicted - recent_exclude, 0)
    lo = min(max(first_frame - sink, 0), eligible)       # pool entries before the scope
    if eligible - lo == 0 or num_generated == 0 or top_k <= 0:
        return None
    keys = descriptors[:, sink + lo:sink + eligible]
    query = descriptors[:, num_generated - 1:num_generated]
    q = query / (query.norm(dim=-1, keepdim=True) + 1e-8)
    kn = keys / (keys.norm(dim=-1, keepdim=True) + 1e-8)
    sims = torch.bmm(kn, q.transpose(1, 2)).squeeze(-1)
    top, idx = torch.topk(sims, k=min(top_k, eligible - lo), dim=-1)
    if idx.is_meta:     # a dry run (core/files/memory_trace.py): no values; stand-in: the newest eligible frames
        k = idx.shape[-1]
        idx = torch.arange(eligible - k, eligible).expand(idx.shape[0], k) - lo
        top = torch.zeros(idx.shape)
    return RetrievalChoice(idx + lo, top, num_evicted)


def log_record(block: int, query_frame: int, choice: RetrievalChoice, sink: int, segment: int = 0) -> dict:
    """The user-facing log entry of one retrieving block (batch 1: flat lists); ``segment`` = the prompt
    schedule's segment the block belongs to."""
    idx, sims = choice.pool_indices.cpu(), choice.similarities.float().cpu()
    flat = idx.shape[0] == 1
    pick = (lambda x: x[0]) if flat else (lambda x: x)
    return {
        "block": block,
        "segment": segment,
        "query_frame": query_frame,
        "num_evicted": choice.num_evicted,
        "pool_indices": pick(idx.tolist()),
        "global_frames": pick((idx + sink).tolist()),
        "similarities": pick(sims.tolist()),
    }


def idle_note(idle: list[tuple[int, int]], blocks: int, recent_exclude: int, segment_scope: bool) -> str | None:
    """One line when a retrieval run retrieved nothing where frames were to be expected, and why: no block at all,
    or (retrieval scope ``segment``) blocks after a switch whose prompt had no frame in the pool yet. The first
    blocks of any run, before frames leave the window, are expected to retrieve nothing and are not named.
    ``idle``: (block, frames in the pool it saw) for every block that retrieved nothing; ``blocks``: the run's."""
    if not idle:
        return None
    if len(idle) == blocks:
        seen = max(p for _, p in idle)
        if seen == 0:
            why = ("no frame left the KV cache window before the last block: the video is too short for retrieval "
                   "with this window (make it longer or the window smaller)")
        elif seen <= recent_exclude:
            why = (f"only {seen} frames had left the window and the {recent_exclude} most recently evicted are never "
                   "retrieved (recent_exclude): make the video longer or recent_exclude smaller")
        else:
            why = ("with retrieval scope 'segment' only frames of the current prompt are retrieved and none of them "
                   "had left the window yet: use scope 'all' or longer prompt segments")
        return f"retrieval: no block retrieved a past frame; {why}"
    scoped = [b for b, p in idle if segment_scope and p > recent_exclude]
    if not scoped:
        return None
    return (f"retrieval: block{'s' * (len(scoped) > 1)} {_ranges(scoped)} of {blocks} retrieved nothing: with retrieval "
            "scope 'segment' only frames of the current prompt are retrieved, and after its switch none had left "
            "the window yet (scope 'all' retrieves from the whole video)")


def _ranges(blocks: list[int]) -> str:
    """0-based block indices → '3–5, 9' in 1-based block numbers (as the progress lines count them)."""
    runs: list[list[int]] = []
    for b in blocks:
        if runs and b == runs[-1][1] + 1:
            runs[-1][1] = b
        else:
            runs.append([b, b])
    return ", ".join(f"{a + 1}" if a == z else f"{a + 1}–{z + 1}" for a, z in runs)
