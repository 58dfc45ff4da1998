"""The retrieval encoder's training loop: corpus → train/val windows → AdamW epochs → a checkpoint per epoch.

Each epoch draws new windows (``ChunkDataset.set_epoch``) in an order seeded by ``seed + epoch``, so a
resumed run sees what an uninterrupted one would. Validation uses fixed windows so epochs compare;
without validation videos the training loss stands in. Under ``torchrun`` the per-batch means are
averaged over every process, and only rank 0 writes and prints.
"""
from __future__ import annotations

import math
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from .corpus import ChunkDataset, scan_corpus, split_files
from .distributed import Rank, barrier
from ..retrieval.encoder import EncoderConfig
from .config import TrainConfig
from .losses import LOSS_NAMES, losses
from .state import TrainState, new_state, read_resume, restore_state, resume_architecture, save_checkpoint


@dataclass
class TrainResult:
    epochs_run: int                 # epochs run by this call (not counting resumed ones)
    history: list[dict]             # per epoch: {"epoch": n (1-based), "train": {...}, "val": {...}}
    best_val: float
    last_path: Path
    best_path: Path


@dataclass
class Batches:
    """The loaders of one run; ``set_epoch`` draws the epoch's windows and order."""
    dataset: ChunkDataset
    train: torch.utils.data.DataLoader
    sampler: torch.utils.data.DistributedSampler | None
    shuffle: torch.Generator
    seed: int
    val: torch.utils.data.DataLoader | None

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)
        self.shuffle.manual_seed(self.seed + epoch)  # the same order after a resume
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)


def make_batches(cfg: TrainConfig, train_files: list[Path], val_files: list[Path], rank: Rank,
                 device: torch.device) -> Batches:
    """Training chunks (shuffled; sharded across processes under torchrun) and validation chunks (fixed)."""
    train_ds = ChunkDataset(train_files, cfg.seq_len, cfg.chunks_per_video, cfg.seed)
    sampler = torch.utils.data.DistributedSampler(train_ds, rank.world, rank.rank, shuffle=True, seed=cfg.seed) \
        if rank.world > 1 else None
    per_rank = math.ceil(len(train_ds) / rank.world)
    shuffle_gen = torch.Generator().manual_seed(cfg.seed)
    loader = torch.utils.data.DataLoader(
        train_ds, batch_size=cfg.batch_size, shuffle=sampler is None, sampler=sampler, generator=shuffle_gen,
        num_workers=cfg.num_workers, pin_memory=device.type == "cuda",
        drop_last=per_rank >= cfg.batch_size)  # published drops the last partial batch; keep ≥ 1 batch
    val_loader = torch.utils.data.DataLoader(
        ChunkDataset(val_files, cfg.seq_len, 1, cfg.seed + 1), batch_size=cfg.batch_size,
        num_workers=cfg.num_workers, pin_memory=device.type == "cuda") if val_files else None
    return Batches(train_ds, loader, sampler, shuffle_gen, cfg.seed, val_loader)


def train_step(net: nn.Module, state: TrainState, chunk: torch.Tensor, cfg: TrainConfig) -> dict[str, float]:
    """One AdamW step on chunk [B, S, C, H, W] (on the device); → the loss terms before the step."""
    with torch.autocast(state.device.type, dtype=state.amp_dtype, enabled=state.use_amp):
        parts = losses(net, chunk, cfg)
    state.optimizer.zero_grad(set_to_none=True)
    state.scaler.scale(parts["total"]).backward()
    if cfg.grad_clip > 0:
        state.scaler.unscale_(state.optimizer)
        nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
    state.scaler.step(state.optimizer)
    state.scaler.update()
    return {k: parts[k].item() for k in LOSS_NAMES}


def train_epoch(net: nn.Module, state: TrainState, loader, cfg: TrainConfig, epoch: int, rank: Rank) -> dict[str, float]:
    """One pass over ``loader``; → the loss terms averaged per batch over every process."""
    from tqdm import tqdm  # only when training: registering the command needs no progress bars
    net.train()
    sums, n = dict.fromkeys(LOSS_NAMES, 0.0), 0
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not (cfg.progress and rank.is_main),
               leave=False, file=sys.stderr, dynamic_ncols=True)
    for chunk in bar:
        vals = train_step(net, state, chunk.to(state.device, non_blocking=True), cfg)
        for k in LOSS_NAMES:
            sums[k] += vals[k]
        n += 1
        bar.set_postfix(recon=f"{vals['recon']:.4f}", delta=f"{vals['delta']:.4f}", smooth=f"{vals['smooth']:.4f}")
    return _mean(sums, n, rank.world, state.device)


