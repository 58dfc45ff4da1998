"""Temporary files carry their run (core/files/owners.py): the files of a run that is gone are swept, a live run's,
another host's and untagged files never are."""
import os
import subprocess
import sys

from core.files import owners
from core.files.atomic import PART_FILES, sweep_part_files
from core.retrieval.pool import POOL_FILES, sweep_pool_files


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_pid_alive_tells_a_live_process_from_a_finished_one():
    assert owners.pid_alive(os.getpid()) and not owners.pid_alive(dead_pid())


def test_only_the_files_of_runs_that_are_gone_on_this_host_are_swept(tmp_path):
    dead, me, host = dead_pid(), os.getpid(), owners.host()
    names = {f".out.safetensors.{dead}@{host}.abcd1234.part.safetensors": False,     # swept
             f".out.safetensors.{me}@{host}.abcd1234.part.safetensors": True,        # this run: kept
             f".out.safetensors.{dead}@otherhost.abcd1234.part.safetensors": True,   # cannot be seen from here
             ".out.safetensors.abcd1234.part.safetensors": True,                     # no run in its name
             f"out.{dead}@{host}.abcd1234.part.safetensors": True,                   # not hidden: not ours
             f"longlive_rag_pool_{dead}@{host}.abcd_123.bin": False,
             f"longlive_rag_pool_{me}@{host}.abcd_123.bin": True}
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    removed = sweep_part_files(tmp_path) + sweep_pool_files(tmp_path)
    assert sorted(p.name for p in removed) == sorted(n for n, keep in names.items() if not keep)
    assert sorted(os.listdir(tmp_path)) == sorted(n for n, keep in names.items() if keep)


def test_temp_file_names_match_their_sweep_patterns(tmp_path):
    fd, part = owners.temp_file(tmp_path, ".out.safetensors.", ".part.safetensors")
    os.close(fd)
    fd, pool = owners.temp_file(tmp_path, "longlive_rag_pool_", ".bin")
    os.close(fd)
    assert PART_FILES.match(os.path.basename(part)) and POOL_FILES.match(os.path.basename(pool))
    assert not POOL_FILES.match(os.path.basename(part)) and not PART_FILES.match(os.path.basename(pool))
    assert owners.stale(tmp_path, PART_FILES) == [] and owners.stale(tmp_path, POOL_FILES) == []
