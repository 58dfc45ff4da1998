"""Training the retrieval encoder on a backbone's own clean latents (SPEC §7).

Loss = MSE reconstruction + λΔ·Window-Temporal-Delta + λs·smoothness over ``seq_len`` consecutive
frames. Both regularisers see the raw (not L2-normalised) embeddings, as in the published
``ae/train.py``; only the delta hinge is scale-free (cosine), the smoothness term is not.

Data: a folder with one file per video, ``*.safetensors`` holding ``latents`` [T, C, H, W] (written by
``python -m core build-corpus``) or the published ``*.pt`` tensors. Videos are split into train / val by
file exactly as the published code does (``random_split`` order with a generator seeded by ``seed``).

Checkpoints ``{"model", "config", "optimizer", "scaler", "epoch", "epochs_done", "best_val", ...}``
load with :func:`core.encoder.load_encoder` and in the published code. ``epoch`` keeps the published
meaning (0-based index of the last finished epoch, so resuming starts at ``epoch + 1``);
``epochs_done`` = epoch + 1. Runs on CPU, one GPU (AMP) or several under ``torchrun`` (DDP).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .distributed import barrier, current_rank, init_process_group
from .encoder import EncoderConfig, ResBlock, RetrievalEncoder
from .io import atomic_path

LOSS_NAMES = ("recon", "delta", "smooth", "total")


@dataclass
class TrainConfig:
    data: str = ""
    out: str = "encoder_runs"
    epochs: int = 400
    batch_size: int = 128           # per process under torchrun
    seq_len: int = 8
    latent_dim: int = 1024
    hidden_dims: list[int] = field(default_factory=lambda: [64, 128, 256])
    lr: float = 3e-4
    weight_decay: float = 1e-4
    grad_clip: float = 1.0          # 0 = no clipping
    delta_margin: float = 0.85      # m
    delta_weight: float = 1.0       # λΔ
    delta_window: int = 3           # w
    smooth_weight: float = 1.0      # λs
    val_split: float = 0.1          # fraction of videos held out (at least one when > 0)
    chunks_per_video: int = 1       # random windows drawn from each video per epoch (published: 1)
    save_every: int = 50            # epochs between encoder_epochNNNN.pt (0 = never)
    seed: int = 42
    device: str | None = None       # default cuda if available
    amp: bool = True                # autocast (bf16, else fp16 + GradScaler); CUDA only
    num_workers: int = 0
    resume: str | None = None
    progress: bool = True


@dataclass
class TrainResult:
    epochs_run: int                 # epochs run by this call (not counting resumed ones)
    history: list[dict]             # per epoch: {"epoch": n (1-based), "train": {...}, "val": {...}}
    best_val: float
    last_path: Path
    best_path: Path


# ---------------------------------------------------------------------------------------- losses
def delta_loss(emb: torch.Tensor, margin: float, window: int) -> torch.Tensor:
    """Window Temporal Delta on emb [B, S, D]: mean over k = 1..min(w, S−1) of
    mean_{b,t}(relu(cos(e_t, e_{t−k}) − m)). Zero when S < 2."""
    w = min(emb.shape[1] - 1, window)
    if w <= 0:
        return emb.new_zeros((), dtype=torch.float32)
    emb = emb.float()
    terms = [F.relu(F.cosine_similarity(emb[:, k:], emb[:, :-k], dim=-1) - margin).mean() for k in range(1, w + 1)]
    return torch.stack(terms).mean()


def smooth_loss(emb: torch.Tensor) -> torch.Tensor:
    """Trajectory smoothness on emb [B, S, D]: mean over b, t of sqrt(‖e_{t+1} − 2e_t + e_{t−1}‖² + 1e-8).
    Zero when S < 3."""
    if emb.shape[1] < 3:
        return emb.new_zeros((), dtype=torch.float32)
    accel = emb[:, 2:] - 2 * emb[:, 1:-1] + emb[:, :-2]
    return torch.sqrt(accel.float().pow(2).sum(-1) + 1e-8).mean()


def losses(model: nn.Module, chunk: torch.Tensor, cfg: TrainConfig) -> dict[str, torch.Tensor]:
    """chunk [B, S, C, H, W] → {"recon", "delta", "smooth", "total"} (scalars; delta and smooth weighted)."""
    b, s = chunk.shape[:2]
    flat = chunk.flatten(0, 1)
    recon, emb = model(flat)
    seq = emb.view(b, s, -1)
    out = {"recon": F.mse_loss(recon.float(), flat.float()),
           "delta": cfg.delta_weight * delta_loss(seq, cfg.delta_margin, cfg.delta_window),
           "smooth": cfg.smooth_weight * smooth_loss(seq)}
    out["total"] = out["recon"] + out["delta"] + out["smooth"]
    return out


def init_weights(model: nn.Module) -> None:
    """The published initialisation: Kaiming-normal convs, Xavier-normal linears, zero biases, and
    zero last convs in residual blocks (so each block starts as the identity)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        elif isinstance(m, nn.Linear):
            nn.init.xavier_normal_(m.weight)
        if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
            nn.init.zeros_(m.bias)
    for m in model.modules():
        if isinstance(m, ResBlock):
            nn.init.zeros_(m.block[-1].weight)
            nn.init.zeros_(m.block[-1].bias)


