"""The demo's A/B preview (native | retrieval | where they differ) and its summary in numbers.

Latents are shown as colours (no VAE). The third panel is the per-pixel difference of the two runs'
latents (mean absolute difference over channels), scaled to the largest difference of the video so
that small ones show; under the three panels a curve gives each latent frame's mean difference, with
a cursor at the current frame and ticks where retrieving blocks begin.
"""
from __future__ import annotations

import numpy as np
import torch

from ..latents.format import LatentFormat

CURVE_H = 60


def latent_preview(latents: torch.Tensor, scale: int = 24) -> np.ndarray:
    """A rough RGB view of model-space latents [C, T, H, W] (C ≥ 3) → uint8 [T, H·scale, W·scale, 3]
    (channel groups averaged and squashed; no VAE involved)."""
    n = latents.shape[0] // 3                                                  # 16 channels: 0-4 R, 5-9 G, 10-14 B
    groups = latents[:3 * n].float().reshape(3, n, *latents.shape[1:]).mean(1)
    rgb = torch.sigmoid(groups * 1.5).permute(1, 2, 3, 0)                      # [T, H, W, 3]
    rgb = rgb.repeat_interleave(scale, 1).repeat_interleave(scale, 2)
    return (rgb * 255).round().to(torch.uint8).numpy()


def difference(native: torch.Tensor, rag: torch.Tensor) -> torch.Tensor:
    """[C, T, H, W] each → per-pixel mean absolute difference [T, H, W] (float32)."""
    return (native.float() - rag.float()).abs().mean(0)


def heat_map(diff: torch.Tensor, scale: int = 24) -> np.ndarray:
    """[T, H, W] ≥ 0 → uint8 [T, H·scale, W·scale, 3]: black (none) → red → yellow (the video's largest)."""
    x = (diff / diff.max().clamp_min(1e-12)).clamp(0, 1)
    rgb = torch.stack([(2 * x).clamp(max=1), (2 * x - 1).clamp(min=0), torch.zeros_like(x)], -1)
    rgb = rgb.repeat_interleave(scale, 1).repeat_interleave(scale, 2)
    return (rgb * 255).round().to(torch.uint8).numpy()


def curve_strip(per_frame: np.ndarray, width: int, block_starts: list[int]) -> np.ndarray:
    """uint8 [T, CURVE_H, width, 3]: the per-frame difference curve, retrieval ticks, a cursor per frame."""
    t = len(per_frame)
    base = np.zeros((CURVE_H, width, 3), np.uint8)
    xs = (np.arange(t) + 0.5) * width / t
    ys = CURVE_H - 4 - (per_frame / max(per_frame.max(), 1e-12)) * (CURVE_H - 10)
    for f in block_starts:
        base[:6, int(f * width / t)] = (80, 160, 255)                             # a retrieving block begins
    for x0, y0, x1, y1 in zip(xs[:-1], ys[:-1], xs[1:], ys[1:]):
        for s in np.linspace(0, 1, max(2, int(abs(x1 - x0)) + 1)):
            base[int(round(y0 + s * (y1 - y0))), min(width - 1, int(x0 + s * (x1 - x0)))] = (255, 200, 0)
    out = np.repeat(base[None], t, 0)
    for i, x in enumerate(xs):
        out[i, :, int(x)] = np.maximum(out[i, :, int(x)], 110)                     # cursor
    return out


def three_panels(native: torch.Tensor, rag: torch.Tensor, retrieval_log: list[dict], label) -> np.ndarray:
    """Model-space latents [C, T, H, W] of both runs → uint8 video [T, H·24 + CURVE_H, 3·W·24, 3]."""
    diff = difference(native, rag)
    panels = np.concatenate([label(latent_preview(native), "native window"), label(latent_preview(rag), "LongLive-RAG"),
                             label(heat_map(diff), "difference")], axis=2)
    per_frame = diff.flatten(1).mean(1).numpy()
    curve = curve_strip(per_frame, panels.shape[2], [r["query_frame"] for r in retrieval_log])
    return np.concatenate([panels, curve], axis=1)


def summary(native: torch.Tensor, rag: torch.Tensor, retrieval_log: list[dict], frames_per_block: int) -> dict:
    """What retrieval changed and where it reached back to, in numbers (batch 1 latents [C, T, H, W]; the
    run's ``frames_per_block``)."""
    per_frame = difference(native, rag).flatten(1).mean(1)
    scale = float(native.float().abs().mean())
    changed = (per_frame > 1e-6 * max(scale, 1e-12)).nonzero()
    first = int(changed[0]) if len(changed) else None
    reach = [r["query_frame"] - min(r["global_frames"]) for r in retrieval_log]
    picked: dict[int, int] = {}
    for r in retrieval_log:
        for f in r["global_frames"]:
            picked[f] = picked.get(f, 0) + 1
    top = sorted(picked.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    return {
        "first_retrieving_block": retrieval_log[0]["block"] if retrieval_log else None,
        "first_frame_that_differs": first,
        "mean_difference_after": float(per_frame[first:].mean()) if first is not None else 0.0,
        "relative_difference": float((native.float() - rag.float()).norm() / native.float().norm()),
        "per_block_difference": [float(per_frame[i:i + frames_per_block].mean())
                                 for i in range(0, len(per_frame), frames_per_block)],
        "reach_back_frames": {"median": float(np.median(reach)) if reach else 0.0, "max": max(reach, default=0)},
        "most_retrieved_frames": [{"frame": f, "times": n} for f, n in top],
    }


def summary_lines(s: dict, latent: LatentFormat) -> list[str]:
    """``summary`` in words; seconds in the run's ``latent`` format."""
    if s["first_retrieving_block"] is None:
        return ["no block retrieved (the video is too short for frames to leave the window)"]
    sec = latent.frame_to_seconds(1)
    reach = s["reach_back_frames"]
    most = ", ".join(f"{m['frame']} ({m['times']}x)" for m in s["most_retrieved_frames"])
    return [
        f"first retrieving block: {s['first_retrieving_block']}; the two runs first differ at latent frame "
        f"{s['first_frame_that_differs']} (the retrieval regime places frames differently even before it retrieves); "
        f"overall difference {100 * s['relative_difference']:.1f} % (relative L2)",
        f"retrieval reached back a median of {reach['median']:.0f} latent frames ({reach['median'] * sec:.1f} s), "
        f"at most {reach['max']} ({reach['max'] * sec:.1f} s)",
        f"most retrieved latent frames: {most}",
    ]
