"""Render the retrieval log as a picture: which past frame each block retrieved, coloured by similarity."""
from __future__ import annotations

import io

import numpy as np


def window_band(num_frames: int, sink: int, window: int, frames_per_block: int) -> tuple[np.ndarray, np.ndarray]:
    """(q, lowest frame): the past frames a block starting at latent frame q still sees in the plain sliding
    window are [lowest, q) — the window of ``window`` frames holds the ``sink``, the block's own
    ``frames_per_block`` frames and the newest others: lowest = max(q + F − (L − S), S)."""
    q = np.arange(0, max(num_frames, 1) + 1)
    return q, np.maximum(q + frames_per_block - (window - sink), sink)


def render_retrieval_map(log: list[dict], num_frames: int, sink: int, window: int, frames_per_block: int,
                         title: str = "LongLive-RAG retrieval map", size_px: tuple[int, int] = (900, 620),
                         switches: list[dict] = ()) -> np.ndarray:
    """log: records with ``query_frame``, ``global_frames``, ``similarities`` (flat lists = batch 1;
    nested = batch, sample 0 is drawn); ``sink``, ``window`` and ``frames_per_block``: the run's (latent
    frames). Returns an RGB image uint8 [H, W, 3].

    x = the block's first frame, y = the retrieved frame, colour = cosine similarity; the shaded
    band is the sliding window (what native attention still sees, ``window_band``), the line at the
    bottom the sink. ``switches`` (GenerationResult.switches: ``block_start``, ``segment``): a vertical
    line where each prompt of a schedule begins.
    """
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    xs, ys, cs = [], [], []
    for rec in log:
        frames, sims = rec["global_frames"], rec["similarities"]
        if frames and isinstance(frames[0], list):
            frames, sims = frames[0], sims[0]
        xs += [rec["query_frame"]] * len(frames)
        ys += list(frames)
        cs += list(sims)
    dpi = 100
    fig, ax = plt.subplots(figsize=(size_px[0] / dpi, size_px[1] / dpi), dpi=dpi)
    try:
        span = max(num_frames, 1)
        q, lowest = window_band(num_frames, sink, window, frames_per_block)
        ax.fill_between(q, lowest, q, color="#dddddd", step="post", label=f"sliding window ({window} frames)")
        if sink:
            ax.axhspan(-0.5, sink - 0.5, color="#f4d6a0", label=f"sink ({sink})")
        if xs:
            sc = ax.scatter(xs, ys, c=cs, cmap="viridis", s=36, edgecolors="black", linewidths=0.3,
                            label="retrieved frame")
            fig.colorbar(sc, ax=ax, label="cosine similarity")
        else:
            ax.text(0.5, 0.5, "no block retrieved\n(video shorter than window + recency guard)",
                    ha="center", va="center", transform=ax.transAxes)
        ax.plot([0, span], [0, span], color="#999999", lw=0.8, ls="--")
        for i, sw in enumerate(switches):
            ax.axvline(sw["block_start"] - 0.5, color="#c0392b", lw=1.2, ls=":",
                       label="prompt switch" if i == 0 else None)
            ax.text(sw["block_start"], span, f" prompt {sw['segment']}", color="#c0392b", fontsize=8,
                    va="top", ha="left")
        ax.set_xlim(-0.5, span + 0.5)
        ax.set_ylim(-0.5, span + 0.5)
        from matplotlib.ticker import MaxNLocator
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("block (first latent frame)")
        ax.set_ylabel("retrieved latent frame")
        ax.set_title(title)
        ax.legend(loc="upper left", fontsize=8)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="rgba", dpi=dpi)
        w, h = fig.canvas.get_width_height()
        img = np.frombuffer(buf.getvalue(), dtype=np.uint8).reshape(h, w, 4)[..., :3].copy()
    finally:
        plt.close(fig)
    return img
