"""Writing videos and images atomically (temporary file beside the target, then rename).

mp4s are H.264 (yuv420p) through PyAV, which bundles its own ffmpeg. ``write_mp4`` also takes the
video as an iterable of chunks, so a long video can be streamed from the VAE to the file without
ever holding it whole (``write_mp4(path, (c[0].permute(1, 2, 3, 0) for c in vae.iter_decode(z))``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .atomic import atomic_path


def to_uint8(frames) -> np.ndarray:
    """float in [0, 1] or uint8, any array-like → uint8 numpy array."""
    arr = frames.detach().cpu().numpy() if hasattr(frames, "detach") else np.asarray(frames)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr.astype(np.float32), 0.0, 1.0) * 255.0).round().astype(np.uint8)
    return arr


def _chunks(frames) -> Iterator[np.ndarray]:
    """A whole video (numpy array / torch tensor [T, H, W, 3]) or an iterable of such chunks → uint8 chunks."""
    if isinstance(frames, np.ndarray) or hasattr(frames, "detach"):
        frames = [frames]
    for chunk in frames:
        chunk = to_uint8(chunk)
        if chunk.ndim != 4 or chunk.shape[-1] != 3:
            raise ValueError(f"video frames must be [T, H, W, 3]; got {list(chunk.shape)}")
        yield chunk


def write_mp4(path: str | Path, frames: np.ndarray | Iterable, fps: int, crf: int = 18) -> Path:
    """frames [T, H, W, 3] (float 0..1 or uint8; numpy or torch), or an iterable of such chunks of one
    video at ``fps`` (the backbone's rate: its latent format's) → H.264 mp4 (yuv420p; odd sizes padded to even by repeating the edge). The file appears
    only once complete: an error or interrupt leaves no file and no temporary behind."""
    import av
    path = Path(path)
    written = 0
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = None
            for chunk in _chunks(frames):
                _, h, w, _ = chunk.shape
                if stream is None:
                    ph, pw = h + h % 2, w + w % 2
                    stream = container.add_stream("libx264", rate=fps)
                    stream.width, stream.height, stream.pix_fmt = pw, ph, "yuv420p"
                    stream.options = {"crf": str(crf)}
                    size = (h, w)
                elif (h, w) != size:
                    raise ValueError(f"video chunk of size {h}×{w} after chunks of {size[0]}×{size[1]}; all "
                                     "frames of one video must have the same size")
                if (ph, pw) != (h, w):
                    chunk = np.pad(chunk, ((0, 0), (0, ph - h), (0, pw - w), (0, 0)), mode="edge")
                for frame in chunk:
                    for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                        container.mux(packet)
                written += len(chunk)
            if written == 0:
                raise ValueError(f"no video frames to write to '{path}'")
            for packet in stream.encode():
                container.mux(packet)
    return path


def read_video(path: str | Path) -> np.ndarray:
    """All frames of a video as uint8 [T, H, W, 3] (for checks and tests)."""
    import av
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def write_png(path: str | Path, image) -> Path:
    """image [H, W, 3] (float 0..1 or uint8) → PNG, written atomically."""
    from PIL import Image
    image = to_uint8(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image must be [H, W, 3]; got {list(image.shape)}")
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")
    return path
