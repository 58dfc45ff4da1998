"""The retrieval map (core/retrieval/map.py) draws the sliding window of the run it plots: its window, sink and
block size (the CLI's map: tests/core/app/test_jobs.py; the Retrieval Map node's: tests/nodes/test_decode.py)."""
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
