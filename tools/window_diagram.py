"""Draws the AR Block Sampler help page's window diagram: web/docs/images/ar_window.png.

    python tools/window_diagram.py        # from the repository root

What one block attends to with the published settings (sink 1, window 12, 3 frames per block,
K = 6, R = 5), natively and with retrieval: the window counts the block being made, so the native
context is sink 1 + local 11 (8 recent + the block) and the retrieval context sink 1 + retrieved 6
+ local 5 (2 recent + the block) (core/context/kv_cache.py,
CachePolicy.local_frames). Labels are English only (no CJK font is assumed); the zh page explains them.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "web" / "docs" / "images" / "ar_window.png"
FRAMES, BLOCK, SINK, WINDOW, TOP_K, RECENT = 36, 3, 1, 12, 6, 5
RETRIEVED = (4, 9, 10, 15, 19, 22)          # an example selection: any frame before the recent guard
COLOURS = {"sink": "#f0a030", "local": "#4a90d9", "block": "#3cb371", "retrieved": "#9b59b6",
           "pool": "#e4e4e4", "recent": "#b8b8b8", "forgotten": "#f4f4f4"}
LABELS = {"sink": "sink (kept forever)", "local": "local window (recent frames)", "block": "block being made",
          "retrieved": "retrieved from the history pool", "pool": "history pool (not attended)",
          "recent": "recently evicted: never retrieved (R)", "forgotten": "forgotten (native)"}


def row_kinds(retrieval: bool) -> list[str]:
    """The kind of every latent frame 0..FRAMES-1 while the last block is made."""
    block_start = FRAMES - BLOCK
    local = WINDOW - SINK - (TOP_K if retrieval else 0)          # the window budget, block included
    kinds = []
    for f in range(FRAMES):
        if f < SINK:
            kinds.append("sink")
        elif f >= block_start:
            kinds.append("block")
        elif f >= FRAMES - local:
            kinds.append("local")
        elif not retrieval:
            kinds.append("forgotten")
        elif f >= FRAMES - local - RECENT:
            kinds.append("recent")
        else:
            kinds.append("retrieved" if f in RETRIEVED else "pool")
    return kinds


def draw(path: Path = OUT) -> Path:
    fig, ax = plt.subplots(figsize=(9.0, 3.3), dpi=100)
    rows = [("native sliding window", row_kinds(False), "sink 1 + recent 8 + block 3 = 12"),
            ("LongLive-RAG", row_kinds(True), "sink 1 + retrieved 6\n+ recent 2 + block 3 = 12")]
    for r, (title, kinds, total) in enumerate(rows):
        y = 1.6 - r * 1.6
        for f, kind in enumerate(kinds):
            ax.add_patch(Rectangle((f, y), 0.92, 0.9, facecolor=COLOURS[kind], edgecolor="#999999", lw=0.4))
        ax.text(-0.6, y + 0.45, title, ha="right", va="center", fontsize=9, fontweight="bold")
        ax.text(FRAMES + 0.4, y + 0.45, "context:\n" + total, ha="left", va="center", fontsize=8)
    # the history pool: every frame that has left the window (sink excepted)
    pool_end = FRAMES - (WINDOW - SINK - TOP_K)
    ax.annotate("", xy=(SINK, 1.05), xytext=(pool_end - 0.08, 1.05),
                arrowprops=dict(arrowstyle="<->", color="#555555", lw=0.8))
    ax.text((SINK + pool_end) / 2, 1.15, "history pool: frames that left the window (searched by similarity)",
            ha="center", va="bottom", fontsize=7.5, color="#333333")
    ax.text(FRAMES - BLOCK + 1.5, -0.1, "now", ha="center", va="top", fontsize=8)
    for f in range(0, FRAMES + 1, 6):
        ax.text(f, 3.0, str(f), ha="left", va="bottom", fontsize=7, color="#666666")
    ax.text(0, 3.4, "latent frame (1 latent frame = 4 video frames at 16 fps)", fontsize=7.5, color="#666666")
    order = ("sink", "retrieved", "local", "block", "pool", "recent", "forgotten")
    ax.legend(handles=[Patch(color=COLOURS[k], label=LABELS[k]) for k in order], loc="upper center",
              bbox_to_anchor=(0.5, -0.02), ncol=4, fontsize=7.5, frameon=False)
    ax.set_xlim(-14, FRAMES + 9)
    ax.set_ylim(-0.7, 3.8)
    ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


if __name__ == "__main__":
    print(f"wrote {draw()}")
