"""The history pool: what is kept of each frame that leaves the KV cache window.

Entry i is global frame ``sink + i`` (frames leave in order). Stored per frame, for every layer: K (before RoPE)
and V, each [layers, B, tokens, heads, head_dim]: copies taken at eviction, never views of the moving cache.

Where entries live is a list of tiers filled in order — ``device`` (GPU memory), ``host`` (RAM,
pinned when the compute device is CUDA), ``disk`` — the first with an optional byte budget; a
frame that does not fit spills to the next tier, so each tier holds one run of consecutive entries.
Every tier stores one fixed-size row per entry and sample, its fields (K, V, scales or the latent)
back to back: RAM and GPU tiers in a few large chunks, the disk tier in one append-only file per
pool (disk.py: row r at byte r·stride, large rows read past the page cache, a few at once), deleted by close()
or garbage collection, and swept by ``sweep_pool_files`` when its run was killed before it could. Nothing is listed
or searched, so an append or a gather costs the same at entry 10 as at 100,000. An append encodes and copies one
layer at a time; a gather decodes each row straight from where it is kept (disk rows via one reused host buffer,
pinned for a GPU) into new tensors or the caller's: nothing of the whole choice's size is made on the device twice.

What is stored (``storage``):
  ``kv``       exact K/V in the compute dtype (reference behaviour, the default);
  ``kv-half``  K/V in half the bytes (bfloat16 for float32 compute, float8-e4m3 with a per-frame/layer/head scale
               for 16-bit compute) — an approximation;
  ``kv-fp8``   K/V as float8-e4m3 with one float32 scale per token and head (amax over head_dim / 448),
               whatever the compute dtype: about a quarter of ``kv`` for float32 compute, about half for
               16-bit — an approximation (≤ 2^-4 relative per element);
  ``latent``   only the frame's clean latent [B, C, H, W]; its K/V are recomputed when it is
               retrieved, without the frame's original context — an approximation.
"""
from __future__ import annotations

import bisect
import math
from typing import Callable, Iterator, Sequence

import torch

from ..context.fp8 import quantise
from ..files.memory import device_available, host_available
from ..files.memory_trace import HOST, allocating, host_device, label
from .config import PoolConfig
from .lazy import RetrievedLayers
from .disk import (POOL_FILES, POOL_PREFIX, PoolFile, aligned_bytes, pool_folder,  # noqa: F401
                   row_stride, sweep_pool_files)

__all__ = ["HistoryPool", "frame_bytes", "POOL_FILES", "POOL_PREFIX", "pool_folder", "sweep_pool_files"]

Recompute = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]   # latents [B, n, C, H, W] → k, v before RoPE

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

    def view(self, row: torch.Tensor, f: int) -> torch.Tensor:
        """Field ``f`` of one row (uint8, at least row_bytes) as a tensor [*shape] of its dtype (a view, no copy)."""
        (shape, dtype), o = self.fields[f], self.offsets[f]
        return row[o:o + math.prod(shape) * dtype.itemsize].view(dtype).view(shape)

    def check(self, fields: Sequence[torch.Tensor]) -> None:
        got = [(f.shape, f.dtype) for f in fields]
        if got != self.signature:
            raise ValueError(f"history pool: a frame of shapes/dtypes {got} does not match the pool's first frame "
                             f"{self.signature}; every frame of one run has the same size — close() the pool "
                             f"to start over")


class _Rows:
    """uint8 rows [n, stride] on one device (stride: row_bytes, or more for the disk's aligned rows; on the host the
    first row starts at a multiple of 4 KiB), with their field views [n, *shape] made once."""
    __slots__ = ("data", "fields", "bytes")

    def __init__(self, layout: _Layout, n: int, device: torch.device, pin: bool = False, stride: int | None = None,
                 kind: str = HOST):
        stride = layout.row_bytes if stride is None else stride
        with allocating(kind):
            flat = aligned_bytes(n * stride, pin) if device.type == "cpu" else \
                torch.zeros(n * stride, dtype=torch.uint8, device=device)
        self.data = flat.view(n, stride)
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
            self.chunks.append(_Rows(layout, frames * b, self.device, self.pin,
                                     kind="pool (device)" if self.kind == "device" else HOST))
            self.capacity += frames * b
        r = row - self.starts[-1]
        for dst, src in zip(self.chunks[-1].fields, fields):
            _put(dst[r:r + b], src)
        self._stored(layout)

    def row(self, r: int) -> torch.Tensor:
        """Row r, uint8 [row_bytes] (a view of the store)."""
        c = bisect.bisect_right(self.starts, r) - 1
        return self.chunks[c].data[r - self.starts[c]]

    def close(self) -> None:
        super().close()
        self.chunks, self.starts, self.capacity = [], [], 0


