"""Resuming (core/app/resume.py): a run's identity (what a resumed run must share with the stopped one) is its
resolved settings, not how they were asked for; the partial that keeps a run's finished blocks is written at its
cadence, when the run stops and before the outputs, never shortened, and read back only by the same run."""
import errno
import os
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from core.app.plan import sampling_config
from core.app.resume import (PartialKeeper, keeping_partial, partial_frames, partial_path, resumption, run_identity,
                             write_partial)
from core.files.atomic import WriteError
from core.sampling.loop import GenerationResult

PROMPT = torch.zeros(1, 4, 8)


def identity(cfg):
    return run_identity("backbone.pt", PROMPT, 0, 12, (8, 12), cfg)


def test_the_same_settings_asked_differently_are_the_same_run():
    assert identity(sampling_config(strategy="memrope")) == identity(sampling_config(strategy="memrope", window=12))
    assert "request" not in identity(sampling_config())["settings"]


def test_a_setting_that_changes_the_result_changes_the_identity():
    assert identity(sampling_config(strategy="memrope")) != identity(sampling_config(strategy="memrope", window=16))


def block(b: int, frames: int = 3) -> SimpleNamespace:
    """A finished block's update: x0 [B, F, C, H, W] = the block index everywhere."""
    return SimpleNamespace(x0=torch.full((1, frames, 4, 2, 2), float(b)))


def frames_in(out) -> int:
    return partial_frames(partial_path(out))[0]


def test_a_partial_is_never_replaced_by_a_shorter_one(tmp_path):
    out, ident = tmp_path / "out.safetensors", {"seed": 0}
    assert write_partial(out, torch.zeros(1, 4, 9, 2, 2), ident) == 9
    assert write_partial(out, torch.ones(1, 4, 6, 2, 2), ident) == 9
    assert write_partial(out, torch.ones(1, 4, 9, 2, 2), ident) == 9            # as many, nothing new
    assert torch.equal(load_file(str(partial_path(out)))["latents"], torch.zeros(1, 4, 9, 2, 2))
    assert write_partial(out, torch.ones(1, 4, 12, 2, 2), ident) == 12


def test_the_keeper_writes_after_every_block_at_cadence_zero_and_waits_for_the_result_at_the_last(tmp_path):
    out = tmp_path / "out.safetensors"
    keeper = PartialKeeper(out, {"seed": 0}, given=0, frames=9, every=0)
    seen = []
    keeper.then = lambda update: seen.append(frames_in(out))
    for b in range(3):
        keeper(block(b))
    assert seen == [3, 6, 6]                       # written before the block is reported; the last waits
    keeper.finished(GenerationResult(keeper.latents(), retrieval_log=[{"block": 2}]))
    assert partial_frames(partial_path(out)) == (9, True)


def test_the_keeper_writes_only_when_due(tmp_path, monkeypatch):
    clock = [0.0]
    monkeypatch.setattr("core.app.resume.time.monotonic", lambda: clock[0])
    out = tmp_path / "out.safetensors"
    keeper = PartialKeeper(out, {"seed": 0}, given=0, frames=30, every=60)
    for b, t in enumerate((20, 50, 61, 90, 125)):
        clock[0] = t
        keeper(block(b))
        assert frames_in(out) == (9 if b in (2, 3) else 15 if b == 4 else 0)


def test_a_stopped_run_keeps_its_blocks_and_says_how_to_finish(tmp_path):
    out, lines = tmp_path / "out.safetensors", []
    with pytest.raises(KeyboardInterrupt):
        with keeping_partial(out, {"seed": 0}, 0, None, lines.append, every=1e9, frames=30) as keeper:
            keeper(block(0))
            keeper(block(1))
            raise KeyboardInterrupt
    p = partial_path(out)
    assert lines == [f"kept the 6 finished latent frames in {p}; run the same command again to finish it (or add "
                     f"--resume {p})"]
    assert frames_in(out) == 6


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_ctrl_c_on_a_full_disk_says_what_is_kept_and_stays_an_interrupt(tmp_path, monkeypatch):
    out, lines = tmp_path / "out.safetensors", []
    write_partial(out, torch.zeros(1, 4, 3, 2, 2), {"seed": 0})
    monkeypatch.setattr("core.files.atomic.write_safetensors", _no_space)
    with pytest.raises(KeyboardInterrupt):
        with keeping_partial(out, {"seed": 0}, 0, None, lines.append, every=1e9, frames=30) as keeper:
            for b in range(3):
                keeper(block(b))
            raise KeyboardInterrupt
    p = partial_path(out)
    assert len(lines) == 1 and lines[0].startswith(f"the newest blocks could not be kept (writing '{p}' failed: No "
                                                   "space left on device (")
    assert lines[0].endswith(f"); {p} still holds 3 finished latent frames; free some space, then run the same "
                             f"command again to finish it (or add --resume {p})")
    assert sorted(os.listdir(tmp_path)) == [p.name]


def test_a_full_disk_while_writing_an_output_is_one_error_naming_what_was_kept(tmp_path):
    out = tmp_path / "out.safetensors"
    with pytest.raises(OSError) as info:
        with keeping_partial(out, {"seed": 0}, 0, None, print, every=1e9, frames=6, auto=True) as keeper:
            keeper(block(0))
            keeper(block(1))
            keeper.finished(GenerationResult(keeper.latents()))
            raise WriteError("writing", out, OSError(errno.ENOSPC, "No space left on device"))
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"writing '{out}' failed: No space left on device (")
    assert message.endswith(f"; kept the 6 finished latent frames in {partial_path(out)}; free some space, then run "
                            "the same command again to finish it")
    assert partial_frames(partial_path(out)) == (6, True)


def test_a_rerun_resumes_its_own_partial_and_refuses_another_runs(tmp_path):
    out, ident = tmp_path / "out.safetensors", {"seed": 0, "settings": {"window": 12}}
    assert resumption(out, ident, 12, 3) is None
    write_partial(out, torch.ones(1, 4, 6, 2, 2), ident)
    assert resumption(out, ident, 12, 3).given == 6
    p = partial_path(out)
    with pytest.raises(ValueError, match=rf"^'{p}' holds the 6 finished latent frames of a different run \(seed: 0 "
                                         rf"\(partial\) vs 1 \(now\)\); finish that run \(its options plus --resume "
                                         rf"{p}\), or move it away to start this one$"):
        resumption(out, {**ident, "seed": 1}, 12, 3)
    with pytest.raises(ValueError, match=r"holds 6 finished latent frames, more than the 3 of this run: it is a "
                                         r"longer run's; finish that one \(its length plus --resume"):
        resumption(out, ident, 3, 3)


def test_a_partial_of_the_whole_run_gives_back_its_result_or_its_last_block_to_redo(tmp_path):
    out, ident = tmp_path / "out.safetensors", {"seed": 0}
    latents = torch.arange(9.).view(1, 1, 9, 1, 1)
    write_partial(out, latents, ident)
    redo = resumption(out, ident, 9, 3)
    assert redo.result is None and torch.equal(redo.start, latents[:, :, :6])
    write_partial(out, latents, ident, GenerationResult(latents, retrieval_log=[{"block": 1}], switches=[]))
    done = resumption(out, ident, 9, 3)
    assert torch.equal(done.result.latents, latents) and done.result.retrieval_log == [{"block": 1}]
