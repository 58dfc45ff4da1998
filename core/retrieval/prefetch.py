"""Reading the next block's retrieved frames while the current block's context pass runs.

The AR loop chooses block n+1's frames as soon as its query (block n's last descriptor) exists and
hands the read to one reader thread: disk rows are read (``pread``) and host rows copied into the
pool's reused (on CUDA pinned) gather buffer there, and on CUDA the host→device copy is issued on
a side stream that first waits for everything the compute stream has queued (the rows evicted so
far). The loop takes the result at block n+1's start: it waits for the thread, makes the compute
stream wait for the side stream's event and marks the tensors as used by the compute stream. The
values are those a serial ``HistoryPool.gather`` at the block's start returns: nothing the context
pass does writes the pool (frames enter it only when a block's start evicts them).
"""
from __future__ import annotations

import contextlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import torch

from ..files.memory_trace import following

from .pool import HistoryPool
from .select import RetrievalChoice


@dataclass
class _Pending:
    start: int
    choice: RetrievalChoice
    future: Future


class Prefetcher:
    """One outstanding read of a block's retrieved frames from ``pool``, started early, taken once."""

    def __init__(self, pool: HistoryPool, device: torch.device, dtype: torch.dtype, lazy: bool = False):
        """``lazy``: read the rows ahead but leave them in RAM, decoded layer by layer when the cache takes them
        (``HistoryPool.gather(lazy=True)``): nothing of the read ahead on the device."""
        self.pool, self.device, self.dtype, self.lazy = pool, device, dtype, lazy
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="history-pool-reader")
        self._stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self._pending: _Pending | None = None

    def start(self, start_frame: int, choice: RetrievalChoice) -> None:
        """Begin reading ``choice``'s frames for the block starting at ``start_frame``."""
        self.drop()
        indices = choice.pool_indices.cpu()
        if self._stream is not None:   # the side stream sees every row the compute stream wrote so far
            self._stream.wait_stream(torch.cuda.current_stream(self.device))
        self._pending = _Pending(start_frame, choice, self._reader.submit(self._read, indices))

    def _read(self, indices: torch.Tensor):
        stream = torch.cuda.stream(self._stream) if self._stream is not None else contextlib.nullcontext()
        with torch.no_grad(), stream, following():   # a memory trace of the run counts this thread too
            k, v = self.pool.gather(indices, self.device, self.dtype, lazy=self.lazy)
            event = None
            if self._stream is not None:
                event = torch.cuda.Event()
                event.record(self._stream)
        return k, v, event

    def take(self, start_frame: int) -> tuple[RetrievalChoice, torch.Tensor, torch.Tensor] | None:
        """The block's (choice, k, v) if a read for it was started (waits for it), else None."""
        pending = self._pending
        if pending is None or pending.start != start_frame:
            self.drop()
            return None
        self._pending = None
        k, v, event = pending.future.result()      # re-raises what the reader raised
        if event is not None:
            compute = torch.cuda.current_stream(self.device)
            compute.wait_event(event)
            if not self.lazy:
                k.record_stream(compute)
                v.record_stream(compute)
        return pending.choice, k, v

    def drop(self) -> None:
        """Forget an outstanding read (after it finished: its buffers may be reused)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            with contextlib.suppress(Exception):
                pending.future.result()

    def close(self) -> None:
        self.drop()
        self._reader.shutdown(wait=True)
