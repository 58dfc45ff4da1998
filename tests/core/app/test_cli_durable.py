"""A run never loses finished blocks (``python -m core generate``): killed at any block (SIGKILL), stopped (SIGTERM)
or out of disk space (the history pool's file, the partial, the output), it keeps what it made, says so in one line
and the same command finishes it bit for bit; outputs that are inputs, two runs on one output and a typo in the
output folder are refused before any work. The killed runs are subprocesses; the rest run in this process."""
import contextlib
import errno
import io
import json
import os
import random
import signal
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from core.app import cli, jobs
from core.app.resume import partial_frames, partial_path
from core.files.lock import OutputLock
from paths import GOLDEN, ROOT

BLOCKS = 20             # blocks of 3 latent frames; the window (12) fills at block 4, the pool fills from block 5 on


@pytest.fixture(scope="module")
def embeds(tmp_path_factory):
    path = tmp_path_factory.mktemp("emb") / "emb.safetensors"
    save_file({"prompt_embeds": load_file(str(GOLDEN / "inputs.safetensors"))["prompt_embeds"]}, str(path))
    return path


def options(embeds, *more, backbone=GOLDEN / "wan_tiny_t2v_bare.safetensors") -> list[str]:
    return [str(a) for a in ("generate", "--backbone", backbone, "--embeds", embeds, "--frames", 3 * BLOCKS,
                             "--latent-size", "8x12", "--device", "cpu", "--seed", 3, "--mode", "rag",
                             "--partial-every", 0, *more)]


