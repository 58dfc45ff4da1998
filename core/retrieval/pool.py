"""The history pool: what is kept of each frame that leaves the KV cache window.

Entry i is global frame ``sink + i`` (frames leave in order). Stored per frame, for every
layer: K (before RoPE) and V, each [layers, B, tokens, heads, head_dim]. Entries are real
copies taken at eviction — never views of the cache, which keeps moving.

Where entries live is a list of tiers filled in order — ``device`` (GPU memory), ``host`` (RAM,
pinned when the compute device is CUDA), ``disk`` — the first with an optional byte budget; a
frame that does not fit spills to the next tier, so each tier holds one run of consecutive entries.
Every tier stores one fixed-size row per entry and sample, its fields (K, V, scales or the latent)
back to back: RAM and GPU tiers in a few large chunks, the disk tier in one append-only file per
pool (row r at byte r·row_bytes), deleted by close() or garbage collection; its name carries the run's pid and
host, so that ``sweep_pool_files`` (called by a front end at its start) can delete the files of runs killed
before they could. Nothing is listed or searched, so an append or a gather costs the same at entry 10 as at
100,000: a gather reads its rows into one reused buffer (pinned, then one copy, for a GPU) and decodes them into
new tensors.

What is stored (``storage``):
  ``kv``       exact K/V in the compute dtype (reference behaviour, the default);
  ``kv-half``  K/V in half the bytes (bfloat16 for float32 compute, float8-e4m3 with a
               per-frame/layer/head scale for 16-bit compute) — an approximation;
  ``kv-fp8``   K/V as float8-e4m3 with one float32 scale per token and head (amax over head_dim / 448),
               whatever the compute dtype: about a quarter of ``kv`` for float32 compute, about half for
               16-bit — an approximation (≤ 2^-4 relative per element);
  ``latent``   only the frame's clean latent [B, C, H, W]; its K/V are recomputed when it is
               retrieved, without the frame's original context — an approximation.
"""
from __future__ import annotations

import bisect
import math
import os
import tempfile
import weakref
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..files import owners
from ..files.atomic import WriteError
from ..context.fp8 import quantise
from ..files.memory import device_available, host_available
from .config import PoolConfig

# (latents [B, n, C, H, W]) -> (k, v) each [layers, B, n·tokens, heads, d] before RoPE
Recompute = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

_ALIGN = 8                  # field offsets within a row: any dtype can view its bytes
_CHUNK_BYTES = 64 * 2**20   # RAM/GPU tiers grow by chunks of at most this (or one frame if larger)


