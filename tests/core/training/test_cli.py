"""Retrieval-encoder training runs (core/training/cli.py): learning, checkpoints that load here and the published
way, resume, config precedence, bad data, DDP. Its losses and corpus: test_losses.py, test_corpus.py."""
import dataclasses
import socket
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from core.app.cli import main as cli_main
from core.retrieval.encoder import EncoderConfig, RetrievalEncoder, load_encoder
from core.training.corpus import scan_corpus
from core.training.config import TrainConfig
from core.training.cli import config_from, train

from paths import ROOT


def make_corpus(folder: Path, videos=6, frames=24, hw=(8, 12)):
    """Smooth, low-frequency frames that drift slowly over time: learnable in a few steps."""
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    for v in range(videos):
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


# ------------------------------------------------------------------------------------------ losses


# -------------------------------------------------------------------------------------------- data


# ---------------------------------------------------------------------------------------- training
def test_training_lowers_the_loss_writes_checkpoints_and_resumes(tmp_path):
    data = make_corpus(tmp_path / "corpus")
    res = train(tiny_cfg(data, tmp_path / "run", epochs=4, save_every=2))
    totals = [h["train"]["total"] for h in res.history]
    assert totals[-1] < 0.8 * totals[0]
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "encoder_best.pt", "encoder_epoch0002.pt", "encoder_epoch0004.pt", "encoder_last.pt"]  # no temp files left
    enc = load_encoder(res.best_path)
    assert enc.describe(torch.randn(3, 16, 8, 12)).shape == (3, 16)
    ckpt = torch.load(res.last_path, weights_only=True)
    assert (ckpt["epoch"], ckpt["epochs_done"]) == (3, 4)       # published meaning: index of the last epoch
    assert {"model", "config", "optimizer", "scaler", "best_val"} <= set(ckpt)
    assert ckpt["best_val"] == min(h["val"]["total"] for h in res.history)

    more = train(tiny_cfg(data, tmp_path / "run", epochs=6, resume=str(res.last_path)))
    assert [h["epoch"] for h in more.history] == [5, 6]
    assert torch.load(more.last_path, weights_only=True)["epochs_done"] == 6
    assert more.history[0]["train"]["total"] < totals[0]       # continued from trained weights, not afresh


def test_checkpoint_loads_the_published_way(tmp_path):
    """The published loader: AEConfig(**{k: v for k in config if k in AEConfig fields}); load_state_dict."""
    data = make_corpus(tmp_path / "corpus", videos=2, frames=8)
    res = train(tiny_cfg(data, tmp_path / "run", epochs=1, save_every=0))
    ckpt = torch.load(res.last_path, weights_only=True)
    published_fields = {"in_channels", "spatial_h", "spatial_w", "latent_dim", "hidden_dims", "seq_len", "lr",
                        "batch_size", "epochs", "delta_margin", "delta_weight", "delta_window", "smooth_weight",
                        "val_split", "seed", "weight_decay", "grad_clip", "save_every", "num_workers"}
    assert published_fields <= set(ckpt["config"])
    assert (ckpt["config"]["spatial_h"], ckpt["config"]["spatial_w"], ckpt["config"]["hidden_dims"]) == (8, 12, [8, 16])
    names = {f.name for f in dataclasses.fields(EncoderConfig)}
    model = RetrievalEncoder(EncoderConfig(**{k: v for k, v in ckpt["config"].items() if k in names}))
    model.load_state_dict(ckpt["model"])   # strict: every encoder and decoder weight present


def test_resume_takes_the_architecture_from_the_checkpoint(tmp_path):
    data = make_corpus(tmp_path / "corpus", videos=2, frames=8)
    res = train(tiny_cfg(data, tmp_path / "run", epochs=1, latent_dim=8, hidden_dims=[4]))
    more = train(tiny_cfg(data, tmp_path / "run", epochs=2, resume=str(res.last_path)))   # default 16, [8, 16]
    assert load_encoder(more.last_path).cfg.latent_dim == 8
    other = make_corpus(tmp_path / "other", videos=2, frames=8, hw=(6, 6))
    with pytest.raises(ValueError, match=r"trained on frames \[C, H, W\] = \[16, 8, 12\]"):
        train(tiny_cfg(other, tmp_path / "run2", epochs=3, resume=str(res.last_path)))