# ------------------------------------------------------------------------------------------ data
def _latents_shape(path: Path) -> tuple[int, ...]:
    if path.suffix == ".pt":
        return tuple(_load_pt(path).shape)
    from safetensors import safe_open
    with safe_open(str(path), "pt") as fh:
        if "latents" not in fh.keys():
            raise ValueError(f"corpus file '{path}' has no 'latents' tensor (found {sorted(fh.keys())[:4]}); "
                             "expected 'latents' [T, C, H, W] as written by `python -m core build-corpus`")
        return tuple(fh.get_slice("latents").get_shape())


def _load_pt(path: Path) -> torch.Tensor:
    """The published corpus format: a bare tensor [T, C, H, W] (or {"latents": tensor}), memory-mapped."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # legacy (non-zip) files cannot be memory-mapped; a real problem re-raises below
        obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and "latents" in obj:
        obj = obj["latents"]
    if not torch.is_tensor(obj):
        found = sorted(obj)[:4] if isinstance(obj, dict) else type(obj).__name__
        raise ValueError(f"corpus file '{path}' holds {found}; expected a latents tensor [T, C, H, W] "
                         "(or a dict with 'latents')")
    return obj


def read_window(path: Path, start: int, length: int) -> torch.Tensor:
    """Frames [start, start + length) of a corpus file as float32 [≤length, C, H, W]; reads only those."""
    if path.suffix == ".pt":
        return _load_pt(path)[start:start + length].float().clone()
    from safetensors import safe_open
    with safe_open(str(path), "pt") as fh:
        return fh.get_slice("latents")[start:start + length].float()


def scan_corpus(folder: str | Path) -> tuple[list[Path], tuple[int, int, int]]:
    """The corpus files (sorted by name) and their common frame shape (C, H, W).

    Raises FileNotFoundError / ValueError naming the folder or the offending file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"training data folder '{folder}' does not exist; build one with "
                                "`python -m core build-corpus`")
    files = sorted([*folder.glob("*.safetensors"), *folder.glob("*.pt")], key=lambda p: p.name)
    if not files:
        raise ValueError(f"training data folder '{folder}' has no *.safetensors (key 'latents') or *.pt files "
                         "with latents [T, 16, H, W]; build one with `python -m core build-corpus`")
    shape = None
    for f in files:
        try:
            s = _latents_shape(f)
        except ValueError:
            raise
        except Exception as exc:  # truncated, not a safetensors/torch file, unsafe pickle
            raise ValueError(f"corpus file '{f}' is not readable ({exc}); expected 'latents' [T, C, H, W]") from exc
        if len(s) != 4 or s[0] < 1:
            raise ValueError(f"corpus file '{f}': 'latents' has shape {list(s)}; expected [T, C, H, W] with "
                             "T ≥ 1 frames (one video per file, no batch dimension)")
        if shape is None:
            shape = s[1:]
        elif s[1:] != shape:
            raise ValueError(f"corpus file '{f}' has frames [C, H, W] = {list(s[1:])} but '{files[0].name}' has "
                             f"{list(shape)}; all videos of a corpus must share channels and latent size — "
                             "move the odd ones to another folder")
    return files, shape


