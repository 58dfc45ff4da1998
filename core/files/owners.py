"""Which run a temporary file belongs to, and sweeping the ones whose run is gone.

Every temporary file this pack writes (an output being written, ``.<name>.<tag>.<random>.part…``; the history
pool's disk file, ``longlive_rag_pool_<tag>.<random>.bin``) carries its run's tag ``<pid>@<host>`` in its name.
A run killed without a chance to clean up (SIGKILL, the out-of-memory killer, a power cut) leaves them behind;
the next run sweeps the files of its folders whose process is gone. A file of a live process, of another host
(a shared folder: its processes cannot be seen from here) or without a tag is never touched.
"""
from __future__ import annotations

import os
import re
import socket
import sys
import tempfile
from pathlib import Path

_TAG = r"(?P<pid>\d+)@(?P<host>[A-Za-z0-9-]+)"


def host() -> str:
    """This machine's name as it appears in a tag: letters, digits and '-' only, at most 24 characters."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:24] or "host"


def run_tag() -> str:
    """``<pid>@<host>`` of this process."""
    return f"{os.getpid()}@{host()}"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (a process of another user counts as alive)."""
    if pid <= 0:
        return False
    if sys.platform == "win32":
        import ctypes
        handle = ctypes.windll.kernel32.OpenProcess(0x1000, False, pid)   # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return ctypes.GetLastError() == 5                             # access denied: it exists
        code = ctypes.c_ulong()
        ctypes.windll.kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        ctypes.windll.kernel32.CloseHandle(handle)
        return code.value == 259                                          # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def temp_file(folder: str | Path, prefix: str, suffix: str) -> tuple[int, str]:
    """A new empty file ``<prefix><tag>.<random><suffix>`` in ``folder``: (open descriptor, path), as mkstemp."""
    return tempfile.mkstemp(prefix=f"{prefix}{run_tag()}.", suffix=suffix, dir=folder)


def temp_pattern(prefix: str, suffix: str) -> re.Pattern:
    """The names ``temp_file`` gives, as a regular expression; ``prefix`` and ``suffix`` are regular
    expressions themselves."""
    return re.compile(f"^{prefix}{_TAG}\\.[a-z0-9_]{{8}}{suffix}$")


def stale(folder: str | Path, pattern: re.Pattern) -> list[Path]:
    """Files in ``folder`` (not below it) named by ``pattern`` whose process, on this host, is gone."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    me = host()
    found = []
    for name in names:
        m = pattern.match(name)
        if m and m["host"] == me and not pid_alive(int(m["pid"])):
            found.append(Path(folder) / name)
    return found


def sweep(folder: str | Path, pattern: re.Pattern) -> list[Path]:
    """Delete ``stale`` files; → the ones deleted (a file another run removed first is skipped)."""
    removed = []
    for path in stale(folder, pattern):
        try:
            path.unlink()
        except OSError:
            continue
        removed.append(path)
    return removed
