"""What a run does with its output paths before any work (core/app/outputs.py)."""
import os

import pytest

from core.app.outputs import check_distinct, claiming
from core.files import owners
from core.files.lock import OutputBusy, lock_path


def test_an_output_that_is_an_input_is_refused_through_links(tmp_path):
    embeds = tmp_path / "emb.safetensors"
    embeds.write_bytes(b"x")
    (tmp_path / "link.safetensors").symlink_to(embeds)
    os.link(embeds, tmp_path / "hard.safetensors")
    for out in (embeds, tmp_path / "link.safetensors", tmp_path / "hard.safetensors", tmp_path / "." / embeds.name):
        with pytest.raises(ValueError, match=rf"^--out '{out}' is the same file as the input --embeds '{embeds}'; "
                                             r"writing it would destroy that input: give --out another path$"):
            check_distinct({"--out": out}, {"--embeds": embeds, "--continue-from": None})
    check_distinct({"--out": tmp_path / "out.safetensors"}, {"--embeds": embeds})


def test_two_outputs_on_one_path_are_refused(tmp_path):
    out = tmp_path / "out.safetensors"
    with pytest.raises(ValueError, match="^--log '.*out.safetensors' is the same file as --out '.*out.safetensors'; "
                                         "one would overwrite the other: give --log its own path$"):
        check_distinct({"--out": out, "--log": out, "--timings": None}, {})


def test_claiming_makes_the_folder_sweeps_locks_and_releases(tmp_path):
    out = tmp_path / "new" / "out.safetensors"
    pool = tmp_path / "pool"
    pool.mkdir()
    stale = pool / f"longlive_rag_pool_999999999@{owners.host()}.abcd1234.bin"
    stale.write_bytes(b"x")
    lines = []
    with claiming({out: "--out"}, lines.append, [str(pool)]):
        assert lock_path(out).exists() and not stale.exists()
        with pytest.raises(OutputBusy, match=f"pid {os.getpid()}"):
            with claiming({out: "--out"}, lines.append):
                pass
    assert os.listdir(out.parent) == []
    assert lines == [f"created the folder '{out.parent}' for --out",
                     f"removed 1 temporary file of runs that were killed ({stale.name})"]
