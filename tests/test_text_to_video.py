"""Text in, video out: ``python -m core generate --prompt`` with tiny umT5 and Wan VAE stand-ins in both
real on-disk layouts (original Wan and diffusers)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from core.model import WanConfig, WanTransformer
from core.video_io import read_video
from test_text_encoder import WORDS, build_tokenizer, save_diffusers_layout, wan_state_dict
from test_vae import write_tiny_vae

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("t2v")
    vocab = 3 + len(WORDS) + 27
    sd = wan_state_dict(vocab)
    build_tokenizer(root / "wan" / "google" / "umt5-xxl")
    torch.save({k: v.to(torch.bfloat16) for k, v in sd.items()}, root / "wan" / "models_t5_umt5-xxl-enc-bf16.pth")
    save_diffusers_layout({k: v.to(torch.bfloat16).float() for k, v in sd.items()}, vocab, root / "diffusers")
    write_tiny_vae(root)
    torch.manual_seed(1)
    model = WanTransformer(WanConfig(dim=64, ffn_dim=128, num_layers=2, num_heads=2, text_dim=32, freq_dim=32))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(root / "causal_forcing_tiny.safetensors"))
    return root


def run(assets, out, layout, *extra):
    te = assets / layout
    vae = assets / "wan" / "Wan2.1_VAE.pth" if layout == "wan" else assets / "diffusers" / "vae"
    cmd = [sys.executable, "-m", "core", "generate", "--prompt", "a red cat runs in the snow", "--frames", "21",
           "--latent-size", "4x6", "--mode", "both", "--backbone", str(assets / "causal_forcing_tiny.safetensors"),
           "--num-heads", "2", "--text-encoder", str(te), "--vae", str(vae), "--device", "cpu", "--out-dir", str(out),
           *extra]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_prompt_to_video_writes_mp4_log_and_map_for_both_modes(assets, tmp_path):
    out = tmp_path / "videos"
    run(assets, out, "wan")
    stem = "0000_a_red_cat_runs_in_the_snow"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{stem}_native.mp4", f"{stem}_rag.mp4", f"{stem}_rag.retrieval.json", f"{stem}_rag.retrieval_map.png"])
    video = read_video(out / f"{stem}_rag.mp4")
    assert video.shape == (4 * 20 + 1, 32, 48, 3) and video.std() > 1
    log = json.loads((out / f"{stem}_rag.retrieval.json").read_text())
    assert log["prompt"] == "a red cat runs in the snow" and log["blocks"][0]["query_frame"] == 18
    # both layouts of the same weights make the same video
    out2 = tmp_path / "videos_diffusers"
    run(assets, out2, "diffusers")
    assert json.loads((out2 / f"{stem}_rag.retrieval.json").read_text()) == log
    other = read_video(out2 / f"{stem}_rag.mp4").astype(float)
    assert abs(other - video.astype(float)).mean() < 2.0


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
