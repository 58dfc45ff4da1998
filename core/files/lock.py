"""One run per output at a time: a lock file beside the output, ``.<name>.lock``, holding ``<pid> <host>``.

The lock is an OS lock on that file (``flock``; a byte-range lock on Windows), which the system releases
when its process ends however it ends, so the lock of a killed run is simply taken over by the next one; the
pid and host written into the file only name the holder in the refusal. Released (and the file deleted) by
``release`` or when the ``with`` block ends.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from . import owners

if sys.platform == "win32":
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


def lock_path(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(f".{output.name}.lock")


class OutputBusy(ValueError):
    """Another live run holds the output's lock."""


def _holder(fd: int) -> str | None:
    """'pid <pid> on <host>' from a lock file, or None (empty; Windows: the holder's locked byte cannot be read)."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 200).decode(errors="replace").split()
    except OSError:
        return None
    return f"pid {text[0]} on {text[1]}" if len(text) >= 2 else None


class OutputLock:
    """``with OutputLock(path, "--out"):`` — refuses (``OutputBusy``, one line naming the other run's pid and the
    option ``what`` to change) while another run holds ``path``'s lock. ``previous``: 'pid <pid> on <host>', the
    run named in a lock file left by a run now gone, or None."""

    def __init__(self, output: str | Path, what: str = "output"):
        self.output, self.what = Path(output), what
        self.path = lock_path(output)
        self.previous: str | None = None
        self._fd: int | None = None

    def acquire(self) -> "OutputLock":
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if not _try_lock(fd):
                holder = _holder(fd) or "pid unknown"
                os.close(fd)
                raise OutputBusy(f"'{self.output}' is being written by another run ({holder}, lock '{self.path}'); "
                                 f"wait for it to end, or choose another {self.what}")
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:           # not a file its holder deleted while this run waited for it: start again
                break
            os.close(fd)
        self.previous = _holder(fd)
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()} {owners.host()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        if sys.platform == "win32":        # an open file cannot be deleted there
            os.close(fd)
            self.path.unlink(missing_ok=True)
        else:                              # deleted while still held: no other run can take a file on its way out
            self.path.unlink(missing_ok=True)
            os.close(fd)

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
