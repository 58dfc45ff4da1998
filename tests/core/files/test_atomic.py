"""Atomic writes and early output checks (core/files/atomic.py)."""
import os

import pytest
import torch
from safetensors.torch import load_file

from core.files.atomic import atomic_path, check_output_dir, check_output_file, save_json, save_tensors


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