def split_files(files: list[Path], val_split: float, seed: int) -> tuple[list[Path], list[Path]]:
    """(train, val) by file, as the published ``random_split(files, [n − n_val, n_val], seed)``:
    n_val = max(1, int(n · val_split)) when val_split > 0 and there are ≥ 2 files, else 0."""
    n = len(files)
    n_val = max(1, int(n * val_split)) if val_split > 0 and n >= 2 else 0
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return [files[i] for i in order[:n - n_val]], [files[i] for i in order[n - n_val:]]


class ChunkDataset(torch.utils.data.Dataset):
    """Windows of ``seq_len`` consecutive frames [S, C, H, W], one random window per video and item
    (short videos are padded with their last frame, as published).

    The window start depends only on (seed, epoch, item), so it is the same with any number of
    workers or processes and after a resume; call ``set_epoch`` to draw new windows.
    """

    def __init__(self, files: list[Path], seq_len: int, chunks_per_video: int = 1, seed: int = 0):
        self.files, self.seq_len, self.per, self.seed, self.epoch = files, seq_len, chunks_per_video, seed, 0
        self.frames: dict[int, int] = {}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self):
        return len(self.files) * self.per

    def __getitem__(self, i):
        f = self.files[i % len(self.files)]
        t = self.frames.get(i % len(self.files))
        if t is None:
            t = self.frames[i % len(self.files)] = _latents_shape(f)[0]
        start = random.Random(f"{self.seed}:{self.epoch}:{i}").randint(0, max(0, t - self.seq_len))
        chunk = read_window(f, start, self.seq_len)
        if chunk.shape[0] < self.seq_len:
            chunk = torch.cat([chunk, chunk[-1:].expand(self.seq_len - chunk.shape[0], *chunk.shape[1:])])
        return chunk


# -------------------------------------------------------------------------------------- training
def _check(cfg: TrainConfig) -> None:
    if not cfg.data:
        raise ValueError("train-encoder needs --data DIR (or 'data' in the YAML config)")
    for name in ("epochs", "batch_size", "seq_len", "latent_dim", "chunks_per_video"):
        if getattr(cfg, name) < (0 if name == "epochs" else 1):
            raise ValueError(f"train-encoder: {name} = {getattr(cfg, name)} must be positive")
    if not cfg.hidden_dims or min(cfg.hidden_dims) < 1:
        raise ValueError(f"train-encoder: hidden_dims = {cfg.hidden_dims}; expected positive channel counts, "
                         "e.g. 64 128 256")
    if not 0 <= cfg.val_split < 1:
        raise ValueError(f"train-encoder: val_split = {cfg.val_split}; expected a fraction in [0, 1)")


