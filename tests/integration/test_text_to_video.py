"""Text in, video out: ``python -m core generate --prompt`` with tiny umT5 and Wan VAE stand-ins in both
real on-disk layouts (original Wan and diffusers)."""
import json
import os
import subprocess
import sys

import numpy as np
import torch

from core.files.grid import GAP, LABEL_H
from core.files.video import read_video

from paths import ROOT


def run(assets, out, layout, *extra, check=True):
    te = assets / layout
    vae = assets / "wan" / "Wan2.1_VAE.pth" if layout == "wan" else assets / "diffusers" / "vae"
    cmd = [sys.executable, "-m", "core", "generate", "--prompt", "a red cat runs in the snow", "--frames", "21",
           "--latent-size", "4x6", "--mode", "both", "--backbone", str(assets / "causal_forcing_tiny.safetensors"),
           "--num-heads", "2", "--text-encoder", str(te), "--vae", str(vae), "--device", "cpu", "--out-dir", str(out),
           *extra]
    if "--strategy" in extra:
        cmd.remove("--mode"), cmd.remove("both")
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert not check or proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_prompt_to_video_writes_mp4_log_and_map_for_both_modes(assets, tmp_path):
    out = tmp_path / "videos"
    run(assets, out, "wan")
    stem = "0000_a_red_cat_runs_in_the_snow"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{stem}_native.mp4", f"{stem}_rag.mp4", f"{stem}_rag.retrieval.json", f"{stem}_rag.retrieval_map.png",
         f"{stem}_grid.mp4"])
    video = read_video(out / f"{stem}_rag.mp4")
    assert video.shape == (4 * 20 + 1, 32, 48, 3) and video.std() > 1
    # the comparison grid: both runs side by side, each under its label strip
    grid = read_video(out / f"{stem}_grid.mp4").astype(float)
    assert grid.shape == (4 * 20 + 1, LABEL_H + 32, 2 * 48 + GAP, 3)
    native = read_video(out / f"{stem}_native.mp4").astype(float)
    # (the random tiny VAE's video is noise-like: a second H.264 pass moves it by a few levels)
    assert abs(grid[:, LABEL_H:, :48] - native).mean() < 8 and abs(grid[:, LABEL_H:, 48 + GAP:] - video).mean() < 8
    assert grid[:, :LABEL_H].max() > 200 and np.median(grid[:, :LABEL_H]) < 10
    (out / f"{stem}_grid.mp4").unlink()            # a rerun with every video present still writes a missing grid
    run(assets, out, "wan")
    assert (out / f"{stem}_grid.mp4").exists()
    log = json.loads((out / f"{stem}_rag.retrieval.json").read_text())
    assert log["prompt"] == "a red cat runs in the snow" and log["blocks"][0]["query_frame"] == 18
    # both layouts of the same weights make the same video
    out2 = tmp_path / "videos_diffusers"
    run(assets, out2, "diffusers")
    assert json.loads((out2 / f"{stem}_rag.retrieval.json").read_text()) == log
    other = read_video(out2 / f"{stem}_rag.mp4").astype(float)
    assert abs(other - video.astype(float)).mean() < 2.0


def test_every_strategy_on_one_prompt_and_seed_with_the_grid(assets, tmp_path):
    """--strategy all: one video per strategy (each with its published window and sink) and the grid of all five."""
    out = tmp_path / "all"
    run(assets, out, "wan", "--strategy", "all", "--frames", "27")
    stem = "0000_a_red_cat_runs_in_the_snow"
    names = ["native", "rag", "infinity-rope", "memrope", "deep-forcing"]
    videos = {n: read_video(out / f"{stem}_{n}.mp4").astype(float) for n in names}
    assert all(v.shape == (4 * 26 + 1, 32, 48, 3) for v in videos.values())
    # same prompt and seed; once the caches differ (evictions from frame 12 on, 6 for ∞-RoPE) so do the videos
    assert abs(videos["native"][-20:] - videos["memrope"][-20:]).mean() > 0.5
    grid = read_video(out / f"{stem}_grid.mp4")
    assert grid.shape == (4 * 26 + 1, 2 * (LABEL_H + 32) + GAP, 3 * 48 + 2 * GAP, 3)
    proc = run(assets, out, "wan", "--strategy", "native,nope", check=False)
    assert proc.returncode == 2 and "invalid choice: 'nope' (choose from native, rag, infinity-rope" in proc.stderr


