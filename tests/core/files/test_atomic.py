"""Atomic writes and early output checks (core/files/atomic.py)."""
import errno
import os
import re

import pytest
import torch
from safetensors.torch import load_file

from core.files import owners
from core.files.atomic import (PART_FILES, WriteError, atomic_path, check_output_dir, check_output_file,
                               make_output_dir, save_json, save_tensors)


def test_an_interrupted_write_leaves_neither_the_file_nor_a_part_file(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert os.listdir(tmp_path) == []


def test_an_interrupted_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "out.json"
    save_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("{")
            raise RuntimeError("interrupted")
    assert target.read_text() == '{\n "a": 1\n}' and os.listdir(tmp_path) == ["out.json"]


def test_a_finished_write_replaces_the_file_and_creates_its_folder(tmp_path):
    target = tmp_path / "new" / "t.safetensors"
    save_tensors(target, {"x": torch.arange(3)})
    assert torch.equal(load_file(str(target))["x"], torch.arange(3))
    assert os.listdir(target.parent) == ["t.safetensors"]


def test_an_output_file_that_is_a_folder_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"output '.*' is a folder; give a file name, e.g. .*out.safetensors"):
        check_output_file(tmp_path)


def test_an_output_folder_under_a_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(ValueError, match=r"videos '.*f/sub': '.*f' is a file, not a folder; choose another path"):
        check_output_dir(tmp_path / "f" / "sub", "videos")


def test_an_output_in_a_folder_to_be_created_passes(tmp_path):
    assert check_output_file(tmp_path / "a" / "b.mp4") == tmp_path / "a" / "b.mp4"



def test_a_missing_folder_is_made_only_one_level_deep(tmp_path):
    check_output_dir(tmp_path / "new", "--out-dir")
    with pytest.raises(ValueError, match=r"--out '.*typo/sub': folder '.*typo' does not exist either .*; check the "
                                         r"path for a typo, or create it first: mkdir -p"):
        check_output_file(tmp_path / "typo" / "sub" / "out.safetensors", "--out")
    lines = []
    make_output_dir(tmp_path / "new", "--out-dir", lines.append)
    make_output_dir(tmp_path / "new", "--out-dir", lines.append)         # already there: nothing to say
    assert (tmp_path / "new").is_dir() and lines == [f"created the folder '{tmp_path / 'new'}' for --out-dir"]


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="names an open file through /proc")
def test_the_temporary_carries_the_run_and_is_flushed_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
                        or real_fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: events.append(("replace", str(a))) or real_replace(a, b))
    target = tmp_path / "out.json"
    with atomic_path(target) as tmp:
        assert PART_FILES.match(tmp.name) and f".{os.getpid()}@{owners.host()}." in tmp.name
        tmp.write_text("{}")
    assert events == [("fsync", str(tmp)), ("replace", str(tmp)), ("fsync", str(tmp_path))]


def _full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_is_one_line_with_the_space_left_and_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "out.safetensors"
    save_tensors(target, {"x": torch.arange(3)})
    monkeypatch.setattr("core.files.atomic.write_safetensors", _full_disk)
    with pytest.raises(WriteError) as info:
        save_tensors(target, {"x": torch.arange(5)})
    message = str(info.value)
    assert info.value.errno == errno.ENOSPC and "\n" not in message
    assert re.fullmatch(rf"writing '{re.escape(str(target))}' failed: No space left on device \(\d+\.\d [MG]B free in "
                        rf"'{re.escape(str(tmp_path))}'\)", message)
    assert torch.equal(load_file(str(target))["x"], torch.arange(3)) and os.listdir(tmp_path) == ["out.safetensors"]


def test_an_error_that_is_not_about_space_goes_on_as_it_is(tmp_path):
    with pytest.raises(FileNotFoundError):
        with atomic_path(tmp_path / "out.bin"):
            raise FileNotFoundError(errno.ENOENT, "an input is missing")