def _device(cfg: TrainConfig, rank) -> torch.device:
    device = rank.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"train-encoder: device '{cfg.device}' requested but CUDA is not available; "
                         "use --device cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def _read_resume(path: str, enc_cfg: EncoderConfig) -> dict:
    """The checkpoint to continue from; the architecture comes from it (its latent_dim / hidden_dims win)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"--resume checkpoint '{p}' does not exist; pass OUT/encoder_last.pt of an "
                                "earlier run")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"--resume checkpoint '{p}' could not be read as a torch checkpoint ({exc})") from exc
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise ValueError(f"--resume checkpoint '{p}' is not a retrieval-encoder checkpoint; expected a dict with "
                         "'model', 'config' (and 'optimizer', 'epoch' to continue training)")
    conf = dict(ckpt["config"])
    data = (enc_cfg.in_channels, enc_cfg.spatial_h, enc_cfg.spatial_w)
    saved = tuple(int(conf.get(k, d)) for k, d in zip(("in_channels", "spatial_h", "spatial_w"), data))
    if saved != data:
        raise ValueError(f"--resume checkpoint '{p}' was trained on frames [C, H, W] = {list(saved)} but the "
                         f"corpus has {list(data)}; resume on the same kind of data or start a new run")
    return ckpt


def _save(path: Path, model: nn.Module, optimizer, scaler, enc_cfg: EncoderConfig, cfg: TrainConfig, epochs_done: int,
          best: float, val: float, train_total: float) -> None:
    training = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(cfg).items()
                if k not in ("latent_dim", "hidden_dims")}
    config = {**training, **dataclasses.asdict(enc_cfg)}
    with atomic_path(path) as tmp:
        torch.save({"model": model.state_dict(), "config": config, "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict(), "epoch": epochs_done - 1, "epochs_done": epochs_done,
                    "best_val": best, "val_loss": val, "train_loss": train_total}, tmp)


def _mean(sums: dict[str, float], n: int, world: int, device) -> dict[str, float]:
    """Average per batch over every process."""
    if world > 1:
        t = torch.tensor([*(sums[k] for k in LOSS_NAMES), float(n)], dtype=torch.float64, device=device)
        torch.distributed.all_reduce(t)
        *vals, n = t.tolist()
        sums = dict(zip(LOSS_NAMES, vals))
    return {k: sums[k] / max(n, 1) for k in LOSS_NAMES}


def train(cfg: TrainConfig) -> TrainResult:
    """Train (or continue training) a retrieval encoder; writes OUT/encoder_last.pt, OUT/encoder_best.pt
    (lowest validation loss; training loss when there is no validation video) and
    OUT/encoder_epochNNNN.pt every ``save_every`` epochs. Under ``torchrun`` only rank 0 writes and prints."""
    from tqdm import tqdm
    _check(cfg)
    rank = current_rank()
    device = _device(cfg, rank)
    owns_group = rank.world > 1 and not (torch.distributed.is_available() and torch.distributed.is_initialized())
    init_process_group(rank, device)  # gloo on CPU, nccl on CUDA
    try:
        return _train(cfg, rank, device, tqdm)
    finally:
        if owns_group and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _train(cfg: TrainConfig, rank, device: torch.device, tqdm) -> TrainResult:
    say = (lambda msg: print(msg, file=sys.stderr)) if rank.is_main else (lambda msg: None)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)

    files, (c, h, w) = scan_corpus(cfg.data)
    train_files, val_files = split_files(files, cfg.val_split, cfg.seed)
    enc_cfg = EncoderConfig(in_channels=c, spatial_h=h, spatial_w=w, latent_dim=cfg.latent_dim,
                            hidden_dims=[int(d) for d in cfg.hidden_dims])
    ckpt = _read_resume(cfg.resume, enc_cfg) if cfg.resume else None
    if ckpt is not None:
        saved = dict(ckpt["config"])
        arch = dict(latent_dim=int(saved.get("latent_dim", enc_cfg.latent_dim)),
                    hidden_dims=[int(d) for d in saved.get("hidden_dims", enc_cfg.hidden_dims)])
        if (arch["latent_dim"], arch["hidden_dims"]) != (enc_cfg.latent_dim, enc_cfg.hidden_dims):
            say(f"resume: using the checkpoint's latent_dim {arch['latent_dim']} and hidden_dims "
                f"{arch['hidden_dims']}")
        enc_cfg = dataclasses.replace(enc_cfg, **arch)
        cfg = dataclasses.replace(cfg, **arch)

    model = RetrievalEncoder(enc_cfg)
    init_weights(model)
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    use_amp = cfg.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    start, best = 0, math.inf
    if ckpt is not None:
        try:
            model.load_state_dict(ckpt["model"])
        except RuntimeError as exc:
            raise ValueError(f"--resume checkpoint '{cfg.resume}' weights do not fit its config: {exc}") from exc
        if "optimizer" in ckpt:
            optimizer.load_state_dict(ckpt["optimizer"])
        else:
            say(f"resume: '{cfg.resume}' has no optimizer state; starting AdamW afresh from its weights")
        if scaler.is_enabled() and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        start = int(ckpt.get("epochs_done", int(ckpt.get("epoch", -1)) + 1))
        best = float(ckpt.get("best_val", ckpt.get("val_loss", math.inf)))
        say(f"resumed from '{cfg.resume}' after epoch {start}")
    del ckpt
    net = model
    if rank.world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

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
    say(f"train-encoder: {len(train_files)} train / {len(val_files)} val videos of [{c}, {h}, {w}] on {device}"
        f"{f' × {rank.world} processes' if rank.world > 1 else ''}; frames per chunk {cfg.seq_len}")

    out = Path(cfg.out)
    last_path, best_path = out / "encoder_last.pt", out / "encoder_best.pt"
    history: list[dict] = []
    for epoch in range(start, cfg.epochs):
        train_ds.set_epoch(epoch)
        shuffle_gen.manual_seed(cfg.seed + epoch)  # the same order after a resume
        if sampler is not None:
            sampler.set_epoch(epoch)
        net.train()
        sums, n = dict.fromkeys(LOSS_NAMES, 0.0), 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not (cfg.progress and rank.is_main),
                   leave=False, file=sys.stderr, dynamic_ncols=True)
        for chunk in bar:
            chunk = chunk.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                parts = losses(net, chunk, cfg)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(parts["total"]).backward()
            if cfg.grad_clip > 0:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            vals = {k: parts[k].item() for k in LOSS_NAMES}
            for k in LOSS_NAMES:
                sums[k] += vals[k]
            n += 1
            bar.set_postfix(recon=f"{vals['recon']:.4f}", delta=f"{vals['delta']:.4f}", smooth=f"{vals['smooth']:.4f}")
        train_avg = _mean(sums, n, rank.world, device)
        val_avg = evaluate(model, val_loader, cfg, device, use_amp, amp_dtype) if val_loader is not None else train_avg
        history.append({"epoch": epoch + 1, "train": train_avg, "val": val_avg})
        say(f"epoch {epoch + 1}/{cfg.epochs}  train {train_avg['total']:.5f} (recon {train_avg['recon']:.5f} "
            f"delta {train_avg['delta']:.4f} smooth {train_avg['smooth']:.4f})  "
            f"{'val' if val_loader is not None else 'no val videos; train'} {val_avg['total']:.5f}")
        improved = val_avg["total"] < best
        best = min(best, val_avg["total"])
        if rank.is_main:
            args = (model, optimizer, scaler, enc_cfg, cfg, epoch + 1, best, val_avg["total"], train_avg["total"])
            _save(last_path, *args)
            if improved:
                _save(best_path, *args)
            if cfg.save_every and (epoch + 1) % cfg.save_every == 0:
                _save(out / f"encoder_epoch{epoch + 1:04d}.pt", *args)
    barrier(rank)
    return TrainResult(len(history), history, best, last_path, best_path)


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


# ------------------------------------------------------------------------------------------- CLI
# Keys of the published ae/configs/*.yaml: renamed ones, and ones that do not change the result.
YAML_ALIASES = {"data_dir": "data", "log_dir": "out", "use_amp": "amp"}
YAML_IGNORED = {"config", "tag", "gpu", "log_every", "wandb_project", "wandb_run_name", "wandb_entity",
                "disable_wandb"}


def _coerce(name: str, value, default):
    """YAML 1.1 reads '3e-4' as a string: coerce to the field's type."""
    try:
        if name == "hidden_dims":
            return [int(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
        if isinstance(default, bool) or value is None:
            return value
        if isinstance(default, float):
            return float(value)
        if isinstance(default, int):
            return int(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"config key '{name}' = {value!r} is not a {type(default).__name__}") from exc
    return value


def config_from(args: argparse.Namespace) -> TrainConfig:
    """Defaults ← YAML file (``--config``) ← the command-line options that were given."""
    defaults = TrainConfig()
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    values: dict = {}
    if getattr(args, "config", None):
        import yaml
        path = Path(args.config)
        if not path.is_file():
            raise FileNotFoundError(f"config '{path}' does not exist")
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"config '{path}' must be a mapping of option: value, found {type(data).__name__}")
        data = {YAML_ALIASES.get(k, k): v for k, v in data.items() if k not in YAML_IGNORED}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"config '{path}' has unknown keys {unknown}; known: {sorted(names)}")
        values.update({k: _coerce(k, v, getattr(defaults, k)) for k, v in data.items()})
    values.update({k: v for k, v in vars(args).items() if k in names and v is not None})
    cfg = dataclasses.replace(defaults, **values)
    _check(cfg)
    return cfg