def _new(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An empty tensor; on the host at a multiple of 4 KiB, so that a disk read can fill it directly."""
    if device.type != "cpu":
        return torch.empty(shape, dtype=dtype, device=device)
    return aligned_bytes(math.prod(shape) * dtype.itemsize, zero=False).view(dtype).view(shape)


def _resolve(device: str | torch.device) -> torch.device:
    """'cuda' → 'cuda:<current>', so devices compare equal however they were named."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


class _DiskTier(_Tier):
    """Rows in one append-only file (``PoolFile``, disk.py), created at the first write and deleted by close() or
    when the tier is garbage-collected."""

    def __init__(self, directory: str | None):
        super().__init__("disk", None)
        self.directory = directory
        self.file: PoolFile | None = None
        self._scratch: _Rows | None = None   # the entry being written

    @property
    def path(self) -> str | None:
        return self.file.path if self.file is not None else None

    def write(self, layout: _Layout, fields: Sequence[torch.Tensor]) -> None:
        """Append the next entry's fields [B, *shape] to the file."""
        if self.file is None:
            self.file = PoolFile(self.directory, layout.row_bytes)
            self._scratch = _Rows(layout, layout.batch, host_device(), stride=self.file.stride)
        for dst, src in zip(self._scratch.fields, fields):
            _put(dst, src)
        self.file.write(self.frames * layout.batch, self._scratch.bytes, self.frames)
        self._stored(layout)

    def close(self) -> None:
        super().close()
        if self.file is not None:
            self.file.close()
        self.file = self._scratch = None


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


class _Layers:
    """Field ``f`` of a frame's encoding, batch first [B, layers, *shape], encoded one layer at a time as it is
    copied (``_put``): the device never holds the whole frame's K/V stacked or encoded, only one layer's."""

    def __init__(self, storage: str, k: Sequence[torch.Tensor], v: Sequence[torch.Tensor], f: int, first: list):
        self.storage, self.k, self.v, self.f = storage, k, v, f
        one = first[f]                                    # layer 0's field [1, B, *shape]
        self.shape = torch.Size((one.shape[1], len(k), *one.shape[2:]))
        self.dtype = one.dtype

    def layer(self, i: int) -> torch.Tensor:     # [B, *shape]
        return _encode(self.storage, self.k[i][None], self.v[i][None])[self.f][0]


def _put(dst: torch.Tensor, src) -> None:     # a field (a tensor, or _Layers layer by layer) into dst [B, ...]
    if isinstance(src, _Layers):
        for i in range(dst.shape[1]):
            dst[:, i].copy_(src.layer(i))
    else:
        dst.copy_(src)


def _fields(storage: str, k: Sequence[torch.Tensor], v: Sequence[torch.Tensor],
            latent: torch.Tensor | None) -> list:
    """One frame's stored fields, batch first [B, *shape] (K/V fields as ``_Layers``)."""
    if storage == "latent":
        if latent is None:
            raise ValueError("latent pool storage needs each evicted frame's latent")
        return [latent.detach()]
    first = _encode(storage, k[0][None], v[0][None])
    return [_Layers(storage, k, v, f, first) for f in range(len(first))]


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
                device = self.compute_device if kind == "device" else host_device()
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
        """The reused gather buffer on ``device`` with at least ``rows`` rows (of the disk's aligned stride)."""
        buf = self._gather.get(device)
        if buf is None or len(buf) < rows:
            self._gather.pop(device, None)          # the old buffer's memory goes before the new one's comes
            buf = self._gather[device] = _Rows(self._layout, rows, device, pin, row_stride(self._layout.row_bytes))
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

    def _read_rows(self, indices: list[list[int]], device: torch.device) -> Iterator[tuple[int, torch.Tensor]]:
        """The rows of entries indices[b][j] for sample b: yields (b·n + j, its bytes) once they are readable, so
        that each is decoded while the next are read. The bytes (uint8, at least row_bytes) are the row where a RAM
        or GPU tier keeps it, or a disk row read into the reused host buffer (pinned for a GPU; valid until the next
        gather), the disk's in file order. Nothing of the size of the whole choice is made on the device. (Reading
        rows straight into the caller's tensors, a scatter of per-layer slices, measured slower: 0.78 vs 0.97 of the
        disk's sequential rate, benchmarks/pool_disk.py.)"""
        b, n = len(indices), len(indices[0])
        disk = []
        for bi, row in enumerate(indices):
            for j, i in enumerate(row):
                tier, local = self._locate(i)
                if isinstance(tier, _DiskTier):
                    disk.append((local * b + bi, bi * n + j, tier))
                else:
                    yield bi * n + j, tier.row(local * b + bi)
        if not disk:
            return
        if self._h2d_done is not None:
            self._h2d_done.synchronize()     # the previous gather's copies have left the host buffer
        host = self._gather_buffer(b * n, host_device(), pin=device.type == "cuda")
        disk.sort(key=lambda x: x[0])
        jobs = [(r, host.data[j]) for r, j, _ in disk]
        for pos in disk[0][2].file.read_many(jobs):
            j = disk[pos][1]
            yield j, host.data[j]

    def gather(self, indices: torch.Tensor, device: torch.device, dtype: torch.dtype,
               out: tuple[torch.Tensor, torch.Tensor] | None = None, lazy: bool = False):
        """indices [B, n] pool entries per sample → (k, v) [layers, B, n·tokens, heads, d] before RoPE,
        on ``device`` in ``dtype`` (new tensors the caller owns, or ``out``: contiguous tensors of that shape,
        written and returned — saves allocating 1–2 GB per block at real size; the latent storage ignores it).
        Called once per block; the result serves every step and layer. ``lazy``: ``RetrievedLayers`` instead,
        decoded one layer at a time when the cache reads them (core/retrieval/lazy.py; not for the latent storage)."""
        device = _resolve(device)
        b, n = indices.shape
        if len(self) == 0:
            raise IndexError("history pool: gather from an empty pool")
        cuda, layout = device.type == "cuda", self._layout
        if lazy and self.storage != "latent":
            rows = [(*divmod(j, n), row) for j, row in self._read_rows(indices.tolist(), device)]
            return tuple(RetrievedLayers(layout, rows, f, b, n, device, dtype, lambda: self._copied(device))
                         for f in (0, 1))
        if self.storage == "latent":
            lat = torch.empty((b, n, *layout.fields[0][0]), dtype=layout.fields[0][1], device=device)
            for j, row in self._read_rows(indices.tolist(), device):
                lat[divmod(j, n)].copy_(layout.view(row, 0), non_blocking=cuda)
            self._copied(device)
            return self.recompute(lat)
        layers, t, h, d = layout.fields[0][0]                             # a row's K: [layers, T, heads, d]
        shape = (layers, b, n * t, h, d)
        result = out if out is not None else [_new(shape, dtype, device) for _ in range(2)]
        for o in result:
            if o.shape != shape or o.dtype != dtype or _resolve(o.device) != device or not o.is_contiguous():
                raise ValueError(f"history pool: gather into a {o.dtype} tensor of shape {tuple(o.shape)} on "
                                 f"{o.device}; expected a contiguous {dtype} tensor of shape {shape} on {device} "
                                 f"(or no out= to get new tensors)")
        scaled = len(layout.fields) == 4
        for j, row in self._read_rows(indices.tolist(), device):    # decoded as the readers fetch the next rows
            bi, jj = divmod(j, n)
            for i, o in enumerate(result):                                  # decoded as each row arrives
                x = layout.view(row, i)
                if scaled:                                                  # decoded on the device
                    x = x.to(device, non_blocking=cuda).float() * layout.view(row, 2 + i).to(device, non_blocking=cuda)
                o[:, bi, jj * t:(jj + 1) * t].copy_(x, non_blocking=cuda)
        self._copied(device)
        label("retrieved", *result)
        return result[0], result[1]

    def _copied(self, device: torch.device) -> None:   # after a gather's copies: when may the host buffer refill
        if device.type == "cuda":
            self._h2d_done = torch.cuda.Event()
            self._h2d_done.record(torch.cuda.current_stream(device))

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        """Free every entry and delete the disk file; the pool is empty afterwards."""
        for t in self.tiers:
            t.close()
        self._current = 0
        self._layout = None
        self._gather.clear()
        self._h2d_done = None
