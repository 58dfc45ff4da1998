"""mp4 and png writing: playable H.264 files with the right frames, size and rate, written atomically."""
import numpy as np
import pytest
import torch

from core.files.video import read_video, to_uint8, write_mp4, write_png


def gradient_video(t: int = 9, h: int = 32, w: int = 48) -> np.ndarray:
    """Smooth moving colour ramps, float [T, H, W, 3] in [0, 1] (compresses almost losslessly)."""
    tt, yy, xx = np.meshgrid(np.arange(t), np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    return np.stack([xx, yy, (xx + yy + tt / t) % 1.0 * 0.5 + 0.25], axis=-1).astype(np.float32)


def leftovers(folder) -> list:
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


def test_mp4_reads_back_with_the_same_frames_size_and_content(tmp_path):
    video = gradient_video()
    path = write_mp4(tmp_path / "v.mp4", video, fps=16)
    back = read_video(path)
    assert back.shape == (9, 32, 48, 3)
    assert np.abs(back.astype(np.float32) / 255 - video).mean() < 0.02


def test_mp4_is_h264_yuv420p_at_the_requested_rate(tmp_path):
    import av
    write_mp4(tmp_path / "v.mp4", gradient_video(t=17), fps=16)
    with av.open(str(tmp_path / "v.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        assert stream.average_rate == 16
        assert stream.frames == 17


def test_uint8_numpy_and_torch_inputs_write_the_same_video(tmp_path):
    video = gradient_video()
    u8 = (video * 255).round().astype(np.uint8)
    assert np.array_equal(to_uint8(torch.from_numpy(video)), u8) and np.array_equal(to_uint8(video), u8)
    write_mp4(tmp_path / "a.mp4", u8, fps=16)
    write_mp4(tmp_path / "b.mp4", torch.from_numpy(video), fps=16)
    a, b = (read_video(tmp_path / f).astype(np.float32) for f in ("a.mp4", "b.mp4"))
    assert a.shape == b.shape and np.abs(a - b).mean() < 3.0


def test_odd_sizes_are_padded_to_even(tmp_path):
    back = read_video(write_mp4(tmp_path / "odd.mp4", gradient_video(t=5, h=31, w=45), fps=16))
    assert back.shape == (5, 32, 46, 3)


def test_a_video_streamed_in_chunks_equals_the_whole_video(tmp_path):
    video = gradient_video(t=13)
    write_mp4(tmp_path / "whole.mp4", video, fps=16)
    write_mp4(tmp_path / "chunks.mp4", iter([video[:1], video[1:5], torch.from_numpy(video[5:9]), video[9:]]), fps=16)
    whole, chunks = (read_video(tmp_path / f).astype(np.float32) for f in ("whole.mp4", "chunks.mp4"))
    # same frames; not byte-equal: multi-threaded x264 is not bit-reproducible from run to run
    assert whole.shape == chunks.shape == (13, 32, 48, 3)
    assert np.abs(whole - chunks).mean() < 3.0


def test_an_interrupted_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "v.mp4"
    write_mp4(target, gradient_video(t=3), fps=16)
    before = target.read_bytes()

    def frames():
        yield gradient_video(t=4)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_mp4(target, frames(), fps=16)
    assert target.read_bytes() == before
    assert leftovers(tmp_path) == []


def test_bad_input_writes_nothing(tmp_path):
    with pytest.raises(ValueError, match=r"\[T, H, W, 3\]"):
        write_mp4(tmp_path / "v.mp4", np.zeros((4, 8, 8)), fps=16)
    with pytest.raises(ValueError, match="no video frames"):
        write_mp4(tmp_path / "v.mp4", iter([]), fps=16)
    with pytest.raises(ValueError, match="same size"):
        write_mp4(tmp_path / "v.mp4", iter([np.zeros((1, 8, 8, 3)), np.zeros((1, 8, 10, 3))]), fps=16)
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        write_png(tmp_path / "i.png", np.zeros((8, 8, 4)))
    assert list(tmp_path.iterdir()) == []


def test_png_round_trips_exactly(tmp_path):
    from PIL import Image
    image = gradient_video(t=1)[0]
    write_png(tmp_path / "i.png", image)
    back = np.asarray(Image.open(tmp_path / "i.png"))
    assert back.dtype == np.uint8 and np.array_equal(back, (image * 255).round().astype(np.uint8))
    assert leftovers(tmp_path) == []
