"""Writing videos and images atomically (temporary file beside the target, then rename)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .io import atomic_path


def to_uint8(frames) -> np.ndarray:
    """float in [0, 1] or uint8, any array-like → uint8 numpy array."""
    arr = frames.detach().cpu().numpy() if hasattr(frames, "detach") else np.asarray(frames)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr.astype(np.float32), 0.0, 1.0) * 255.0).round().astype(np.uint8)
    return arr


def write_mp4(path: str | Path, frames, fps: int = 16, crf: int = 18) -> Path:
    """frames [T, H, W, 3] (float 0..1 or uint8) → H.264 mp4 (yuv420p; odd sizes padded to even)."""
    import av
    video = to_uint8(frames)
    if video.ndim != 4 or video.shape[-1] != 3:
        raise ValueError(f"video frames must be [T, H, W, 3]; got {list(video.shape)}")
    t, h, w, _ = video.shape
    ph, pw = h + h % 2, w + w % 2
    if (ph, pw) != (h, w):
        video = np.pad(video, ((0, 0), (0, ph - h), (0, pw - w), (0, 0)), mode="edge")
    path = Path(path)
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = pw, ph, "yuv420p"
            stream.options = {"crf": str(crf)}
            for frame in video:
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    return path


def read_video(path: str | Path) -> np.ndarray:
    """All frames of a video as uint8 [T, H, W, 3] (for checks and tests)."""
    import av
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def write_png(path: str | Path, image) -> Path:
    """image [H, W, 3] (float 0..1 or uint8) → PNG."""
    from PIL import Image
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(to_uint8(image)).save(tmp, format="PNG")
    return path