def test_published_pt_corpus_files_are_read_too(tmp_path):
    data = tmp_path / "toy"
    data.mkdir()
    torch.save(torch.randn(10, 16, 8, 12), data / "latent_000001.pt")
    torch.save(torch.randn(12, 16, 8, 12).bfloat16(), data / "latent_000002.pt")
    files, shape = scan_corpus(data)
    assert [f.name for f in files] == ["latent_000001.pt", "latent_000002.pt"] and shape == (16, 8, 12)
    res = train(tiny_cfg(data, tmp_path / "run", epochs=1, val_split=0.0))
    assert res.last_path.exists() and res.best_path.exists()


# ------------------------------------------------------------------------------------------ config
def test_yaml_config_is_overridden_by_the_command_line(tmp_path):
    yml = tmp_path / "c.yaml"
    yml.write_text("epochs: 3\nbatch_size: 16\nlatent_dim: 32\nlr: 3e-4\nhidden_dims: [4, 8]\ndata: somewhere\n")
    cfg = config_from(Namespace(config=str(yml), epochs=5, data=None, batch_size=None))
    assert (cfg.epochs, cfg.batch_size, cfg.latent_dim, cfg.data, cfg.hidden_dims) == (5, 16, 32, "somewhere", [4, 8])
    assert cfg.lr == 3e-4 and cfg.seq_len == 8     # '3e-4' is a string to YAML 1.1; untouched keys keep defaults
    yml.write_text("epochz: 3\n")
    with pytest.raises(ValueError, match="unknown keys"):
        config_from(Namespace(config=str(yml), data="x"))


def test_the_published_yaml_keys_are_understood(tmp_path):
    yml = tmp_path / "ae_delta.yaml"
    yml.write_text("data_dir: datasets\nnum_workers: 8\nuse_amp: false\nlr: 3.0e-4\nwandb_run_name: ae_delta\n"
                   "gpu: 0\ndelta_margin: 0.85\n")
    cfg = config_from(Namespace(config=str(yml)))
    assert (cfg.data, cfg.num_workers, cfg.amp, cfg.delta_margin) == ("datasets", 8, False, 0.85)


def test_cli_trains_and_reports_bad_data(tmp_path, capsys):
    data = make_corpus(tmp_path / "corpus", videos=2, frames=8)
    yml = tmp_path / "c.yaml"
    yml.write_text(f"data: {data}\nepochs: 9\nlatent_dim: 8\n")
    rc = cli_main(["train-encoder", "--config", str(yml), "--out", str(tmp_path / "enc"), "--epochs", "1",
                   "--batch-size", "2", "--hidden-dims", "8", "--device", "cpu", "--no-amp"])
    assert rc == 0
    ckpt = torch.load(tmp_path / "enc" / "encoder_last.pt", weights_only=True)
    assert (ckpt["epochs_done"], ckpt["config"]["latent_dim"], ckpt["config"]["amp"]) == (1, 8, False)
    assert cli_main(["train-encoder", "--data", str(tmp_path / "missing"), "--device", "cpu"]) == 2
    assert "does not exist" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------- DDP
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
                    reason="gloo backend not available")
def test_two_process_ddp_with_gloo_writes_one_checkpoint(tmp_path):
    data = make_corpus(tmp_path / "corpus", videos=4, frames=12)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           "-m", "core", "train-encoder", "--data", str(data), "--out", str(tmp_path / "ddp"), "--epochs", "2",
           "--batch-size", "2", "--latent-dim", "8", "--hidden-dims", "8", "--device", "cpu", "--save-every", "2"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == [
        "encoder_best.pt", "encoder_epoch0002.pt", "encoder_last.pt"]
    assert torch.load(tmp_path / "ddp" / "encoder_last.pt", weights_only=True)["epochs_done"] == 2
    assert proc.stderr.count("epoch 2/2  train") == 1             # only rank 0 reports
