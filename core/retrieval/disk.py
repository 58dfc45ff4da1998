"""The history pool's file: one append-only file of fixed-size rows, read at the disk's own speed.

Row r sits at byte r·stride. A row of real frame size (``DIRECT_MIN_ROW`` bytes or more) is padded to a multiple of
``DIRECT_ALIGN`` (4 KiB, under 0.01 % of a 274 MiB row) so that it is read with ``O_DIRECT`` (Linux): from the device
straight into the reader's aligned buffer, past the page cache, whose read-ahead delivered 0.2–1.7 GB/s on random
rows where the same disk reads 1.5–2 GB/s directly (benchmarks/pool_disk.py). A gather's rows are read by
``READERS`` threads at once, so the device always has the next row's requests queued. Where ``O_DIRECT`` is not
available (macOS, Windows, tmpfs, a buffer or device it rejects) a read goes through the page cache instead: the
same bytes. Small rows (tiny models, tests) are neither padded nor read directly.

Writes go through the page cache, so an append returns without waiting for the disk (a direct write would add the
disk's time to every block that evicts); a direct read of a row not yet on the disk makes the kernel write it
first, so a read always returns what was written.

The file's name carries the run's pid and host, so that ``sweep_pool_files`` (called by a front end at its start)
can delete the files of runs killed before they could; ``close()`` (or garbage collection) deletes it.
"""
from __future__ import annotations

import errno
import os
import tempfile
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import torch

from ..files import owners
from ..files.atomic import WriteError

POOL_PREFIX = "longlive_rag_pool_"      # + <pid>@<host>.<random>.bin: its run is in its name
POOL_FILES = owners.temp_pattern(POOL_PREFIX, r"\.bin")
POOL_FIX = "free space there or choose another pool folder (--pool-dir), or keep the pool in RAM"
_READ_FIX = ("the pool's disk failed or another program changed the file during the run; check the disk and keep "
             "other programs out of the pool folder, then run the same command again")

DIRECT_ALIGN = 4096             # O_DIRECT: file offsets, buffer addresses and lengths in multiples of this
DIRECT_MIN_ROW = 2**20          # rows this large are padded and read directly
READERS = 2                     # rows read at once (measured: 2 keep this VM's disk busy; 4 add little)
_O_DIRECT = getattr(os, "O_DIRECT", 0)


def pool_folder(directory: str | None) -> Path:
    """Where the disk tier's file goes: ``directory``, else the system's temporary folder (the folder the planner
    checks the free space of, and stale pool files are swept from)."""
    return Path(directory) if directory is not None else Path(tempfile.gettempdir())


def sweep_pool_files(directory: str | Path | None) -> list[Path]:
    """Delete the pool files that runs now gone (killed before they could) left in ``directory`` (None: the
    system's temporary folder); a live run's file is never touched (core/files/owners.py). → those deleted."""
    return owners.sweep(pool_folder(directory), POOL_FILES)


