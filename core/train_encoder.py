"""Training the retrieval encoder on a backbone's own clean latents (SPEC §7).

Loss = MSE reconstruction + λΔ·Window-Temporal-Delta + λs·smoothness, on the raw (not normalised)
embeddings of ``seq_len`` consecutive frames, as in the published recipe. Data: a folder of
``*.safetensors`` files with ``latents`` [T, 16, H, W] (``python -m core build-corpus``).
Checkpoints ``{"model", "config", "optimizer", "epoch", "best_val", ...}`` load in ``core`` and in
the published code. Runs on CPU, one GPU (AMP) or several under ``torchrun`` (DDP).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file

from .encoder import EncoderConfig, RetrievalEncoder
from .io import atomic_path


@dataclass
class TrainConfig:
    data: str = ""
    out: str = "encoder_runs"
    epochs: int = 400
    batch_size: int = 128
    seq_len: int = 8
    latent_dim: int = 1024
    hidden_dims: list[int] = field(default_factory=lambda: [64, 128, 256])
    lr: float = 3e-4
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    delta_margin: float = 0.85
    delta_weight: float = 1.0
    delta_window: int = 3
    smooth_weight: float = 1.0
    val_split: float = 0.1
    chunks_per_video: int = 1       # random windows drawn from each video per epoch (published: 1)
    save_every: int = 50
    seed: int = 42
    device: str | None = None
    amp: bool = True                # CUDA only
    num_workers: int = 0
    resume: str | None = None
    progress: bool = True


@dataclass
class TrainResult:
    epochs_run: int
    history: list[dict]
    best_val: float
    last_path: Path
    best_path: Path


# ---------------------------------------------------------------------------------------- losses
def delta_loss(emb: torch.Tensor, margin: float, window: int) -> torch.Tensor:
    """Window Temporal Delta: mean over k = 1..w of mean(relu(cos(e_t, e_{t−k}) − m)); emb [B, S, D]."""
    s = emb.shape[1]
    w = min(s - 1, window)
    if w <= 0:
        return emb.new_zeros(())
    terms = [F.relu(F.cosine_similarity(emb[:, k:], emb[:, :-k], dim=-1) - margin).mean() for k in range(1, w + 1)]
    return torch.stack(terms).mean()


def smooth_loss(emb: torch.Tensor) -> torch.Tensor:
    """Mean over t of sqrt(‖e_{t+1} − 2e_t + e_{t−1}‖² + 1e-8); emb [B, S, D]."""
    if emb.shape[1] < 3:
        return emb.new_zeros(())
    accel = emb[:, 2:] - 2 * emb[:, 1:-1] + emb[:, :-2]
    return torch.sqrt(accel.float().pow(2).sum(-1) + 1e-8).mean()


def losses(model, chunk: torch.Tensor, cfg: TrainConfig) -> dict[str, torch.Tensor]:
    """chunk [B, S, C, H, W] → {"recon", "delta", "smooth", "total"}."""
    b, s = chunk.shape[:2]
    flat = chunk.flatten(0, 1)
    recon, emb = model(flat)
    out = {"recon": F.mse_loss(recon.float(), flat.float()),
           "delta": cfg.delta_weight * delta_loss(emb.view(b, s, -1).float(), cfg.delta_margin, cfg.delta_window),
           "smooth": cfg.smooth_weight * smooth_loss(emb.view(b, s, -1))}
    out["total"] = out["recon"] + out["delta"] + out["smooth"]
    return out


# ------------------------------------------------------------------------------------------ data
def scan_corpus(folder: str | Path) -> tuple[list[Path], tuple[int, int, int]]:
    """Corpus files and their common (C, H, W); clear errors for anything unusable."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"training data folder '{folder}' does not exist; build one with "
                                "`python -m core build-corpus`")
    files = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.pt"))
    if not files:
        raise ValueError(f"training data folder '{folder}' has no *.safetensors (key 'latents') or *.pt files "
                         "with latents [T, 16, H, W]")
    shape = None
    for f in files:
        try:
            if f.suffix == ".pt":
                s = tuple(read_latents(f).shape)
            else:
                with safe_open(str(f), "pt") as fh:
                    if "latents" not in fh.keys():
                        raise ValueError(f"corpus file '{f}' has no 'latents' tensor (found {list(fh.keys())[:4]})")
                    s = tuple(fh.get_slice("latents").get_shape())
        except ValueError:
            raise
        except Exception as exc:
            raise ValueError(f"corpus file '{f}' is not readable ({exc})") from exc
        if len(s) != 4:
            raise ValueError(f"corpus file '{f}': 'latents' has shape {list(s)}; expected [T, C, H, W]")
        if shape is None:
            shape = s[1:]
        elif s[1:] != shape:
            raise ValueError(f"corpus file '{f}' has frames {list(s[1:])} but '{files[0].name}' has {list(shape)}; "
                             "all videos of a corpus must share channels and size")
    return files, shape


