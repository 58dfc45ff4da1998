"""Stopping a run (core/app/signals.py): SIGTERM and SIGHUP stop it like Ctrl-C; a signal waits while the partial
is written; a signal the parent ignores stays ignored; the old handlers come back."""
import os
import signal

import pytest

from core.app.signals import Stopped, deferred, handling_signals


def test_sigterm_becomes_a_keyboard_interrupt_named_after_it():
    with pytest.raises(KeyboardInterrupt) as info:
        with handling_signals():
            os.kill(os.getpid(), signal.SIGTERM)
    assert isinstance(info.value, Stopped) and info.value.name == "SIGTERM" and info.value.exit_code == 143
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_signal_during_a_write_waits_for_the_write_to_end():
    done = []
    with pytest.raises(Stopped, match="SIGTERM"):
        with handling_signals():
            with deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                done.append("the file is complete")
    assert done == ["the file is complete"]


def test_a_deferred_signal_is_dropped_when_the_run_is_stopping_anyway():
    with handling_signals():
        with deferred(reraise=False):
            os.kill(os.getpid(), signal.SIGINT)


def test_an_ignored_signal_stays_ignored():
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with handling_signals():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)
