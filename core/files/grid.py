"""Side-by-side comparison videos: several runs of one prompt and seed tiled into one labelled grid.

``tile`` works on whole videos held in memory (the ComfyUI node's IMAGE batches); ``write_grid_mp4``
streams mp4 files frame by frame into the grid mp4, so long videos are never held whole.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from .video import to_uint8, write_mp4

LABEL_H = 16
GAP = 4


def grid_shape(n: int, columns: int = 0) -> tuple[int, int]:
    """(rows, columns) for ``n`` tiles; ``columns`` 0 = as square as possible, wider than tall."""
    if n < 1:
        raise ValueError("a comparison grid needs at least one video")
    if columns < 0:
        raise ValueError(f"columns {columns} must be ≥ 0 (0 = automatic)")
    cols = min(n, columns) if columns else math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


def _label_strip(text: str, width: int) -> np.ndarray:
    """uint8 [LABEL_H, width, 3]: white text on black (cut to the tile's width)."""
    from PIL import Image, ImageDraw
    img = Image.new("RGB", (width, LABEL_H), (0, 0, 0))
    ImageDraw.Draw(img).text((3, 2), text, fill=(255, 255, 255))
    return np.asarray(img)


class _Layout:
    """Where each tile goes in a grid of equally sized tiles, each with its label strip above it."""

    def __init__(self, labels: Sequence[str], tile_hw: tuple[int, int], columns: int = 0):
        self.rows, self.cols = grid_shape(len(labels), columns)
        self.h, self.w = tile_hw
        self.strips = [_label_strip(text, self.w) for text in labels]
        self.size = (self.rows * (LABEL_H + self.h) + (self.rows - 1) * GAP, self.cols * self.w + (self.cols - 1) * GAP)

    def compose(self, tiles: Sequence[np.ndarray]) -> np.ndarray:
        """uint8 tiles [T, h, w, 3] (same T) → [T, H, W, 3] grid (empty cells stay dark grey)."""
        out = np.full((tiles[0].shape[0], *self.size, 3), 32, np.uint8)
        for i, (tile, strip) in enumerate(zip(tiles, self.strips)):
            r, c = divmod(i, self.cols)
            y, x = r * (LABEL_H + self.h + GAP), c * (self.w + GAP)
            out[:, y:y + LABEL_H, x:x + self.w] = strip
            out[:, y + LABEL_H:y + LABEL_H + self.h, x:x + self.w] = tile
        return out


def _check(labels: Sequence[str], shapes: Sequence[tuple[int, ...]], what: str) -> None:
    if len(labels) != len(shapes):
        raise ValueError(f"{len(shapes)} videos but {len(labels)} labels; give one label per video")
    first = shapes[0]
    for label, shape in zip(labels, shapes):
        if tuple(shape[1:3]) != tuple(first[1:3]):
            raise ValueError(f"{what} '{label}' is {shape[2]}x{shape[1]} px but '{labels[0]}' is "
                             f"{first[2]}x{first[1]}; compare runs of the same size")


def tile(videos: Sequence, labels: Sequence[str], columns: int = 0) -> np.ndarray:
    """Videos [T_i, H, W, 3] (float 0..1 or uint8) → one uint8 grid video [T, H', W', 3], a label above each.
    Shorter videos hold their last frame until the longest ends."""
    arrays = [to_uint8(v) for v in videos]
    _check(labels, [a.shape for a in arrays], "video")
    t = max(a.shape[0] for a in arrays)
    arrays = [np.concatenate([a, np.repeat(a[-1:], t - a.shape[0], 0)]) if a.shape[0] < t else a for a in arrays]
    return _Layout(labels, arrays[0].shape[1:3], columns).compose(arrays)


def _frames(path: Path) -> Iterator[np.ndarray]:
    import av
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            yield frame.to_ndarray(format="rgb24")


def _probe(path: Path) -> tuple[int, int, int]:
    import av
    with av.open(str(path)) as container:
        s = container.streams.video[0]
        return s.frames, s.height, s.width


def write_grid_mp4(out: str | Path, videos: Sequence[str | Path], labels: Sequence[str], fps: int,
                   columns: int = 0, chunk: int = 16) -> Path:
    """Tile mp4 files (same size) into ``out``, streamed ``chunk`` frames at a time; written atomically."""
    paths = [Path(p) for p in videos]
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"video '{p}' does not exist; generate it first")
    _check(labels, [_probe(p) for p in paths], "video")
    layout = _Layout(labels, _probe(paths[0])[1:], columns)

    def chunks():
        streams, last = [_frames(p) for p in paths], [None] * len(paths)
        while True:
            block = [[] for _ in paths]
            for i, s in enumerate(streams):
                for _ in range(chunk):
                    f = next(s, None)
                    if f is None:
                        break
                    block[i].append(f)
                    last[i] = f
            if not any(block):
                return
            n = max(len(b) for b in block)
            yield layout.compose([np.stack(b + [last[i]] * (n - len(b))) for i, b in enumerate(block)])
    return write_mp4(out, chunks(), fps=fps)
