"""The comparison grid: tiles at their places under their labels, streamed mp4s equal the in-memory grid."""
import numpy as np
import pytest

from core.files.grid import GAP, LABEL_H, grid_shape, tile, write_grid_mp4
from core.files.video import read_video, write_mp4


def videos(n, t=5, h=32, w=48):
    rng = np.random.default_rng(0)
    return [np.full((t, h, w, 3), 40 * (i + 1), np.uint8) + rng.integers(0, 3, (t, h, w, 3), dtype=np.uint8)
            for i in range(n)]


def test_grid_shape():
    assert grid_shape(1) == (1, 1)
    assert grid_shape(5) == (2, 3)
    assert grid_shape(4) == (2, 2)
    assert grid_shape(5, columns=5) == (1, 5)
    with pytest.raises(ValueError, match="at least one"):
        grid_shape(0)


def test_tiles_sit_under_their_labels():
    vs = videos(5)
    g = tile(vs, [f"run {i}" for i in range(5)])
    assert g.shape == (5, 2 * (LABEL_H + 32) + GAP, 3 * 48 + 2 * GAP, 3)
    for i, v in enumerate(vs):
        r, c = divmod(i, 3)
        y, x = r * (LABEL_H + 32 + GAP) + LABEL_H, c * (48 + GAP)
        assert np.array_equal(g[:, y:y + 32, x:x + 48], v)
        strip = g[0, y - LABEL_H:y, x:x + 48]
        assert strip.max() > 200 and np.median(strip) == 0        # white text on black
    assert (g[:, LABEL_H + 32 + GAP + LABEL_H:, 2 * (48 + GAP):] == 32).all()   # the empty sixth cell


def test_shorter_video_holds_its_last_frame():
    a, b = videos(2)
    g = tile([a, b[:2]], ["a", "b"])
    assert g.shape[0] == 5
    assert np.array_equal(g[4, LABEL_H:, 48 + GAP:], b[1])


def test_bad_input_is_named():
    a, b = videos(2)
    with pytest.raises(ValueError, match="2 videos but 1 labels"):
        tile([a, b], ["a"])
    with pytest.raises(ValueError, match="'b' is 24x16 px but 'a' is 48x32"):
        tile([a, np.zeros((5, 16, 24, 3), np.uint8)], ["a", "b"])


def test_streamed_grid_matches_memory_grid(tmp_path):
    vs = videos(3, t=20)
    paths = [write_mp4(tmp_path / f"{i}.mp4", v, fps=16) for i, v in enumerate(vs)]
    out = write_grid_mp4(tmp_path / "grid.mp4", paths, ["a", "b", "c"], fps=16, chunk=7)
    got = read_video(out)
    want = tile([read_video(p) for p in paths], ["a", "b", "c"])
    assert got.shape == want.shape
    assert np.abs(got.astype(int) - want.astype(int)).mean() < 3        # one more H.264 pass
    assert not list(tmp_path.glob("*.tmp*"))
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        write_grid_mp4(tmp_path / "g2.mp4", [paths[0], tmp_path / "missing.mp4"], ["a", "b"], fps=16)
    assert not (tmp_path / "g2.mp4").exists()