def cmd_train_encoder(args: argparse.Namespace) -> int:
    train(config_from(args))
    return 0


def add_cli(sub) -> None:
    """Register ``train-encoder`` on an argparse subparsers object."""
    p = sub.add_parser("train-encoder", help="train the retrieval encoder on clean latents",
                       description="Train the retrieval encoder (reconstruction + Window Temporal Delta + "
                                   "smoothness). Options not given come from --config, then the published defaults. "
                                   "Several processes: torchrun --nproc_per_node N -m core train-encoder ...")
    p.add_argument("--data", help="folder of <video>.safetensors with 'latents' [T,16,H,W] (or published .pt files)")
    p.add_argument("--out", help="output folder for encoder_last.pt, encoder_best.pt, encoder_epochNNNN.pt "
                                 "(default encoder_runs)")
    p.add_argument("--config", help="YAML with any of these options, underscores for dashes (the command line wins); "
                                    "the published ae/configs/*.yaml are accepted")
    p.add_argument("--epochs", type=int, help="total epochs, including resumed ones (default 400)")
    p.add_argument("--batch-size", dest="batch_size", type=int, help="chunks per step and process (default 128)")
    p.add_argument("--seq-len", dest="seq_len", type=int, help="consecutive frames per chunk (default 8)")
    p.add_argument("--latent-dim", dest="latent_dim", type=int, help="embedding size (default 1024)")
    p.add_argument("--hidden-dims", dest="hidden_dims", type=int, nargs="+", help="conv channels (default 64 128 256)")
    p.add_argument("--lr", type=float, help="AdamW learning rate (default 3e-4)")
    p.add_argument("--weight-decay", dest="weight_decay", type=float, help="AdamW weight decay (default 1e-4)")
    p.add_argument("--grad-clip", dest="grad_clip", type=float, help="max gradient norm, 0 = off (default 1.0)")
    p.add_argument("--delta-margin", dest="delta_margin", type=float, help="cosine margin m (default 0.85)")
    p.add_argument("--delta-weight", dest="delta_weight", type=float, help="λΔ (default 1.0)")
    p.add_argument("--delta-window", dest="delta_window", type=int, help="offsets 1..w (default 3)")
    p.add_argument("--smooth-weight", dest="smooth_weight", type=float, help="λs (default 1.0)")
    p.add_argument("--val-split", dest="val_split", type=float, help="fraction of videos held out (default 0.1)")
    p.add_argument("--chunks-per-video", dest="chunks_per_video", type=int,
                   help="random windows per video and epoch (default 1, as published)")
    p.add_argument("--save-every", dest="save_every", type=int, help="epochs between numbered checkpoints (default 50)")
    p.add_argument("--seed", type=int, help="split, initialisation and window seed (default 42)")
    p.add_argument("--resume", help="checkpoint to continue from (weights, optimizer, epoch count)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default cuda if available; cuda:LOCAL_RANK under torchrun)")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="mixed precision on CUDA (default on)")
    p.add_argument("--num-workers", dest="num_workers", type=int, help="data-loading processes (default 0)")
    p.set_defaults(func=cmd_train_encoder)
