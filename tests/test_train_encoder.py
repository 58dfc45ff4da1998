"""Retrieval-encoder training: losses as specified, learning, checkpoints, resume, DDP, and the
corpus → train → generate loop through the command line."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from core.encoder import load_encoder
from core.train_encoder import TrainConfig, config_from, delta_loss, scan_corpus, smooth_loss, train

from conftest import GOLDEN

ROOT = Path(__file__).resolve().parents[1]


def make_corpus(folder: Path, videos=6, frames=24, hw=(8, 12)):
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    for v in range(videos):   # smooth, low-frequency frames that drift slowly: learnable
        base = F.interpolate(torch.randn(1, 16, 2, 3, generator=g), size=hw, mode="bilinear")[0]
        drift = F.interpolate(torch.randn(1, 16, 2, 3, generator=g), size=hw, mode="bilinear")[0] * 0.02
        lat = torch.stack([base + t * drift for t in range(frames)])
        save_file({"latents": lat}, str(folder / f"video_{v:02d}.safetensors"))
    return folder


def tiny_cfg(data, out, **kw):
    base = dict(data=str(data), out=str(out), epochs=6, batch_size=4, latent_dim=16, hidden_dims=[8, 16],
                chunks_per_video=4, lr=3e-3, device="cpu", progress=False, save_every=3)
    base.update(kw)
    return TrainConfig(**base)


def test_delta_loss_is_the_mean_hinge_over_offsets():
    e = torch.randn(2, 5, 7)
    want = torch.stack([F.relu(F.cosine_similarity(e[:, k:], e[:, :-k], dim=-1) - 0.1).mean()
                        for k in (1, 2, 3)]).mean()
    assert torch.allclose(delta_loss(e, 0.1, 3), want)


def test_smooth_loss_is_the_mean_acceleration_norm():
    e = torch.zeros(1, 4, 2)
    e[0, :, 0] = torch.tensor([0.0, 1.0, 4.0, 9.0])   # constant second difference 2
    assert smooth_loss(e).item() == pytest.approx(2.0, abs=1e-4)


def test_training_lowers_the_loss_writes_checkpoints_and_resumes(tmp_path):
    data = make_corpus(tmp_path / "corpus")
    res = train(tiny_cfg(data, tmp_path / "run"))
    totals = [h["train"]["total"] for h in res.history]
    assert totals[-1] < 0.9 * totals[0]
    for name in ("encoder_last.pt", "encoder_best.pt", "encoder_epoch0003.pt", "encoder_epoch0006.pt"):
        assert (tmp_path / "run" / name).exists()
    enc = load_encoder(res.best_path)
    assert enc.describe(torch.randn(3, 16, 8, 12)).shape == (3, 16)
    ckpt = torch.load(res.last_path, weights_only=True)
    assert ckpt["epoch"] == 6 and {"model", "config", "optimizer"} <= set(ckpt)
    assert {"in_channels", "spatial_h", "spatial_w", "latent_dim", "hidden_dims"} <= set(ckpt["config"])
    more = train(tiny_cfg(data, tmp_path / "run", epochs=8, resume=str(res.last_path)))
    assert [h["epoch"] for h in more.history] == [7, 8]
    assert torch.load(more.last_path, weights_only=True)["epoch"] == 8


def test_published_pt_corpus_files_are_read_too(tmp_path):
    data = tmp_path / "toy"
    data.mkdir()
    torch.save(torch.randn(10, 16, 8, 12), data / "latent_000001.pt")
    torch.save(torch.randn(12, 16, 8, 12), data / "latent_000002.pt")
    files, shape = scan_corpus(data)
    assert len(files) == 2 and shape == (16, 8, 12)
    res = train(tiny_cfg(data, tmp_path / "run", epochs=1, val_split=0.0))
    assert res.last_path.exists()


def test_yaml_config_is_overridden_by_the_command_line(tmp_path):
    yml = tmp_path / "c.yaml"
    yml.write_text("epochs: 3\nbatch_size: 16\nlatent_dim: 32\ndata: somewhere\n")
    from argparse import Namespace
    cfg = config_from(Namespace(config=str(yml), epochs=5, data=None, batch_size=None))
    assert (cfg.epochs, cfg.batch_size, cfg.latent_dim, cfg.data) == (5, 16, 32, "somewhere")
    yml.write_text("epochz: 3\n")
    with pytest.raises(ValueError, match="unknown keys"):
        config_from(Namespace(config=str(yml), data="x"))


def test_bad_corpora_fail_naming_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="build-corpus"):
        scan_corpus(tmp_path / "nothing")
    (tmp_path / "a").mkdir()
    save_file({"video": torch.zeros(2, 16, 8, 12)}, str(tmp_path / "a" / "x.safetensors"))
    with pytest.raises(ValueError, match=r"x\.safetensors' has no 'latents'"):
        scan_corpus(tmp_path / "a")
    (tmp_path / "b").mkdir()
    save_file({"latents": torch.zeros(2, 16, 8, 12)}, str(tmp_path / "b" / "1.safetensors"))
    save_file({"latents": torch.zeros(2, 16, 6, 12)}, str(tmp_path / "b" / "2.safetensors"))
    with pytest.raises(ValueError, match="must share"):
        scan_corpus(tmp_path / "b")


def run_cli(*args, env=None):
    proc = subprocess.run([sys.executable, "-m", "core", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_corpus_then_training_then_generation_with_the_trained_encoder(tmp_path):
    emb = tmp_path / "emb.safetensors"
    save_file({"prompt_embeds": torch.randn(3, 10, 64, generator=torch.Generator().manual_seed(1))}, str(emb))
    backbone = GOLDEN / "wan_tiny_t2v_bare.safetensors"
    run_cli("build-corpus", "--backbone", backbone, "--num-heads", 2, "--embeds", emb, "--frames", 12,
            "--latent-size", "8x12", "--device", "cpu", "--out", tmp_path / "corpus")
    files = sorted((tmp_path / "corpus").glob("*.safetensors"))
    assert [f.name for f in files] == ["emb_000.safetensors", "emb_001.safetensors", "emb_002.safetensors"]
    assert load_file(str(files[0]))["latents"].shape == (12, 16, 8, 12)
    run_cli("train-encoder", "--data", tmp_path / "corpus", "--out", tmp_path / "enc", "--epochs", 2,
            "--batch-size", 2, "--latent-dim", 16, "--hidden-dims", 8, 16, "--device", "cpu")
    log = tmp_path / "log.json"
    run_cli("generate", "--backbone", backbone, "--num-heads", 2, "--embeds", GOLDEN / "inputs.safetensors",
            "--frames", 27, "--latent-size", "8x12", "--device", "cpu", "--encoder", tmp_path / "enc" / "encoder_best.pt",
            "--out", tmp_path / "o.safetensors", "--log", log)
    assert len(json.loads(log.read_text())) > 0


def test_two_process_ddp_with_gloo_writes_one_checkpoint(tmp_path):
    if not torch.distributed.is_gloo_available():
        pytest.skip("gloo backend not available")
    data = make_corpus(tmp_path / "corpus", videos=4, frames=12)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           "-m", "core", "train-encoder", "--data", str(data), "--out", str(tmp_path / "ddp"), "--epochs", "2",
           "--batch-size", "2", "--latent-dim", "8", "--hidden-dims", "8", "--device", "cpu"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert torch.load(tmp_path / "ddp" / "encoder_last.pt", weights_only=True)["epoch"] == 2