def test_existing_videos_are_skipped(assets, tmp_path):
    out = tmp_path / "v"
    run(assets, out, "wan", "--mode", "rag")
    first = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    proc = run(assets, out, "wan", "--mode", "rag")
    assert "skip" in proc.stderr
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == first


def test_missing_text_encoder_lists_the_files_to_put_where(assets, tmp_path):
    cmd = [sys.executable, "-m", "core", "generate", "--prompt", "x", "--frames", "3", "--backbone",
           str(assets / "causal_forcing_tiny.safetensors"), "--num-heads", "2", "--text-encoder", str(tmp_path / "nothing"),
           "--vae", str(tmp_path / "nothing"), "--device", "cpu", "--out-dir", str(tmp_path / "o")]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "models_t5_umt5-xxl-enc-bf16.pth" in proc.stderr and "hf download" in proc.stderr
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_image_and_clip_starts_begin_the_video(assets, tmp_path):
    from PIL import Image
    from core.files.video import write_mp4
    img = (torch.rand(32, 48, 3, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8).numpy()
    Image.fromarray(img).save(tmp_path / "start.png")
    out = tmp_path / "img"
    proc = run(assets, out, "wan", "--mode", "rag", "--image", str(tmp_path / "start.png"), "--frames", "22")
    assert proc.returncode == 0, proc.stderr
    frames = read_video(out / "0000_a_red_cat_runs_in_the_snow_rag.mp4")
    assert len(frames) == 4 * 21 + 1            # 22 latent frames: the image's, then 7 generated blocks
    # a 13-frame clip is 4 latent frames: 4 + 3k; one of another size is fitted to the run's 48x32 px
    clip = (torch.rand(13, 48, 48, 3, generator=torch.Generator().manual_seed(1)) * 255).to(torch.uint8).numpy()
    write_mp4(tmp_path / "clip.mp4", clip, fps=16)
    proc = run(assets, tmp_path / "clip", "wan", "--mode", "native", "--video", str(tmp_path / "clip.mp4"),
               "--frames", "10")
    assert proc.returncode == 0, proc.stderr
    assert "is 48x48 px: centre-cropped to the run's aspect ratio and scaled to its 48x32 px" in proc.stderr
    assert read_video(next((tmp_path / "clip").glob("*_native.mp4"))).shape == (4 * 9 + 1, 32, 48, 3)
    # a length that does not fit the start is refused before loading anything
    bad = run(assets, tmp_path / "bad", "wan", "--mode", "rag", "--image", str(tmp_path / "start.png"), "--frames", "21",
              check=False)
    assert bad.returncode == 2 and "1 plus a multiple of the block size 3 (e.g. 22)" in bad.stderr


def test_a_stopped_video_run_is_finished_by_the_same_command(assets, tmp_path, monkeypatch):
    from core.app import cli, jobs
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args = ["generate", "--prompt", "a red cat runs in the snow", "--frames", "24", "--latent-size", "4x6",
            "--mode", "rag", "--backbone", str(assets / "causal_forcing_tiny.safetensors"), "--num-heads", "2",
            "--text-encoder", str(assets / "wan"), "--vae", str(assets / "wan" / "Wan2.1_VAE.pth"), "--device", "cpu"]
    assert cli.main([*args, "--out-dir", str(tmp_path / "ref")]) == 0
    on_block = jobs.Progress.on_block

    def stop_at_block_4(self, update):
        on_block(self, update)
        if update.block == 4:
            raise KeyboardInterrupt
    monkeypatch.setattr(jobs.Progress, "on_block", stop_at_block_4)
    out = tmp_path / "run"
    assert cli.main([*args, "--out-dir", str(out)]) == 130
    partial = out / "0000_a_red_cat_runs_in_the_snow_rag.partial.safetensors"
    assert [p.name for p in out.iterdir()] == [partial.name]
    monkeypatch.setattr(jobs.Progress, "on_block", on_block)
    assert cli.main([*args, "--out-dir", str(out)]) == 0
    assert not partial.exists()
    name = "0000_a_red_cat_runs_in_the_snow_rag"
    # exact: every block's retrieval (frames and similarities, computed from the latents) equals the
    # uninterrupted run's; the mp4s agree up to the video encoder (x264 output was seen to vary by a
    # few levels in one of many runs under load), far below what a wrong resume changes
    assert (json.loads((out / f"{name}.retrieval.json").read_text())
            == json.loads((tmp_path / "ref" / f"{name}.retrieval.json").read_text()))
    got, want = (read_video(d / f"{name}.mp4").astype(float) for d in (out, tmp_path / "ref"))
    assert got.shape == want.shape and abs(got - want).mean() < 0.5
