"""The demo's three-panel preview and its summary in numbers."""
import json

import numpy as np
import torch

from core.app.demo import run_demo
from core.app.demo_preview import CURVE_H, heat_map, summary, summary_lines, three_panels
from core.latents.format import WAN21


def test_summary_says_where_the_runs_differ_and_how_far_retrieval_reached_back():
    native = torch.randn(16, 12, 2, 3, generator=torch.Generator().manual_seed(0))
    rag = native.clone()
    rag[:, 7:] += 0.5                                   # the runs part at frame 7
    log = [{"block": 3, "query_frame": 9, "global_frames": [1, 4]},
           {"block": 4, "query_frame": 12, "global_frames": [1, 2, 5]}]
    s = summary(native, rag, log, 3)
    assert s["first_retrieving_block"] == 3 and s["first_frame_that_differs"] == 7
    assert s["reach_back_frames"] == {"median": 9.5, "max": 11}
    assert s["most_retrieved_frames"][0] == {"frame": 1, "times": 2}
    assert s["per_block_difference"][:2] == [0.0, 0.0] and s["per_block_difference"][3] > 0
    assert "reached back a median of 10 latent frames (2.4 s), at most 11 (2.8 s)" in summary_lines(s, WAN21)[1]


def test_the_difference_panel_is_black_where_the_runs_agree():
    native = torch.zeros(16, 2, 2, 2)
    rag = native.clone()
    rag[:, 1, 0, 0] = 1.0
    hm = heat_map((native - rag).abs().mean(0), scale=1)
    assert (hm[0] == 0).all() and tuple(hm[1, 0, 0]) == (255, 255, 0) and (hm[1, 1] == 0).all()
    video = three_panels(native, rag, [], lambda f, _: f)
    assert video.shape == (2, 2 * 24 + CURVE_H, 3 * 2 * 24, 3)


def test_the_demo_writes_three_panels_and_its_summary(tmp_path, capsys):
    from core.files.video import read_video
    report = run_demo(tmp_path / "demo", frames=24)
    frames = read_video(tmp_path / "demo" / "preview_native_vs_rag.mp4")
    assert frames.shape[1:3] == (8 * 24 + CURVE_H, 3 * 12 * 24)
    saved = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert saved == report["summary"] and saved["first_retrieving_block"] == 6
    assert np.isclose(sum(saved["per_block_difference"]) / 8, np.mean(saved["per_block_difference"]))
    err = capsys.readouterr().err
    assert "first retrieving block: 6" in err and "reached back" in err
