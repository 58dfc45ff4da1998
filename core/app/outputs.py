"""What a headless run does with its output paths before any work: outputs that are inputs or each other are
refused, a missing output folder is made (one level, said in one line: core/files/atomic.py), the temporary files
of killed runs are swept (core/files/owners.py), and each output is locked so that a second run on it is refused
(core/files/lock.py) — all before a model is loaded.
"""
from __future__ import annotations

import os
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator

from ..files.atomic import make_output_dir, sweep_part_files
from ..files.lock import OutputLock
from ..retrieval.pool import sweep_pool_files


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file: the same resolved path (symlinks followed), or the same file on disk (a
    hard link, a case-insensitive file system)."""
    if Path(a).resolve() == Path(b).resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_distinct(outputs: dict[str, str | Path | None], inputs: dict[str, str | Path | None]) -> None:
    """Refuse an output (option → path; None: not given) that is one of the ``inputs`` or another output."""
    outs = [(what, p) for what, p in outputs.items() if p is not None]
    ins = [(what, p) for what, p in inputs.items() if p is not None]
    for i, (what, path) in enumerate(outs):
        for other, earlier in outs[:i]:
            if same_file(path, earlier):
                raise ValueError(f"{what} '{path}' is the same file as {other} '{earlier}'; one would overwrite the "
                                 f"other: give {what} its own path")
        for other, given in ins:
            if same_file(path, given):
                raise ValueError(f"{what} '{path}' is the same file as the input {other} '{given}'; writing it would "
                                 f"destroy that input: give {what} another path")


@contextmanager
def claiming(outputs: dict[Path, str], report: Callable[[str], None],
             pool_dirs: Iterable[str | Path | None] = ()) -> Iterator[None]:
    """Hold every output (path → the option that names it): its folder made if missing, the temporaries that
    killed runs left there and in ``pool_dirs`` (None: the system's temporary folder) swept, a lock taken on it
    (another run holding one: ``OutputBusy``); the locks are released when the block ends, however it ends."""
    swept = []
    folders = {Path(p).parent: what for p, what in outputs.items()}
    for folder, what in folders.items():
        make_output_dir(folder, what, report)
        swept += sweep_part_files(folder)
    for folder in dict.fromkeys(pool_dirs):
        swept += sweep_pool_files(folder)
    if swept:
        report(f"removed {len(swept)} temporary file{'s' * (len(swept) > 1)} of runs that were killed "
               f"({', '.join(p.name for p in swept[:3])}{', …' if len(swept) > 3 else ''})")
    with ExitStack() as stack:
        for path, what in outputs.items():
            lock = stack.enter_context(OutputLock(path, what))
            if lock.previous:
                report(f"took over the lock of '{path}' from a run that is gone ({lock.previous})")
        yield