class _Layout:
    """The bytes of one row (one entry of one sample): each field [*shape] in its dtype, 8-byte aligned."""

    def __init__(self, fields: Sequence[torch.Tensor]):
        """``fields``: one frame's tensors, batch first [B, *shape]."""
        self.batch = fields[0].shape[0]
        self.signature = [(f.shape, f.dtype) for f in fields]
        self.fields = [(tuple(f.shape[1:]), f.dtype) for f in fields]
        self.offsets, offset, data = [], 0, 0
        for shape, dtype in self.fields:
            nbytes = math.prod(shape) * dtype.itemsize
            self.offsets.append(offset)
            offset += -(-nbytes // _ALIGN) * _ALIGN
            data += nbytes
        self.row_bytes = offset
        self.frame_bytes = self.batch * data    # what a frame costs against a budget (no padding)

    def check(self, fields: Sequence[torch.Tensor]) -> None:
        got = [(f.shape, f.dtype) for f in fields]
        if got != self.signature:
            raise ValueError(f"history pool: a frame of shapes/dtypes {got} does not match the pool's first frame "
                             f"{self.signature}; every frame of one run has the same size — close() the pool "
                             f"to start over")


class _Rows:
    """uint8 rows [n, row_bytes] on one device, with their field views [n, *shape] made once."""
    __slots__ = ("data", "fields", "bytes")

    def __init__(self, layout: _Layout, n: int, device: torch.device, pin: bool = False):
        self.data = torch.zeros((n, layout.row_bytes), dtype=torch.uint8, device=device, pin_memory=pin)
        self.fields = [self.data[:, o:o + math.prod(shape) * dtype.itemsize].view(dtype).view(n, *shape)
                       for o, (shape, dtype) in zip(layout.offsets, layout.fields)]
        self.bytes = memoryview(self.data.numpy()).cast("B") if self.data.device.type == "cpu" else None

    def __len__(self) -> int:
        return self.data.shape[0]


class _Tier:
    """One storage level holding ``frames`` consecutive entries as rows (row = entry·B + sample)."""

    def __init__(self, kind: str, budget_bytes: int | None):
        self.kind, self.budget_bytes = kind, budget_bytes
        self.used_bytes = 0
        self.frames = 0

    def fits(self, nbytes: int) -> bool:
        return self.budget_bytes is None or self.used_bytes + nbytes <= self.budget_bytes

    def _stored(self, layout: _Layout) -> None:
        self.frames += 1
        self.used_bytes += layout.frame_bytes

    def close(self) -> None:
        self.used_bytes = self.frames = 0


class _MemoryTier(_Tier):
    """Rows in chunks on ``device``; a new chunk about doubles the capacity (capped by _CHUNK_BYTES
    and the budget), so growing never copies what is stored."""

    def __init__(self, kind: str, budget_bytes: int | None, device: torch.device, pin: bool):
        super().__init__(kind, budget_bytes)
        self.device, self.pin = device, pin
        self.chunks: list[_Rows] = []
        self.starts: list[int] = []      # first row of each chunk
        self.capacity = 0                # rows

    def write(self, layout: _Layout, fields: Sequence[torch.Tensor]) -> None:
        """Copy the next entry's fields [B, *shape] into its rows."""
        b = layout.batch
        row = self.frames * b
        if row + b > self.capacity:
            frames = min(max(self.frames, 16), max(1, _CHUNK_BYTES // (b * layout.row_bytes)))
            if self.budget_bytes is not None:
                frames = min(frames, max(1, (self.budget_bytes - self.used_bytes) // layout.frame_bytes))
            self.starts.append(self.capacity)
            self.chunks.append(_Rows(layout, frames * b, self.device, self.pin))
            self.capacity += frames * b
        r = row - self.starts[-1]
        for dst, src in zip(self.chunks[-1].fields, fields):
            dst[r:r + b].copy_(src)
        self._stored(layout)

    def row(self, r: int) -> torch.Tensor:
        """Row r, uint8 [row_bytes] (a view of the store)."""
        c = bisect.bisect_right(self.starts, r) - 1
        return self.chunks[c].data[r - self.starts[c]]

    def close(self) -> None:
        super().close()
        self.chunks, self.starts, self.capacity = [], [], 0


def _resolve(device: str | torch.device) -> torch.device:
    """'cuda' → 'cuda:<current>', so devices compare equal however they were named."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


POOL_PREFIX = "longlive_rag_pool_"      # + <pid>@<host>.<random>.bin: its run is in its name
POOL_FILES = owners.temp_pattern(POOL_PREFIX, r"\.bin")
_POOL_FIX = "free space there or choose another pool folder (--pool-dir), or keep the pool in RAM"


def pool_folder(directory: str | None) -> Path:
    """Where the disk tier's file goes: ``directory``, else the system's temporary folder (the folder the planner
    checks the free space of, and stale pool files are swept from)."""
    return Path(directory) if directory is not None else Path(tempfile.gettempdir())


def sweep_pool_files(directory: str | Path | None) -> list[Path]:
    """Delete the pool files that runs now gone (killed before they could) left in ``directory`` (None: the
    system's temporary folder); a live run's file is never touched (core/files/owners.py). → those deleted."""
    return owners.sweep(pool_folder(directory), POOL_FILES)


def _delete_file(fh, path: str) -> None:
    fh.close()
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


class _DiskTier(_Tier):
    """Rows in one append-only file, row r at byte r·row_bytes; created at the first write and
    deleted by close() or when the tier is garbage-collected."""

    def __init__(self, directory: str | None):
        super().__init__("disk", None)
        self.directory = directory
        self.path: str | None = None
        self._fh = None
        self._finalizer = None
        self._scratch: _Rows | None = None   # the entry being written

    def _open(self) -> None:
        root = pool_folder(self.directory)
        root.mkdir(parents=True, exist_ok=True)
        try:
            fd, self.path = owners.temp_file(root, POOL_PREFIX, ".bin")
        except OSError as e:
            raise WriteError("history pool: creating its file in", root, e, _POOL_FIX, folder=root) from e
        self._fh = os.fdopen(fd, "r+b", buffering=0)
        self._finalizer = weakref.finalize(self, _delete_file, self._fh, self.path)

    def write(self, layout: _Layout, fields: Sequence[torch.Tensor]) -> None:
        """Append the next entry's fields [B, *shape] to the file."""
        if self._fh is None:
            self._open()
            self._scratch = _Rows(layout, layout.batch, torch.device("cpu"))
        for dst, src in zip(self._scratch.fields, fields):
            dst.copy_(src)
        data, offset = self._scratch.bytes, self.frames * len(self._scratch.bytes)
        try:
            while data:
                n = _pwrite(self._fh, data, offset)
                data, offset = data[n:], offset + n
        except OSError as e:
            raise WriteError(f"history pool: writing frame {self.frames} to", self.path, e, _POOL_FIX) from e
        self._stored(layout)

    def read(self, r: int, dst: memoryview) -> None:
        """Row r into dst (row_bytes bytes)."""
        offset = r * len(dst)
        while dst:
            n = _preadinto(self._fh, dst, offset)
            if not n:
                raise OSError(f"history pool: {self.path} ended before row {r}; was it deleted or truncated?")
            dst, offset = dst[n:], offset + n

    def close(self) -> None:
        super().close()
        if self._finalizer is not None:
            self._finalizer()
        self._fh = self._finalizer = self.path = self._scratch = None


if hasattr(os, "pwrite") and hasattr(os, "preadv"):   # one system call each, no shared file position
    def _pwrite(fh, data: memoryview, offset: int) -> int:
        return os.pwrite(fh.fileno(), data, offset)

    def _preadinto(fh, dst: memoryview, offset: int) -> int:
        return os.preadv(fh.fileno(), [dst], offset)
else:                                                  # Windows
    def _pwrite(fh, data: memoryview, offset: int) -> int:
        fh.seek(offset)
        return fh.write(data)

    def _preadinto(fh, dst: memoryview, offset: int) -> int:
        fh.seek(offset)
        return fh.readinto(dst)


def _encode(storage: str, ks: torch.Tensor, vs: torch.Tensor) -> list[torch.Tensor]:
    """ks, vs [layers, B, T, heads, d] → the stored fields, same layout (fp8 adds two scales)."""
    if storage == "kv":
        return [ks, vs]
    if storage == "kv-fp8":
        return _fp8(ks, vs, dims=(4,))            # one scale per layer/sample/token/head
    if ks.element_size() >= 4:
        return [ks.to(torch.bfloat16), vs.to(torch.bfloat16)]
    return _fp8(ks, vs, dims=(2, 4))              # one scale per layer/sample/head


def _fp8(ks: torch.Tensor, vs: torch.Tensor, dims: tuple[int, ...]) -> list[torch.Tensor]:
    """ks, vs [layers, B, T, heads, d] → [k8, v8, k_scale, v_scale]: float8-e4m3fn values and float32 scales
    (amax over ``dims`` / 448, kept as size-1 dims so that ``x8.float() * scale`` decodes; core/context/fp8.py)."""
    (k8, k_scale), (v8, v_scale) = quantise(ks, dims), quantise(vs, dims)
    return [k8, v8, k_scale, v_scale]


def _fields(storage: str, k: Sequence[torch.Tensor], v: Sequence[torch.Tensor],
            latent: torch.Tensor | None) -> list[torch.Tensor]:
    """One frame's stored fields, batch first [B, *shape]."""
    if storage == "latent":
        if latent is None:
            raise ValueError("latent pool storage needs each evicted frame's latent")
        return [latent.detach()]
    return [f.transpose(0, 1) for f in _encode(storage, torch.stack(list(k)), torch.stack(list(v)))]


def frame_bytes(storage: str, k: Sequence[torch.Tensor], v: Sequence[torch.Tensor],
                latent: torch.Tensor | None = None) -> int:
    """Bytes one frame costs a pool of this ``storage`` (what ``HistoryPool.bytes_per_frame`` reports), for
    per-layer k/v [B, tokens, heads, d] and the latent [B, C, H, W]; meta tensors are fine (nothing is stored).
    For meta K/V the stored fields are encoded from real frames of one and two tokens (every field but
    kv-half's per-head scales grows by the same bytes per token), so no computation runs on the meta device: torch
    implements it in Python and imports its compiler for it, seconds of start-up."""
    if storage == "latent" or not k[0].is_meta:
        return _Layout(_fields(storage, k, v, latent)).frame_bytes
    b, tokens, heads, d = k[0].shape
    one, two = (frame_bytes(storage, [torch.zeros(b, n, heads, d, dtype=x.dtype) for x in k],
                            [torch.zeros(b, n, heads, d, dtype=x.dtype) for x in v]) for n in (1, 2))
    return one + (tokens - 1) * (two - one)


class HistoryPool:
    def __init__(self, config: PoolConfig | None = None, compute_device: str | torch.device = "cpu",
                 recompute: Recompute | None = None, reserved: dict[str, int] | None = None):
        """``recompute`` turns stored latents back into K/V; the ``latent`` storage needs it. ``reserved``: bytes
        the rest of the run will still take in ``host`` RAM and on the ``device`` (what an ``auto`` budget
        leaves to it)."""
        self.config = config = config if config is not None else PoolConfig()
        if config.storage == "latent" and recompute is None:
            raise ValueError("latent pool storage needs a recompute function (generate() passes it)")
        self.storage = config.storage
        self.compute_device = _resolve(compute_device)
        cuda = self.compute_device.type == "cuda"
        self.tiers: list[_Tier] = []
        for i, kind in enumerate(config.tier_kinds):
            if kind == "disk":
                self.tiers.append(_DiskTier(config.directory))
            else:
                device = self.compute_device if kind == "device" else torch.device("cpu")
                room = device_available(device) if kind == "device" else host_available()
                budget = config.budget_for(i, room, (reserved or {}).get(kind, 0))
                self.tiers.append(_MemoryTier(kind, budget, device, pin=kind == "host" and cuda))
        self.recompute = recompute
        self.peak_bytes = 0
        self._layout: _Layout | None = None
        self._current = 0          # the tier being filled (all entries are the same size: it only moves on)
        self._gather: dict[torch.device, _Rows] = {}   # reused gather buffers, one per device
        self._h2d_done = None      # CUDA event: the pinned gather buffer may be refilled

    # ------------------------------------------------------------------ bookkeeping
    def __len__(self) -> int:
        return sum(t.frames for t in self.tiers)

    @property
    def bytes_per_frame(self) -> int:
        return self._layout.frame_bytes if self._layout is not None and len(self) else 0

    @property
    def total_bytes(self) -> int:
        return sum(t.used_bytes for t in self.tiers)

    def usage(self) -> dict:
        """Bytes and frames per tier (for logs, timings and the ComfyUI node)."""
        return {t.kind: {"bytes": t.used_bytes, "budget": t.budget_bytes, "frames": t.frames} for t in self.tiers}

    def _gather_buffer(self, rows: int, device: torch.device, pin: bool = False) -> _Rows:
        """The reused gather buffer on ``device`` with at least ``rows`` rows."""
        buf = self._gather.get(device)
        if buf is None or len(buf) < rows:
            buf = self._gather[device] = _Rows(self._layout, rows, device, pin)
        return buf

    # ------------------------------------------------------------------ writing
    def append(self, k: Sequence[torch.Tensor], v: Sequence[torch.Tensor], latent: torch.Tensor | None = None) -> None:
        """Add the next evicted frame: per-layer k/v [B, tokens, heads, d] (views are fine; copied here),
        and its clean latent [B, C, H, W] (required for the latent storage)."""
        fields = _fields(self.storage, k, v, latent)
        if self._layout is None:
            self._layout = _Layout(fields)
        self._layout.check(fields)
        nbytes = self._layout.frame_bytes
        while self._current < len(self.tiers) and not self.tiers[self._current].fits(nbytes):
            self._current += 1
        if self._current == len(self.tiers):
            raise MemoryError(f"history pool budget exhausted: a frame needs {nbytes / 2**20:.1f} MB and every "
                              f"tier ({[t.kind for t in self.tiers]}) is full; raise the pool budget or add disk")
        self.tiers[self._current].write(self._layout, fields)
        self.peak_bytes = max(self.peak_bytes, self.total_bytes)

    # ------------------------------------------------------------------ reading
    def _locate(self, i: int) -> tuple[_Tier, int]:
        local = i
        for tier in self.tiers:
            if 0 <= local < tier.frames:
                return tier, local
            local -= tier.frames
        raise IndexError(f"history pool index {i} out of range: the pool holds {len(self)} frames")

    def _read_rows(self, indices: list[list[int]], device: torch.device) -> _Rows:
        """The rows of entries indices[b][j] for sample b into the first B·n rows of the reused
        gather buffer on ``device`` (valid until the next gather). Disk and RAM rows bound for a
        GPU are collected in one pinned buffer and moved in one copy."""
        b, n = len(indices), len(indices[0])
        dst = self._gather_buffer(b * n, device)
        far, near = [], []           # (row in dst, tier, row in tier); far: via the host buffer
        for bi, row in enumerate(indices):
            for j, i in enumerate(row):
                tier, local = self._locate(i)
                here = device.type == "cpu" or (isinstance(tier, _MemoryTier) and tier.device == device)
                (near if here else far).append((bi * n + j, tier, local * b + bi))
        if far:
            cuda = device.type == "cuda"
            if self._h2d_done is not None:
                self._h2d_done.synchronize()     # the previous gather's copy has left the host buffer
            host = self._gather_buffer(b * n, torch.device("cpu"), pin=cuda)
            self._fill(host, far)
            dst.data[:b * n].copy_(host.data[:b * n], non_blocking=cuda)
            if cuda:
                self._h2d_done = torch.cuda.Event()
                self._h2d_done.record(torch.cuda.current_stream(device))
        self._fill(dst, near)        # after the bulk copy, which carried garbage in these rows
        return dst

    def _fill(self, dst: _Rows, rows: list[tuple[int, _Tier, int]]) -> None:
        size = self._layout.row_bytes
        for j, tier, r in sorted(rows, key=lambda x: x[2]):   # disk rows in file order
            if isinstance(tier, _DiskTier):
                tier.read(r, dst.bytes[j * size:(j + 1) * size])
            else:
                dst.data[j].copy_(tier.row(r))

    def gather(self, indices: torch.Tensor, device: torch.device, dtype: torch.dtype
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """indices [B, n] pool entries per sample → (k, v) [layers, B, n·tokens, heads, d] before RoPE,
        on ``device`` in ``dtype`` (new tensors the caller owns). Called once per block; the result
        serves every step and layer."""
        device = _resolve(device)
        b, n = indices.shape
        if len(self) == 0:
            raise IndexError("history pool: gather from an empty pool")
        rows = self._read_rows(indices.tolist(), device)
        fields = [f[:b * n].view(b, n, *f.shape[1:]) for f in rows.fields]
        if self.storage == "latent":
            return self.recompute(fields[0].clone())                      # [B, n, C, H, W]
        scales = fields[2:] if len(fields) == 4 else (None, None)
        out = []
        for x, s in zip(fields[:2], scales):                                # x [B, n, layers, T, heads, d]
            x = x if s is None else x.float() * s
            layers, t, h, d = x.shape[2:]
            o = torch.empty((layers, b, n, t, h, d), dtype=dtype, device=device)
            o.copy_(x.permute(2, 0, 1, 3, 4, 5))
            out.append(o.view(layers, b, n * t, h, d))
        return out[0], out[1]

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        """Free every entry and delete the disk file; the pool is empty afterwards."""
        for t in self.tiers:
            t.close()
        self._current = 0
        self._layout = None
        self._gather.clear()
        self._h2d_done = None
