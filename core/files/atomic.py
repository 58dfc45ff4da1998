"""Small file helpers shared by the CLI and the nodes: atomic writes, early output checks.

An output is written to a hidden temporary beside it (``.<name>.<pid>@<host>.<random>.part<suffix>``: its run is
in its name, so a later run can sweep it once that run is gone — core/files/owners.py), flushed to disk (fsync),
renamed over the target, and the folder is flushed too: an interrupted run, a crash or a power cut leaves the old
file or the new one, never half of one. A write that fails for lack of space (or quota, or an I/O error) raises
``WriteError``: one line naming the file, the reason and the space left.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

from . import owners
from .tensors import write_safetensors

PART_FILES = owners.temp_pattern(r"\..+\.", r"\.part.*")     # the temporaries of atomic_path
DISK_ERRORS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG, errno.EIO}   # no EDQUOT on Windows


def free_space(folder: str | Path) -> str:
    """'12.3 MB free in '<folder>'' (or '' when the folder cannot be asked)."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return ""
    amount = f"{free / 2**30:.1f} GB" if free >= 2**30 else f"{free / 2**20:.1f} MB"
    return f"{amount} free in '{folder}'"


class WriteError(OSError):
    """Writing a file failed for lack of space, quota or a disk error: one line with what failed, why, the space
    left there and (``fix``) what to do."""

    def __init__(self, doing: str, path: str | Path, cause: OSError, fix: str = "", folder: str | Path | None = None):
        space = free_space(folder if folder is not None else Path(path).parent)
        reason = cause.strerror or str(cause)
        message = f"{doing} '{path}' failed: {reason}" + (f" ({space})" if space else "") + (f"; {fix}" if fix else "")
        super().__init__(cause.errno, message)
        self.message, self.filename = message, str(path)

    def __str__(self) -> str:
        return self.message


def _existing_ancestor(path: Path) -> Path:
    for parent in [path, *path.parents]:
        if parent.exists():
            return parent
    return Path(".")


def check_output_file(path: str | Path, what: str = "output") -> Path:
    """Fail now (not after the run) when ``path`` cannot be written: its folder must exist or be creatable (see
    ``check_output_dir``), be a folder, and be writable; ``path`` itself must not be a folder."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{what} '{path}' is a folder; give a file name, e.g. {path / 'out.safetensors'}")
    check_output_dir(path.parent, what)
    return path


def check_output_dir(path: str | Path, what: str = "output folder") -> Path:
    """Fail now when folder ``path`` cannot be created or written (a parent that is a file, no permission).
    A missing folder is made at the first write only when its parent exists (``make_output_dir`` says so); a
    longer missing chain is refused, so a typo higher up never grows a new tree."""
    path = Path(path)
    base = _existing_ancestor(path)
    if not base.is_dir():
        raise ValueError(f"{what} '{path}': '{base}' is a file, not a folder; choose another path")
    if base != path and base != path.parent:
        raise ValueError(f"{what} '{path}': folder '{path.parent}' does not exist either (only '{base}' does); "
                         f"check the path for a typo, or create it first: mkdir -p '{path}'")
    try:   # a real probe: permissions, read-only mounts and ACLs all show up here
        with tempfile.TemporaryFile(dir=base):
            pass
    except OSError as exc:
        raise ValueError(f"{what} '{path}': folder '{base}' is not writable ({exc.strerror}); "
                         "choose a folder you can write to") from None
    return path


def make_output_dir(path: str | Path, what: str, report) -> Path:
    """Create output folder ``path`` if it is missing (its parent exists: ``check_output_dir``) and ``report``
    it in one line."""
    path = Path(path)
    try:
        path.mkdir()
    except FileExistsError:
        return path
    report(f"created the folder '{path}' for {what}")
    return path


def _fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (the rename) to disk; Windows has no such call, and some file systems refuse it."""
    if sys.platform == "win32":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDWR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` only if the block succeeds (flushed to disk
    first), so an interrupted run never leaves a half-written output. Lack of space: ``WriteError``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = owners.temp_file(path.parent, f".{path.name}.", ".part" + path.suffix)
    except OSError as exc:
        raise (WriteError("writing", path, exc) if exc.errno in DISK_ERRORS else exc) from exc
    os.close(fd)
    try:
        try:
            yield Path(tmp)
            _fsync(tmp)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs get the usual permissions
            os.replace(tmp, path)
        except OSError as exc:
            if exc.errno in DISK_ERRORS and not isinstance(exc, WriteError):
                raise WriteError("writing", path, exc) from exc
            raise
        _fsync_folder(path.parent)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def sweep_part_files(folder: str | Path) -> list[Path]:
    """Delete the temporaries that runs now gone left in ``folder`` (core/files/owners.py); → those deleted."""
    return owners.sweep(folder, PART_FILES)


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    with atomic_path(path) as tmp:
        write_safetensors(tmp, tensors, metadata)


def save_json(path: str | Path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1))