def read_latents(path: Path) -> torch.Tensor:
    """[T, C, H, W] from ``latents`` in a safetensors file, or a .pt tensor (the published toy datasets)."""
    if path.suffix != ".pt":
        return load_file(str(path))["latents"]
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and "latents" in obj:
        obj = obj["latents"]
    if not torch.is_tensor(obj):
        raise ValueError(f"corpus file '{path}' holds a {type(obj).__name__}; expected a latents tensor [T, C, H, W]")
    return obj


class ChunkDataset(torch.utils.data.Dataset):
    """Random windows of ``seq_len`` consecutive frames (short videos padded with their last frame)."""

    def __init__(self, files: list[Path], seq_len: int, chunks_per_video: int, seed: int):
        self.files, self.seq_len, self.per = files, seq_len, chunks_per_video
        self.rng = random.Random(seed)
        self.cache: dict[Path, torch.Tensor] = {}

    def __len__(self):
        return len(self.files) * self.per

    def __getitem__(self, i):
        f = self.files[i % len(self.files)]
        if f not in self.cache:
            self.cache[f] = read_latents(f).float()
        x = self.cache[f]
        start = self.rng.randint(0, max(0, x.shape[0] - self.seq_len))
        chunk = x[start:start + self.seq_len]
        if chunk.shape[0] < self.seq_len:
            chunk = torch.cat([chunk, chunk[-1:].expand(self.seq_len - chunk.shape[0], *chunk.shape[1:])])
        return chunk


# -------------------------------------------------------------------------------------- training
def _save(path: Path, model, optimizer, enc_cfg: EncoderConfig, cfg: TrainConfig, epoch: int, best: float,
          val: float) -> None:
    config = {**dataclasses.asdict(enc_cfg), **{k: v for k, v in dataclasses.asdict(cfg).items()
                                                 if k not in ("latent_dim", "hidden_dims")}}
    with atomic_path(path) as tmp:
        torch.save({"model": model.state_dict(), "config": config, "optimizer": optimizer.state_dict(),
                    "epoch": epoch, "best_val": best, "val_loss": val}, tmp)


