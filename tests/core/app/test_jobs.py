"""Headless jobs (core/app/jobs.py): output names, prompt lists, the retrieval map a run writes, and a video's
partial kept until its outputs are written."""
import errno
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from core.app import jobs
from core.app.jobs import output_stem, read_prompts
from core.app.plan import sampling_config
from core.app.resume import partial_frames, partial_path
from core.files.atomic import WriteError
from core.families.wan22_ti2v import DEFAULTS as LL2
from core.retrieval.config import RetrievalConfig
from core.retrieval.map import render_retrieval_map
from factory import tiny_model

LOG = [{"block": b, "query_frame": 8 * b, "global_frames": [1, 3], "similarities": [0.9, 0.5]} for b in (5, 6, 7)]


def test_the_cli_draws_the_band_of_the_runs_blocks(tmp_path, monkeypatch):
    """A LongLive 2.0 run (blocks of 8): the map jobs.write_outputs saves is the one of blocks of 8."""
    cfg = sampling_config(LL2, retrieval=RetrievalConfig(top_k=2, recent_exclude=1), strategy="rag")
    assert (cfg.frames_per_block, cfg.window, cfg.sink) == (8, 32, 8)
    monkeypatch.setattr("core.files.video.write_mp4", lambda path, frames, fps: list(frames))   # no encoder needed
    vae = SimpleNamespace(device="cpu", latent=LL2.latent,
                          iter_decode=lambda z: iter([torch.zeros(1, 3, 1, 2, 2)]))
    res = SimpleNamespace(latents=torch.zeros(1, 48, 64, 2, 2), retrieval_log=LOG, switches=[])
    progress = jobs.Progress(report=lambda line: None)
    jobs.write_outputs(vae, res, tmp_path / "run", cfg, {"prompt": "a fox"}, progress)
    saved = np.asarray(Image.open(tmp_path / "run.retrieval_map.png").convert("RGB"))
    assert np.array_equal(saved, render_retrieval_map(LOG, 64, 8, 32, 8, title="a fox"))
    assert not np.array_equal(saved, render_retrieval_map(LOG, 64, 8, 32, 3, title="a fox"))


def test_output_names_are_deterministic_and_safe():
    assert output_stem(3, "A cat, on a *mat*!") == "0003_a_cat_on_a_mat"
    assert output_stem(12, "???") == "0012_prompt"


def test_prompt_list_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="one prompt per line"):
        read_prompts(None, str(tmp_path / "none.txt"))
    (tmp_path / "empty.txt").write_text("\n  \n")
    with pytest.raises(ValueError, match="holds no prompts"):
        read_prompts(None, str(tmp_path / "empty.txt"))


def test_a_video_keeps_its_partial_through_the_decode_and_a_rerun_only_writes_it(tmp_path, monkeypatch):
    cfg = sampling_config(strategy="native")
    job = jobs.VideoJob(("a fox",), 6, (4, 4), 0, "te", "vae", str(tmp_path), cfg.family.latent, partial_every=1e9)
    spec, stem, lines = jobs.ModelSpec("backbone.pt"), tmp_path / "0000_a_fox_native", []
    progress = jobs.Progress(report=lines.append)
    partial = partial_path(stem.with_suffix(".safetensors"))
    made = []

    def decode_out_of_space(res):
        assert partial_frames(partial) == (6, True)        # kept before the decode begins
        made.append(res.latents)
        raise WriteError("writing", stem.with_suffix(".mp4"), OSError(errno.ENOSPC, "No space left on device"))
    prompt = torch.randn(1, 4, 32, generator=torch.Generator().manual_seed(0))
    with pytest.raises(OSError, match=f"; kept the 6 finished latent frames in {partial}; free some space, then run "
                                      "the same command again to finish it$"):
        jobs._make_video(spec, tiny_model(0), prompt, job, 0, cfg, None, None, stem, progress, decode_out_of_space)
    monkeypatch.setattr(jobs, "generate", lambda *a, **k: pytest.fail("the finished video was generated again"))
    jobs._make_video(spec, tiny_model(0), prompt, job, 0, cfg, None, None, stem, progress,
                     lambda res: made.append(res.latents))
    assert torch.equal(made[1], made[0]) and not partial.exists()
    assert lines[-1] == f"{stem.name}: {partial.name} holds the whole video; writing it"


def test_a_retrieval_run_that_retrieved_nothing_says_so_in_the_log(tmp_path):
    from paths import GOLDEN
    lines = []
    spec = jobs.ModelSpec(str(GOLDEN / "wan_tiny_t2v_bare.safetensors"), num_heads=2, device="cpu")
    job = jobs.LatentJob(str(GOLDEN / "inputs.safetensors"), 12, (8, 12), 0, str(tmp_path / "out.safetensors"))
    jobs.generate_latents(spec, sampling_config(strategy="rag"), job, jobs.Progress(report=lines.append))
    said = [line for line in lines if line.startswith("retrieval:")]
    assert said == ["retrieval: no block retrieved a past frame; no frame left the KV cache window before the last "
                    "block: the video is too short for retrieval with this window (make it longer or the window "
                    "smaller)"]