def row_stride(row_bytes: int) -> int:
    """The bytes a row of ``row_bytes`` takes in the file (and in an aligned read buffer): padded to
    ``DIRECT_ALIGN`` when it is large enough to be read directly."""
    if row_bytes < DIRECT_MIN_ROW:
        return row_bytes
    return -(-row_bytes // DIRECT_ALIGN) * DIRECT_ALIGN


def aligned_bytes(nbytes: int, pin: bool = False, zero: bool = True) -> torch.Tensor:
    """Host memory, uint8 [nbytes], starting at a multiple of ``DIRECT_ALIGN`` (pinned if ``pin``; zeroed if
    ``zero``)."""
    raw = (torch.zeros if zero else torch.empty)(nbytes + DIRECT_ALIGN, dtype=torch.uint8, pin_memory=pin)
    skip = -raw.data_ptr() % DIRECT_ALIGN
    return raw[skip:skip + nbytes]


def _or(values) -> int:
    out = 0
    for v in values:
        out |= v
    return out


def _close(fds: list[int], path: str) -> None:
    for fd in fds:
        os.close(fd)
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


class PoolFile:
    """One pool's file of rows, each ``stride`` bytes (``row_stride``); created in ``directory`` (None: the
    system's temporary folder) at the first write."""

    def __init__(self, directory: str | None, row_bytes: int):
        self.directory = directory
        self.stride = row_stride(row_bytes)
        self.path: str | None = None
        self._fd = -1           # buffered, read and write
        self._direct = -1       # O_DIRECT, read only; -1: none (not tried yet, or not available)
        self._direct_tried = False
        self._fds: list[int] = []
        self._finalizer = None
        self._readers: ThreadPoolExecutor | None = None
        self._seek_lock = threading.Lock()   # the platforms without pread/pwrite share one file position

    def _open(self) -> None:
        root = pool_folder(self.directory)
        root.mkdir(parents=True, exist_ok=True)
        try:
            self._fd, self.path = owners.temp_file(root, POOL_PREFIX, ".bin")
        except OSError as e:
            raise WriteError("history pool: creating its file in", root, e, POOL_FIX, folder=root) from e
        self._fds = [self._fd]
        self._finalizer = weakref.finalize(self, _close, self._fds, self.path)

    def write(self, r: int, data: memoryview, frame: int) -> None:
        """Rows r, r+1, … ← ``data`` (a whole number of rows); ``frame`` names the entry in an error."""
        if self._fd < 0:
            self._open()
        offset = r * self.stride
        try:
            while data:
                n = _pwrite(self, data, offset)
                data, offset = data[n:], offset + n
        except OSError as e:
            raise WriteError(f"history pool: writing frame {frame} to", self.path, e, POOL_FIX) from e

    def read(self, r: int, dst: torch.Tensor | list[torch.Tensor]) -> None:
        """Row r → ``dst``: contiguous host tensors whose bytes, one after the other, take the row's ``stride``."""
        self._open_direct()
        self._read_into(r, dst)

    def read_many(self, jobs: list[tuple[int, torch.Tensor | list[torch.Tensor]]]) -> Iterator[int]:
        """Read the rows ``jobs`` [(row, dst as for ``read``)] (``READERS`` at a time); yields each job's position in
        ``jobs`` once its row is in place, in the order of ``jobs`` (so a caller can move a row on while the next
        are still being read). The first failure is raised."""
        self._open_direct()
        if len(jobs) < 2 or READERS < 2:
            for j, (r, dst) in enumerate(jobs):
                self._read_into(r, dst)
                yield j
            return
        if self._readers is None:
            self._readers = ThreadPoolExecutor(READERS, thread_name_prefix="history-pool-disk")
            weakref.finalize(self, self._readers.shutdown, wait=False)
        futures = [self._readers.submit(self._read_into, r, dst) for r, dst in jobs]
        try:
            for j, f in enumerate(futures):
                f.result()
                yield j
        finally:
            for f in futures:           # on a failure, or a caller that stops early: nothing still writes dst
                f.cancel() or f.exception()

    def _open_direct(self) -> None:
        if self._direct_tried or self.path is None:
            return
        self._direct_tried = True
        if _O_DIRECT and self.stride % DIRECT_ALIGN == 0:
            try:
                self._direct = os.open(self.path, os.O_RDONLY | _O_DIRECT)
                self._fds.append(self._direct)
            except OSError:             # the file system refuses O_DIRECT (tmpfs): read through the page cache
                self._direct = -1

    def _read_into(self, r: int, dst: torch.Tensor | list[torch.Tensor]) -> None:
        parts = [dst] if isinstance(dst, torch.Tensor) else dst
        segments = [(memoryview(p.view(torch.uint8).reshape(-1).numpy()).cast("B"), p.data_ptr()) for p in parts]
        if sum(len(v) for v, _ in segments) != self.stride:
            raise ValueError(f"history pool: row buffers of {sum(len(v) for v, _ in segments)} bytes for rows of "
                             f"{self.stride}")
        offset = r * self.stride
        while segments:
            try:
                n = self._pread(segments, offset)
            except OSError as e:
                raise OSError(e.errno, f"history pool: reading row {r} of '{self.path}' failed: "
                                       f"{e.strerror or e}; {_READ_FIX}") from e
            if not n:
                raise OSError(errno.EIO, f"history pool: '{self.path}' ends before row {r} (it holds "
                                         f"{os.fstat(self._fd).st_size} bytes, the row ends at byte "
                                         f"{(r + 1) * self.stride}); {_READ_FIX}")
            offset += n
            while n:                    # a short read: go on after its last byte
                view, address = segments[0]
                if n >= len(view):
                    n -= len(view)
                    segments.pop(0)
                else:
                    segments[0], n = (view[n:], address + n), 0

    def _pread(self, segments: list[tuple[memoryview, int]], offset: int) -> int:
        views = [v for v, _ in segments]
        if self._direct >= 0 and not (offset | _or(len(v) | a for v, a in segments)) % DIRECT_ALIGN:
            try:
                return os.preadv(self._direct, views, offset)
            except OSError as e:
                if e.errno != errno.EINVAL:
                    raise
                self._direct = -1       # this device wants another alignment: the page cache from now on
        return _preadinto(self, views, offset)

    def close(self) -> None:
        if self._readers is not None:
            self._readers.shutdown(wait=True)
        if self._finalizer is not None:
            self._finalizer()
        self._fd = self._direct = -1
        self._direct_tried, self._fds, self._finalizer, self._readers, self.path = False, [], None, None, None


if hasattr(os, "pwrite") and hasattr(os, "preadv"):   # one system call each, no shared file position
    def _pwrite(file: PoolFile, data: memoryview, offset: int) -> int:
        return os.pwrite(file._fd, data, offset)

    def _preadinto(file: PoolFile, views: list[memoryview], offset: int) -> int:
        return os.preadv(file._fd, views, offset)
else:                                                  # Windows
    def _pwrite(file: PoolFile, data: memoryview, offset: int) -> int:
        with file._seek_lock:
            os.lseek(file._fd, offset, os.SEEK_SET)
            return os.write(file._fd, data)

    def _preadinto(file: PoolFile, views: list[memoryview], offset: int) -> int:
        with file._seek_lock:
            os.lseek(file._fd, offset, os.SEEK_SET)
            data = os.read(file._fd, len(views[0]))
        views[0][:len(data)] = data
        return len(data)
