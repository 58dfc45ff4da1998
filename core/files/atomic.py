"""Small file helpers shared by the CLI and the nodes: atomic writes, prompt-embedding files."""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch
from safetensors.torch import load_file, save_file


def _existing_ancestor(path: Path) -> Path:
    for parent in [path, *path.parents]:
        if parent.exists():
            return parent
    return Path(".")


def check_output_file(path: str | Path, what: str = "output") -> Path:
    """Fail now (not after the run) when ``path`` cannot be written: its folder must exist or be creatable,
    be a folder, and be writable; ``path`` itself must not be a folder."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{what} '{path}' is a folder; give a file name, e.g. {path / 'out.safetensors'}")
    check_output_dir(path.parent, what)
    return path


def check_output_dir(path: str | Path, what: str = "output folder") -> Path:
    """Fail now when folder ``path`` cannot be created or written (a parent that is a file, no permission)."""
    path = Path(path)
    base = _existing_ancestor(path)
    if not base.is_dir():
        raise ValueError(f"{what} '{path}': '{base}' is a file, not a folder; choose another path")
    try:   # a real probe: permissions, read-only mounts and ACLs all show up here
        with tempfile.TemporaryFile(dir=base):
            pass
    except OSError as exc:
        raise ValueError(f"{what} '{path}': folder '{base}' is not writable ({exc.strerror}); "
                         "choose a folder you can write to") from None
    return path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` only if the block succeeds,
    so an interrupted run never leaves a half-written output."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part" + path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs get the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)


def save_json(path: str | Path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1))