def run(args) -> tuple[int, list[str]]:
    """The CLI in this process: (exit code, stderr lines without the per-block progress)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli.main(args)
    return code, [line for line in err.getvalue().splitlines() if not line.startswith("block ")]


@pytest.fixture(scope="module")
def reference(embeds, tmp_path_factory):
    """(latents, retrieval log) of the uninterrupted run."""
    folder = tmp_path_factory.mktemp("ref")
    code, lines = run(options(embeds, "--out", folder / "ref.safetensors", "--log", folder / "ref.json"))
    assert code == 0, lines
    return load_file(str(folder / "ref.safetensors"))["latents"], json.loads((folder / "ref.json").read_text())


def assert_finished_exactly(out, reference):
    assert torch.equal(load_file(str(out))["latents"], reference[0])
    assert json.loads(out.with_suffix(".json").read_text()) == reference[1]
    assert sorted(os.listdir(out.parent)) == sorted([out.name, out.with_suffix(".json").name])


def start_until_block(args, block: int) -> subprocess.Popen:
    """The CLI as a subprocess, returned once it has reported ``block`` (the partial then holds that block)."""
    proc = subprocess.Popen([sys.executable, "-m", "core", *args], cwd=ROOT, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = []
    while not any(line.startswith(f"block {block}/") for line in seen):
        line = proc.stderr.readline()
        if not line:
            proc.wait()
            raise AssertionError("the run ended before block {block}: " + "".join(seen))
        seen.append(line)
    return proc


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_run_killed_at_a_random_block_resumes_bit_exact(tmp_path, embeds, reference, seed):
    block = random.Random(seed).randint(6, BLOCKS - 4)
    folder, pool = tmp_path / "run", tmp_path / "pool"
    folder.mkdir()
    pool.mkdir()
    out = folder / "run.safetensors"
    args = options(embeds, "--out", out, "--log", out.with_suffix(".json"), "--pool", "disk", "--pool-dir", pool)
    proc = start_until_block(args, block)
    proc.kill()
    proc.wait()
    assert partial_frames(partial_path(out))[0] >= 3 * block
    assert os.listdir(pool) and (folder / f".{out.name}.lock").exists()        # what a killed run leaves behind
    code, lines = run(args + (["--resume", str(partial_path(out))] if seed % 2 else []))
    assert code == 0, lines
    assert any(line.startswith(f"took over the lock of '{out}' from a run that is gone (pid {proc.pid}")
               for line in lines)
    assert any(line.startswith("resuming from the ") for line in lines)
    assert_finished_exactly(out, reference)
    assert os.listdir(pool) == []                  # the killed run's pool file was swept


def test_sigterm_keeps_the_partial_and_a_rerun_resumes_it_or_refuses_never_shortening_it(tmp_path, embeds, reference):
    out = tmp_path / "run.safetensors"
    args = options(embeds, "--out", out, "--log", out.with_suffix(".json"))
    proc = start_until_block(args, 5)
    proc.send_signal(signal.SIGTERM)
    tail = [line for line in proc.stderr.read().splitlines() if not line.startswith("block ")]
    assert proc.wait(timeout=60) == 143
    partial = partial_path(out)
    assert len(tail) == 2 and tail[0].startswith("kept the ") and f"(or add --resume {partial})" in tail[0], tail
    assert tail[1].startswith("interrupted (SIGTERM) after block ")
    assert sorted(os.listdir(tmp_path)) == [partial.name]                    # no lock, no temporary, no output
    kept = partial.read_bytes()
    code, lines = run(options(embeds, "--out", out, "--seed", 4))
    assert code == 2 and lines[-1].startswith(f"error: '{partial}' holds the ")
    assert "seed: 3 (partial) vs 4 (now)" in lines[-1]
    assert partial.read_bytes() == kept and not out.exists()
    frames = partial_frames(partial)[0]
    code, lines = run(args)
    assert code == 0 and f"resuming from the {frames} finished latent frames in {partial}" in lines
    assert_finished_exactly(out, reference)


def _enospc():
    return OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_under_the_pool_ends_in_one_line_and_the_run_resumes(tmp_path, embeds, reference, monkeypatch):
    from core.retrieval import disk
    real, calls = disk._pwrite, []

    def filling(file, data, offset):
        calls.append(offset)
        if len(calls) > 4:
            raise _enospc()
        return real(file, data, offset)
    monkeypatch.setattr(disk, "_pwrite", filling)
    out = tmp_path / "run" / "run.safetensors"
    args = options(embeds, "--out", out, "--log", out.with_suffix(".json"), "--pool", "disk", "--pool-dir", tmp_path)
    code, lines = run(args)
    partial = partial_path(out)
    assert code == 2 and "Traceback" not in "".join(lines)
    assert lines[-1].startswith("error: history pool: writing frame 4 to ") and "No space left on device (" in lines[-1]
    assert lines[-1].endswith(f"kept the {partial_frames(partial)[0]} finished latent frames in {partial}; free some "
                              f"space, then run the same command again to finish it (or add --resume {partial})")
    assert sorted(os.listdir(out.parent)) == [partial.name] and not list(tmp_path.glob("longlive_rag_pool_*"))
    monkeypatch.setattr(disk, "_pwrite", real)
    assert run(args)[0] == 0
    assert_finished_exactly(out, reference)


def _failing_write(monkeypatch, fails):
    """Writes of files whose name ``fails(name, count)`` names raise ENOSPC (count: that file's writes so far)."""
    from core.files import atomic
    real, counts = atomic.write_safetensors, {}

    def write(path, tensors, metadata=None):
        target = os.path.basename(path).split(f".{os.getpid()}@")[0].lstrip(".")
        counts[target] = counts.get(target, 0) + 1
        if fails(target, counts[target]):
            raise _enospc()
        return real(path, tensors, metadata)
    monkeypatch.setattr(atomic, "write_safetensors", write)


def test_a_full_disk_under_the_partial_keeps_the_last_one_written(tmp_path, embeds, reference, monkeypatch):
    out = tmp_path / "run.safetensors"
    partial = partial_path(out)
    _failing_write(monkeypatch, lambda name, count: name == partial.name and count == 4)
    args = options(embeds, "--out", out, "--log", out.with_suffix(".json"))
    code, lines = run(args)
    assert code == 2 and lines[-1].startswith(f"error: writing '{partial}' failed: No space left on device (")
    assert lines[-1].endswith(f"; {partial} still holds 9 finished latent frames; free some space, then run the same "
                              f"command again to finish it (or add --resume {partial})")
    assert sorted(os.listdir(tmp_path)) == [partial.name]
    monkeypatch.undo()
    assert run(args)[0] == 0
    assert_finished_exactly(out, reference)


def test_a_full_disk_under_the_output_keeps_the_whole_run_and_only_the_outputs_are_written_again(
        tmp_path, embeds, reference, monkeypatch):
    out = tmp_path / "run.safetensors"
    partial = partial_path(out)
    _failing_write(monkeypatch, lambda name, count: name == out.name)
    args = options(embeds, "--out", out, "--log", out.with_suffix(".json"))
    code, lines = run(args)
    assert code == 2 and lines[-1].startswith(f"error: writing '{out}' failed: No space left on device (")
    assert lines[-1].endswith(f"; kept the {3 * BLOCKS} finished latent frames in {partial}; free some space, then run "
                              f"the same command again to finish it (or add --resume {partial})")
    monkeypatch.undo()
    monkeypatch.setattr(jobs, "load_models", lambda *a, **k: pytest.fail("the finished run was generated again"))
    code, lines = run(args)
    assert code == 0 and f"{partial} holds the whole run; writing its outputs" in lines
    assert_finished_exactly(out, reference)


def test_an_output_that_is_an_input_or_another_output_is_refused_before_any_work(tmp_path, embeds):
    kept = embeds.read_bytes()
    (tmp_path / "link.safetensors").symlink_to(embeds)
    for more, message in [(["--out", embeds], f"--out '{embeds}' is the same file as the input --embeds"),
                          (["--out", tmp_path / "link.safetensors"], "is the same file as the input --embeds"),
                          (["--out", tmp_path / "o.safetensors", "--log", tmp_path / "o.safetensors"],
                           "--log '" + str(tmp_path / "o.safetensors") + "' is the same file as --out")]:
        code, lines = run(options(embeds, *more, backbone=tmp_path / "never_loaded.pt"))
        assert code == 2 and len(lines) == 1 and message in lines[0], lines
    assert embeds.read_bytes() == kept and sorted(os.listdir(tmp_path)) == ["link.safetensors"]


def test_a_second_run_on_the_same_output_is_refused_naming_the_first(tmp_path, embeds):
    out = tmp_path / "run.safetensors"
    with OutputLock(out, "--out"):
        code, lines = run(options(embeds, "--out", out))
    assert code == 2 and lines[-1].startswith(f"error: '{out}' is being written by another run (pid {os.getpid()} on ")
    assert lines[-1].endswith("wait for it to end, or choose another --out") and os.listdir(tmp_path) == []


def test_a_missing_output_folder_is_made_one_level_deep_and_said_a_deeper_one_refused(tmp_path, embeds):
    code, lines = run(options(embeds, "--out", tmp_path / "typo" / "sub" / "run.safetensors"))
    assert code == 2 and "folder '" + str(tmp_path / "typo") + "' does not exist either" in lines[-1]
    assert os.listdir(tmp_path) == []
    out = tmp_path / "new" / "run.safetensors"
    code, lines = run(options(embeds, "--out", out, "--frames", 6))
    assert code == 0 and f"created the folder '{out.parent}' for --out" in lines and out.exists()
