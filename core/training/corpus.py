"""The retrieval encoder's training corpus: a folder with one file per video, read window by window.

A file is ``*.safetensors`` holding ``latents`` [T, C, H, W] (written by ``python -m core build-corpus``)
or a published ``*.pt`` tensor. Videos are split into train / val by file exactly as the published code
does (``random_split`` order with a generator seeded by ``seed``), and ``ChunkDataset`` serves windows of
``seq_len`` consecutive frames, reading only those frames.
"""
from __future__ import annotations

import random
from pathlib import Path

import torch

from ..files.safe_reader import read_weights, why_unreadable


def _latents_shape(path: Path) -> tuple[int, ...]:
    if path.suffix == ".pt":
        return tuple(_load_pt(path).shape)
    from safetensors import safe_open
    with safe_open(str(path), "pt") as fh:
        if "latents" not in fh.keys():
            raise ValueError(f"corpus file '{path}' has no 'latents' tensor (found {sorted(fh.keys())[:4]}); "
                             "expected 'latents' [T, C, H, W] as written by `python -m core build-corpus`")
        return tuple(fh.get_slice("latents").get_shape())


def _load_pt(path: Path) -> torch.Tensor:
    """The published corpus format: a bare tensor [T, C, H, W] (or {"latents": tensor}), memory-mapped."""
    obj = read_weights(path, "corpus file", mmap=True).content   # mmap: only the frames used are read
    if isinstance(obj, dict) and "latents" in obj:
        obj = obj["latents"]
    if not torch.is_tensor(obj):
        found = sorted(obj)[:4] if isinstance(obj, dict) else type(obj).__name__
        raise ValueError(f"corpus file '{path}' holds {found}; expected a latents tensor [T, C, H, W] "
                         "(or a dict with 'latents')")
    return obj


def read_window(path: Path, start: int, length: int) -> torch.Tensor:
    """Frames [start, start + length) of a corpus file as float32 [≤length, C, H, W]; reads only those."""
    if path.suffix == ".pt":
        return _load_pt(path)[start:start + length].float().clone()
    from safetensors import safe_open
    with safe_open(str(path), "pt") as fh:
        return fh.get_slice("latents")[start:start + length].float()


def _checked_shape(path: Path) -> tuple[int, ...]:
    """The shape [T, C, H, W] of a corpus file's latents; ValueError naming the file otherwise."""
    try:
        s = _latents_shape(path)
    except ValueError:
        raise
    except Exception as exc:  # truncated, not a safetensors/torch file, unsafe pickle
        raise ValueError(f"corpus file '{path}' is not readable: {why_unreadable(exc)}; expected 'latents' "
                         "[T, C, H, W] (write it again with python -m core build-corpus)") from exc
    if len(s) != 4 or s[0] < 1:
        raise ValueError(f"corpus file '{path}': 'latents' has shape {list(s)}; expected [T, C, H, W] with "
                         "T ≥ 1 frames (one video per file, no batch dimension)")
    return s


def scan_corpus(folder: str | Path) -> tuple[list[Path], tuple[int, int, int]]:
    """The corpus files (sorted by name) and their common frame shape (C, H, W).

    Raises FileNotFoundError / ValueError naming the folder or the offending file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"training data folder '{folder}' does not exist; build one with "
                                "`python -m core build-corpus`")
    files = sorted([*folder.glob("*.safetensors"), *folder.glob("*.pt")], key=lambda p: p.name)
    if not files:
        raise ValueError(f"training data folder '{folder}' has no *.safetensors (key 'latents') or *.pt files "
                         "with latents [T, C, H, W] (C = 16 or 48); build one with `python -m core build-corpus`")
    shape = None
    for f in files:
        s = _checked_shape(f)
        if shape is None:
            shape = s[1:]
        elif s[1:] != shape:
            raise ValueError(f"corpus file '{f}' has frames [C, H, W] = {list(s[1:])} but '{files[0].name}' has "
                             f"{list(shape)}; all videos of a corpus must share channels and latent size — "
                             "move the odd ones to another folder")
    return files, shape


def split_files(files: list[Path], val_split: float, seed: int) -> tuple[list[Path], list[Path]]:
    """(train, val) by file, as the published ``random_split(files, [n − n_val, n_val], seed)``:
    n_val = max(1, int(n · val_split)) when val_split > 0 and there are ≥ 2 files, else 0."""
    n = len(files)
    n_val = max(1, int(n * val_split)) if val_split > 0 and n >= 2 else 0
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return [files[i] for i in order[:n - n_val]], [files[i] for i in order[n - n_val:]]


class ChunkDataset(torch.utils.data.Dataset):
    """Windows of ``seq_len`` consecutive frames [S, C, H, W], one random window per video and item
    (short videos are padded with their last frame, as published).

    The window start depends only on (seed, epoch, item), so it is the same with any number of
    workers or processes and after a resume; call ``set_epoch`` to draw new windows.
    """

    def __init__(self, files: list[Path], seq_len: int, chunks_per_video: int = 1, seed: int = 0):
        self.files, self.seq_len, self.per, self.seed, self.epoch = files, seq_len, chunks_per_video, seed, 0
        self.frames: dict[int, int] = {}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self):
        return len(self.files) * self.per

    def __getitem__(self, i):
        f = self.files[i % len(self.files)]
        t = self.frames.get(i % len(self.files))
        if t is None:
            t = self.frames[i % len(self.files)] = _latents_shape(f)[0]
        start = random.Random(f"{self.seed}:{self.epoch}:{i}").randint(0, max(0, t - self.seq_len))
        chunk = read_window(f, start, self.seq_len)
        if chunk.shape[0] < self.seq_len:
            chunk = torch.cat([chunk, chunk[-1:].expand(self.seq_len - chunk.shape[0], *chunk.shape[1:])])
        return chunk
