"""One run per output (core/files/lock.py): a second run is refused naming the first one's pid; the lock of a run
that is gone is taken over; the lock file goes with the run."""
import os
import signal
import time

import pytest

from core.files import owners
from core.files.lock import OutputBusy, OutputLock, lock_path


def test_a_second_run_on_the_same_output_is_refused_naming_the_first(tmp_path):
    out = tmp_path / "out.safetensors"
    with OutputLock(out, "--out"):
        assert lock_path(out).read_text() == f"{os.getpid()} {owners.host()}\n"
        with pytest.raises(OutputBusy, match=rf"^'{out}' is being written by another run \(pid {os.getpid()} on "
                                             rf"{owners.host()}, lock '.*\.out\.safetensors\.lock'\); wait for it to "
                                             r"end, or choose another --out$"):
            OutputLock(out, "--out").acquire()
    assert os.listdir(tmp_path) == []
    with OutputLock(out) as again:                 # released: free for the next run
        assert again.previous is None


def _held_by_a_child(out) -> int:
    """A forked process that takes ``out``'s lock and waits to be killed; → its pid once it holds the lock."""
    ready, tell = os.pipe()
    pid = os.fork()
    if pid == 0:                                   # the child: no test code runs here
        try:
            OutputLock(out).acquire()
            os.write(tell, b"held")
            time.sleep(60)
        finally:
            os._exit(0)
    os.close(tell)
    assert os.read(ready, 4) == b"held"
    os.close(ready)
    return pid


@pytest.mark.skipif(not hasattr(os, "fork"), reason="a killed holder is made with fork")
def test_the_lock_of_a_killed_run_is_taken_over(tmp_path):
    out = tmp_path / "out.safetensors"
    holder = _held_by_a_child(out)
    try:
        with pytest.raises(OutputBusy, match=f"pid {holder} on"):
            OutputLock(out).acquire()
    finally:
        os.kill(holder, signal.SIGKILL)
        os.waitpid(holder, 0)
    assert lock_path(out).exists()                 # a killed run cannot clean up
    with OutputLock(out) as lock:
        assert lock.previous == f"pid {holder} on {owners.host()}"
        assert lock_path(out).read_text() == f"{os.getpid()} {owners.host()}\n"
    assert not lock_path(out).exists()
