"""Stopping a headless run: Ctrl-C (SIGINT), ``kill`` / ``docker stop`` / a scheduler (SIGTERM) and a closed
terminal (SIGHUP) all take the same path — the finished blocks are saved, one line says how to finish, and the
process exits with 128 + the signal's number.

``handling_signals()`` turns each of them into ``Stopped`` (a ``KeyboardInterrupt``) in the main thread;
``deferred()`` holds a signal back while a file that keeps the work (the partial) is being written, and raises it
once the file is complete. A signal the parent ignores (``nohup``, a background job's SIGINT) stays ignored.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class Stopped(KeyboardInterrupt):
    """The run was asked to stop by signal ``signum``."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum, self.name = signum, signal.Signals(signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


_state = {"depth": 0, "pending": None}


def _handler(signum, frame) -> None:
    if _state["depth"]:
        _state["pending"] = _state["pending"] or signum
        return
    raise Stopped(signum)


@contextmanager
def handling_signals():
    """Within the block, SIGINT, SIGTERM and SIGHUP raise ``Stopped`` (main thread only; elsewhere nothing
    changes); the previous handlers come back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in SIGNALS}
    for s, old in previous.items():
        if old is not signal.SIG_IGN:
            signal.signal(s, _handler)
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old if old is not None else signal.SIG_DFL)


@contextmanager
def deferred(reraise: bool = True):
    """A signal that arrives within the block waits for its end; then it is raised (``reraise``) or dropped (the
    run is stopping anyway, or the block failed)."""
    _state["depth"] += 1
    try:
        yield
    finally:
        _state["depth"] -= 1
        pending = _state["pending"] if not _state["depth"] else None
        if pending is not None:
            _state["pending"] = None
    if pending is not None and reraise:     # (an error of the block itself goes on as it is)
        raise Stopped(pending)
