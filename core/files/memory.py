"""What memory and disk this process may still use: the numbers a run is checked against before it allocates
(the planner's ``check_memory``) and the History Pool's ``auto`` budget is taken from.

RAM: the least of the kernel's MemAvailable (/proc/meminfo), the room left under this process's cgroup limit
(v2 ``memory.max``, v1 ``memory.limit_in_bytes``; reclaimable page cache counted as free) and the room left
under its address-space limit (RLIMIT_AS, against VmSize). Elsewhere than Linux: the free physical pages, or
None when nothing says. A CUDA device: its free memory as the driver reports it.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

_CGROUP = Path("/sys/fs/cgroup")


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None          # "max": no limit


def _stat(path: Path, key: str) -> int:
    """One entry of a cgroup's memory.stat (0 when absent)."""
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key and value.strip().isdigit():
                return int(value)
    except OSError:
        pass
    return 0


def _meminfo(key: str) -> int | None:
    """A /proc/meminfo entry in bytes."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            name, _, value = line.partition(":")
            if name == key:
                return int(value.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_dirs() -> list[tuple[Path, str]]:
    """(folder, version) of this process's memory cgroup, v2 then v1."""
    out = []
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        _, controllers, path = line.split(":", 2)
        rel = path.lstrip("/")
        if controllers == "":
            out += [(_CGROUP / rel, "v2"), (_CGROUP, "v2")]
        elif "memory" in controllers.split(","):
            out += [(_CGROUP / "memory" / rel, "v1"), (_CGROUP / "memory", "v1")]
    return out


def cgroup_room() -> int | None:
    """Bytes left under this process's cgroup memory limit (page cache it may reclaim counted as free), or None
    when no limit applies."""
    for folder, version in _cgroup_dirs():
        if version == "v2":
            limit, used = _read_int(folder / "memory.max"), _read_int(folder / "memory.current")
            cache = _stat(folder / "memory.stat", "inactive_file")
        else:
            limit, used = _read_int(folder / "memory.limit_in_bytes"), _read_int(folder / "memory.usage_in_bytes")
            cache = _stat(folder / "memory.stat", "total_inactive_file")
        if limit is not None and used is not None and limit < 2**60:     # v1 writes "no limit" as ~2^63
            return max(0, limit - used + cache)
    return None


def address_space_room() -> int | None:
    """Bytes of address space left under RLIMIT_AS (ulimit -v), or None without such a limit."""
    try:
        import resource
        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, ValueError, OSError):
        return None
    if soft == resource.RLIM_INFINITY:
        return None
    size = None
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                size = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return max(0, soft - (size or 0))


def host_available() -> int | None:
    """Bytes of RAM this process may still use (the least of what the kernel, its cgroup and its address-space
    limit leave), or None when the system says nothing."""
    found = [_meminfo("MemAvailable"), cgroup_room(), address_space_room()]
    if found[0] is None and hasattr(os, "sysconf"):
        try:
            found[0] = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError):
            pass
    known = [n for n in found if n is not None]
    return min(known) if known else None


def device_available(device: torch.device) -> int | None:
    """Bytes free on ``device``: a CUDA device's free memory, else the host's RAM (``host_available``)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type == "cpu":
        return host_available()
    return None


def disk_free(folder: str | Path) -> int | None:
    """Bytes free on the file system of ``folder`` (or of its nearest existing parent)."""
    path = Path(folder).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None