def _mean(sums: dict[str, float], n: int, world: int, device) -> dict[str, float]:
    """Average per batch over every process."""
    if world > 1:
        t = torch.tensor([*(sums[k] for k in LOSS_NAMES), float(n)], dtype=torch.float64, device=device)
        torch.distributed.all_reduce(t)
        *vals, n = t.tolist()
        sums = dict(zip(LOSS_NAMES, vals))
    return {k: sums[k] / max(n, 1) for k in LOSS_NAMES}


@torch.no_grad()
def evaluate(model: nn.Module, loader, cfg: TrainConfig, device, use_amp: bool = False,
             amp_dtype: torch.dtype = torch.bfloat16) -> dict[str, float]:
    """Mean loss terms over a loader of chunks [B, S, C, H, W] (fixed windows, so epochs compare)."""
    model.eval()
    sums, n = dict.fromkeys(LOSS_NAMES, 0.0), 0
    for chunk in loader:
        with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
            parts = losses(model, chunk.to(device, non_blocking=True), cfg)
        for k in LOSS_NAMES:
            sums[k] += parts[k].item()
        n += 1
    return {k: sums[k] / max(n, 1) for k in LOSS_NAMES}


def _save_epoch(out: Path, state: TrainState, cfg: TrainConfig, epochs_done: int, best: float, improved: bool,
                val: float, train_total: float) -> None:
    """encoder_last.pt always, encoder_best.pt when the loss improved, encoder_epochNNNN.pt every save_every."""
    args = (state, cfg, epochs_done, best, val, train_total)
    save_checkpoint(out / "encoder_last.pt", *args)
    if improved:
        save_checkpoint(out / "encoder_best.pt", *args)
    if cfg.save_every and epochs_done % cfg.save_every == 0:
        save_checkpoint(out / f"encoder_epoch{epochs_done:04d}.pt", *args)


def _report(epoch: int, cfg: TrainConfig, train_avg: dict, val_avg: dict, has_val: bool) -> str:
    return (f"epoch {epoch + 1}/{cfg.epochs}  train {train_avg['total']:.5f} (recon {train_avg['recon']:.5f} "
            f"delta {train_avg['delta']:.4f} smooth {train_avg['smooth']:.4f})  "
            f"{'val' if has_val else 'no val videos; train'} {val_avg['total']:.5f}")


def run_epochs(cfg: TrainConfig, state: TrainState, net: nn.Module, batches: Batches, rank: Rank, start: int,
               best: float, say: Callable[[str], None]) -> TrainResult:
    """Epochs ``start`` .. cfg.epochs − 1 (0-based), each followed by validation and checkpoints."""
    out = Path(cfg.out)
    history: list[dict] = []
    for epoch in range(start, cfg.epochs):
        batches.set_epoch(epoch)
        train_avg = train_epoch(net, state, batches.train, cfg, epoch, rank)
        val_avg = evaluate(state.model, batches.val, cfg, state.device, state.use_amp, state.amp_dtype) \
            if batches.val is not None else train_avg
        history.append({"epoch": epoch + 1, "train": train_avg, "val": val_avg})
        say(_report(epoch, cfg, train_avg, val_avg, batches.val is not None))
        improved = val_avg["total"] < best
        best = min(best, val_avg["total"])
        if rank.is_main:
            _save_epoch(out, state, cfg, epoch + 1, best, improved, val_avg["total"], train_avg["total"])
    barrier(rank)
    return TrainResult(len(history), history, best, out / "encoder_last.pt", out / "encoder_best.pt")


def run_training(cfg: TrainConfig, rank: Rank, device: torch.device) -> TrainResult:
    """A whole run on ``device`` (the process group, if any, is already up): seed, read the corpus, build or
    resume the state, train."""
    say = (lambda msg: print(msg, file=sys.stderr)) if rank.is_main else (lambda msg: None)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    files, (c, h, w) = scan_corpus(cfg.data)
    train_files, val_files = split_files(files, cfg.val_split, cfg.seed)
    enc_cfg = EncoderConfig(in_channels=c, spatial_h=h, spatial_w=w, latent_dim=cfg.latent_dim,
                            hidden_dims=[int(d) for d in cfg.hidden_dims])
    ckpt = read_resume(cfg.resume, enc_cfg) if cfg.resume else None
    if ckpt is not None:
        enc_cfg, cfg = resume_architecture(ckpt, enc_cfg, cfg, say)
    state = new_state(cfg, enc_cfg, device)
    start, best = restore_state(state, ckpt, cfg.resume, say) if ckpt is not None else (0, math.inf)
    del ckpt
    net = state.model
    if rank.world > 1:
        net = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    batches = make_batches(cfg, train_files, val_files, rank, device)
    say(f"train-encoder: {len(train_files)} train / {len(val_files)} val videos of [{c}, {h}, {w}] on {device}"
        f"{f' × {rank.world} processes' if rank.world > 1 else ''}; frames per chunk {cfg.seq_len}")
    return run_epochs(cfg, state, net, batches, rank, start, best, say)
