"""Every byte a run allocates on its compute device, by what holds it, measured from the code itself.

``MemoryTrace`` is a torch dispatch mode: each tensor an operation creates on the traced device is counted
while any tensor still references its storage (views share it: counted once) and released when the last one
is freed, so ``peak`` is the most bytes live at once (what ``torch.cuda.max_memory_allocated`` reports on a
GPU, without the caching allocator's rounding) and ``at_peak`` what held them then.

It works the same on real tensors and on the meta device, where nothing is computed: a run of the real code
path at real sizes costs seconds and no memory — the dry run (core/app/dry_run.py). What holds a byte is told by
``label(kind, *tensors)``, called where the run allocates its long-lived parts (the KV cache, the context
buffers, the retrieved frames, the pool's device tier, the prompt's K/V); everything else an operation creates
is ``activations``; tensors that existed before the trace began are added with ``add`` (the weights).
``HOST`` tensors (the video's latents, the pool's RAM tier) are counted apart: on a GPU they live in RAM.

Host placement: ``host_device()`` is where the run keeps what lives in RAM — the CPU, or during a dry run the
meta device too (nothing can be copied out of a meta tensor, and a dry run keeps no real bytes anywhere).
Values a step needs (which frames retrieval picks) do not exist on the meta device: such a step checks
``is_meta`` and takes a documented stand-in choice of the same size.
"""
from __future__ import annotations

import threading
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

HOST = "host"
ACTIVATIONS = "activations"
KINDS = ("weights", "kv cache", "context", "retrieved", "pool (device)", "text", ACTIVATIONS)

_active: list["MemoryTrace"] = []
_host = [torch.device("cpu")]
_kinds: list[str] = []


def host_device() -> torch.device:
    """Where the run keeps what lives in RAM: the CPU, or the meta device during a dry run."""
    return _host[-1]


@contextmanager
def host_on(device: torch.device):
    """Keep the run's RAM-side tensors on ``device`` (the meta device: a dry run) inside the block."""
    _host.append(torch.device(device))
    try:
        yield
    finally:
        _host.pop()


def label(kind: str, *tensors: torch.Tensor) -> None:
    """Tell the active trace (if any) that ``tensors`` hold ``kind`` (one of ``KINDS`` or ``HOST``)."""
    for trace in _active:
        trace.relabel(kind, tensors)


@contextmanager
def allocating(kind: str):
    """What the tensors created inside the block hold (``label`` for the ones made there): RAM-side buffers must be
    told here, before the peak could count them as device bytes."""
    _kinds.append(kind)
    try:
        yield
    finally:
        _kinds.pop()


def current() -> "MemoryTrace | None":
    return _active[-1] if _active else None


@dataclass
class _Storage:
    nbytes: int
    kind: str
    refs: int = 0


@dataclass
class Snapshot:
    """Bytes live by kind (device kinds; ``HOST`` apart)."""
    by_kind: dict[str, int] = field(default_factory=dict)

    @property
    def device(self) -> int:
        return sum(v for k, v in self.by_kind.items() if k != HOST)


class MemoryTrace(TorchDispatchMode):
    """Counts the live bytes of every storage on ``device`` (see the module's docstring). Use as a context
    manager around the run; threads that work for the run enter it with ``follow()``."""

    def __init__(self, device: str | torch.device):
        super().__init__()
        self.device = torch.device(device)
        self._storages: dict[int, _Storage] = {}
        self._live: dict[str, int] = {}
        self.peak = 0
        self.at_peak = Snapshot()
        self.host_peak = 0
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ counting
    def _counts(self, t: torch.Tensor) -> bool:
        d = t.device
        return d.type == self.device.type and (self.device.index is None or d.index == self.device.index)

    def _track(self, t: torch.Tensor, kind: str) -> None:
        storage = t.untyped_storage()
        key = storage._cdata
        with self._lock:
            entry = self._storages.get(key)
            if entry is None:
                entry = self._storages[key] = _Storage(storage.nbytes(), kind)
                self._live[kind] = self._live.get(kind, 0) + entry.nbytes
                self._moved()
            entry.refs += 1
        weakref.finalize(t, self._release, key)

    def _release(self, key: int) -> None:
        with self._lock:
            entry = self._storages.get(key)
            if entry is None:
                return
            entry.refs -= 1
            if entry.refs <= 0:
                del self._storages[key]
                self._live[entry.kind] -= entry.nbytes

    def _moved(self) -> None:
        device = sum(v for k, v in self._live.items() if k != HOST)
        if device > self.peak:
            self.peak = device
            self.at_peak = Snapshot({k: v for k, v in self._live.items() if v})
        self.host_peak = max(self.host_peak, self._live.get(HOST, 0))

    def add(self, kind: str, tensors) -> None:
        """Count tensors made before the trace began (the weights) as ``kind``; those it counts already keep theirs
        (a swapped block's weights in RAM)."""
        for t in tensors:
            if isinstance(t, torch.Tensor) and self._counts(t) and t.untyped_storage()._cdata not in self._storages:
                self._track(t, kind)

    def relabel(self, kind: str, tensors) -> None:
        with self._lock:
            for t in tensors:
                if not isinstance(t, torch.Tensor) or not self._counts(t):
                    continue
                entry = self._storages.get(t.untyped_storage()._cdata)
                if entry is None or entry.kind == kind:
                    continue
                self._live[entry.kind] -= entry.nbytes
                entry.kind = kind
                self._live[kind] = self._live.get(kind, 0) + entry.nbytes
                self._moved()

    def live(self) -> Snapshot:
        with self._lock:
            return Snapshot({k: v for k, v in self._live.items() if v})

    # ------------------------------------------------------------------ the dispatch mode
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and self._counts(t):
                self._track(t, _kinds[-1] if _kinds else ACTIVATIONS)
        return out

    def __enter__(self):
        _active.append(self)
        return super().__enter__()

    def __exit__(self, *exc):
        _active.remove(self)
        return super().__exit__(*exc)

    @contextmanager
    def follow(self):
        """Count this (another) thread's allocations too: a reader that prefetches for the run."""
        TorchDispatchMode.__enter__(self)
        try:
            yield
        finally:
            TorchDispatchMode.__exit__(self, None, None, None)


@contextmanager
def following():
    """Inside a worker thread: count its allocations in the active trace, if there is one."""
    trace = current()
    if trace is None:
        yield
        return
    with trace.follow():
        yield