def train(cfg: TrainConfig) -> TrainResult:
    from tqdm import tqdm
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    torch.manual_seed(cfg.seed + rank)

    files, (c, h, w) = scan_corpus(cfg.data)
    order = torch.randperm(len(files), generator=torch.Generator().manual_seed(cfg.seed)).tolist()
    n_val = max(1, int(len(files) * cfg.val_split)) if len(files) >= 2 and cfg.val_split > 0 else 0
    val_files = [files[i] for i in order[:n_val]]
    train_files = [files[i] for i in order[n_val:]]

    enc_cfg = EncoderConfig(in_channels=c, spatial_h=h, spatial_w=w, latent_dim=cfg.latent_dim,
                            hidden_dims=list(cfg.hidden_dims))
    model = RetrievalEncoder(enc_cfg).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    start_epoch, best = 0, math.inf
    if cfg.resume:
        ckpt = torch.load(cfg.resume, map_location="cpu", weights_only=True)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        start_epoch, best = int(ckpt["epoch"]), float(ckpt.get("best_val", math.inf))
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    train_ds = ChunkDataset(train_files, cfg.seq_len, cfg.chunks_per_video, cfg.seed + rank)
    sampler = torch.utils.data.DistributedSampler(train_ds, world, rank, seed=cfg.seed) if world > 1 else None
    loader = torch.utils.data.DataLoader(train_ds, batch_size=cfg.batch_size, shuffle=sampler is None,
                                         sampler=sampler, num_workers=cfg.num_workers,
                                         drop_last=len(train_ds) // world > cfg.batch_size)
    val_loader = torch.utils.data.DataLoader(ChunkDataset(val_files, cfg.seq_len, 1, cfg.seed), batch_size=cfg.batch_size) \
        if val_files else None
    use_amp = cfg.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    out = Path(cfg.out)
    last_path, best_path = out / "encoder_last.pt", out / "encoder_best.pt"
    history = []
    for epoch in range(start_epoch, cfg.epochs):
        if sampler is not None:
            sampler.set_epoch(epoch)
        net.train()
        sums, n = {"recon": 0.0, "delta": 0.0, "smooth": 0.0, "total": 0.0}, 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not (cfg.progress and rank == 0),
                   leave=False, file=sys.stderr)
        for chunk in bar:
            chunk = chunk.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                parts = losses(net, chunk, cfg)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(parts["total"]).backward()
            if cfg.grad_clip > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            for k in sums:
                sums[k] += parts[k].item()
            n += 1
            bar.set_postfix(recon=f"{parts['recon'].item():.4f}", delta=f"{parts['delta'].item():.4f}",
                            smooth=f"{parts['smooth'].item():.4f}")
        train_avg = {k: v / max(n, 1) for k, v in sums.items()}
        val_avg = evaluate(model, val_loader, cfg, device) if val_loader is not None else train_avg
        history.append({"epoch": epoch + 1, "train": train_avg, "val": val_avg})
        if rank == 0:
            print(f"epoch {epoch + 1}/{cfg.epochs}  train {train_avg['total']:.5f} (recon {train_avg['recon']:.5f} "
                  f"delta {train_avg['delta']:.4f} smooth {train_avg['smooth']:.4f})  val {val_avg['total']:.5f}",
                  file=sys.stderr)
            improved = val_avg["total"] < best
            best = min(best, val_avg["total"])
            _save(last_path, model, optimizer, enc_cfg, cfg, epoch + 1, best, val_avg["total"])
            if improved:
                _save(best_path, model, optimizer, enc_cfg, cfg, epoch + 1, best, val_avg["total"])
            if cfg.save_every and (epoch + 1) % cfg.save_every == 0:
                _save(out / f"encoder_epoch{epoch + 1:04d}.pt", model, optimizer, enc_cfg, cfg, epoch + 1, best,
                      val_avg["total"])
    if world > 1:
        torch.distributed.barrier()
    return TrainResult(len(history), history, best, last_path, best_path)


@torch.no_grad()
def evaluate(model, loader, cfg: TrainConfig, device) -> dict[str, float]:
    model.eval()
    sums, n = {"recon": 0.0, "delta": 0.0, "smooth": 0.0, "total": 0.0}, 0
    for chunk in loader:
        parts = losses(model, chunk.to(device), cfg)
        for k in sums:
            sums[k] += parts[k].item()
        n += 1
    return {k: v / max(n, 1) for k, v in sums.items()}


# ------------------------------------------------------------------------------------------- CLI
def config_from(args: argparse.Namespace) -> TrainConfig:
    """Defaults ← YAML file ← command-line options (those given)."""
    cfg = TrainConfig()
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    if args.config:
        import yaml
        data = yaml.safe_load(Path(args.config).read_text()) or {}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"config '{args.config}' has unknown keys {unknown}; known: {sorted(names)}")
        cfg = dataclasses.replace(cfg, **data)
    given = {k: v for k, v in vars(args).items() if k in names and v is not None}
    cfg = dataclasses.replace(cfg, **given)
    if not cfg.data:
        raise ValueError("train-encoder needs --data DIR (or 'data' in the YAML config)")
    return cfg


def add_cli(sub) -> None:
    p = sub.add_parser("train-encoder", help="train the retrieval encoder on clean latents")
    p.add_argument("--data", help="folder of <video>.safetensors with 'latents' [T,16,H,W]")
    p.add_argument("--out", help="output folder (encoder_last.pt, encoder_best.pt, encoder_epochNNNN.pt)")
    p.add_argument("--config", help="YAML with any of the options below (command line wins)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", dest="batch_size", type=int)
    p.add_argument("--seq-len", dest="seq_len", type=int)
    p.add_argument("--latent-dim", dest="latent_dim", type=int)
    p.add_argument("--hidden-dims", dest="hidden_dims", type=int, nargs="+")
    p.add_argument("--lr", type=float)
    p.add_argument("--val-split", dest="val_split", type=float)
    p.add_argument("--chunks-per-video", dest="chunks_per_video", type=int)
    p.add_argument("--save-every", dest="save_every", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--resume", help="checkpoint to continue from (model, optimizer, epoch)")
    p.add_argument("--device")
    p.add_argument("--num-workers", dest="num_workers", type=int)
    p.set_defaults(func=lambda a: (train(config_from(a)), 0)[1])
