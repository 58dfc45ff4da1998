"""The retrieval map (core/retrieval/map.py) draws the sliding window of the run it plots: its window, sink and
block size, from the CLI (core/app/jobs.py) and from the Retrieval Map node (nodes/decode.py)."""
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from core.app.plan import sampling_config
from core.app import jobs
from core.families.wan22_ti2v import DEFAULTS as LL2
from core.retrieval.config import RetrievalConfig
from core.retrieval.map import render_retrieval_map, window_band

LOG = [{"block": b, "query_frame": 8 * b, "global_frames": [1, 3], "similarities": [0.9, 0.5]} for b in (5, 6, 7)]


def test_the_window_band_holds_the_frames_the_sliding_window_still_sees():
    q, lowest = window_band(64, sink=8, window=32, frames_per_block=8)
    assert lowest[40] == 24                  # a block at 40 sees 24..39: 16 frames + its own 8 = window − sink
    q, lowest = window_band(64, sink=8, window=32, frames_per_block=3)
    assert lowest[40] == 19
    q, lowest = window_band(30, sink=2, window=10, frames_per_block=2)
    assert list(q[:3]) == [0, 1, 2] and lowest[20] == 14 and lowest[0] == 2          # never below the sink


def test_the_band_depends_on_the_block_size():
    eight = render_retrieval_map(LOG, 64, 8, 32, 8, size_px=(400, 300))
    three = render_retrieval_map(LOG, 64, 8, 32, 3, size_px=(400, 300))
    assert eight.shape == three.shape == (300, 400, 3) and (eight != three).any()


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


@pytest.fixture
def nodes():
    from test_nodes import PACK, N
    return PACK, N


def test_the_retrieval_map_node_draws_the_band_of_the_logs_blocks(nodes):
    pack, n = nodes
    sampling = sys.modules[f"{pack.__name__}.nodes.sampling"]
    render = sys.modules[f"{pack.__name__}.core.retrieval.map"].render_retrieval_map
    log = sampling.RetrievalLog(tuple(LOG), 64, 8, 32, 8, "rag")
    (img,) = n["LongLiveRAG_RetrievalMap"].execute(log, 400, 300).args
    got = (img[0] * 255).round().to(torch.uint8).numpy()
    assert np.array_equal(got, render(LOG, 64, 8, 32, 8, size_px=(400, 300)))
    assert not np.array_equal(got, render(LOG, 64, 8, 32, 3, size_px=(400, 300)))
