"""The retrieval encoder's training state — weights, AdamW, the AMP scaler — built fresh, resumed from a
checkpoint, or saved as one.

Checkpoints ``{"model", "config", "optimizer", "scaler", "epoch", "epochs_done", "best_val", "val_loss",
"train_loss"}`` load with :func:`core.retrieval.encoder.load_encoder` and in the published code (its
``config`` holds every ``EncoderConfig`` field). ``epoch`` keeps the published meaning (0-based index
of the last finished epoch, so resuming starts at ``epoch + 1``); ``epochs_done`` = epoch + 1.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from ..files.safe_reader import read_weights, why_unreadable
from ..retrieval.encoder import EncoderConfig, ResBlock, RetrievalEncoder
from ..files.atomic import atomic_path
from .config import TrainConfig


@dataclass
class TrainState:
    model: RetrievalEncoder         # unwrapped (never the DDP wrapper): what checkpoints hold
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    enc_cfg: EncoderConfig
    device: torch.device
    use_amp: bool                   # autocast on; CUDA only
    amp_dtype: torch.dtype


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


def new_state(cfg: TrainConfig, enc_cfg: EncoderConfig, device: torch.device) -> TrainState:
    """A freshly initialised encoder on ``device`` with its optimizer; mixed precision (bf16, else fp16 with
    a GradScaler) when ``cfg.amp`` and the device is CUDA."""
    model = RetrievalEncoder(enc_cfg)
    init_weights(model)
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    use_amp = cfg.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    return TrainState(model, optimizer, scaler, enc_cfg, device, use_amp, amp_dtype)


def read_resume(path: str, enc_cfg: EncoderConfig) -> dict:
    """The checkpoint to continue from; the architecture comes from it (its latent_dim / hidden_dims win)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"--resume checkpoint '{p}' does not exist; pass OUT/encoder_last.pt of an "
                                "earlier run")
    ckpt = read_weights(p, "--resume checkpoint").content
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


def resume_architecture(ckpt: dict, enc_cfg: EncoderConfig, cfg: TrainConfig,
                        say: Callable[[str], None]) -> tuple[EncoderConfig, TrainConfig]:
    """(enc_cfg, cfg) with the checkpoint's latent_dim and hidden_dims, which win over the requested ones."""
    saved = dict(ckpt["config"])
    arch = dict(latent_dim=int(saved.get("latent_dim", enc_cfg.latent_dim)),
                hidden_dims=[int(d) for d in saved.get("hidden_dims", enc_cfg.hidden_dims)])
    if (arch["latent_dim"], arch["hidden_dims"]) != (enc_cfg.latent_dim, enc_cfg.hidden_dims):
        say(f"resume: using the checkpoint's latent_dim {arch['latent_dim']} and hidden_dims "
            f"{arch['hidden_dims']}")
    return dataclasses.replace(enc_cfg, **arch), dataclasses.replace(cfg, **arch)


def restore_state(state: TrainState, ckpt: dict, path: str, say: Callable[[str], None]) -> tuple[int, float]:
    """Load a checkpoint read by ``read_resume`` into ``state``; → (epochs already done, best validation loss)."""
    try:
        state.model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise ValueError(f"--resume checkpoint '{path}' weights do not fit its config: "
                         f"{why_unreadable(exc)}; resume from a checkpoint of this run or start afresh") from exc
    if "optimizer" in ckpt:
        state.optimizer.load_state_dict(ckpt["optimizer"])
    else:
        say(f"resume: '{path}' has no optimizer state; starting AdamW afresh from its weights")
    if state.scaler.is_enabled() and ckpt.get("scaler"):
        state.scaler.load_state_dict(ckpt["scaler"])
    start = int(ckpt.get("epochs_done", int(ckpt.get("epoch", -1)) + 1))
    best = float(ckpt.get("best_val", ckpt.get("val_loss", math.inf)))
    say(f"resumed from '{path}' after epoch {start}")
    return start, best


def save_checkpoint(path: Path, state: TrainState, cfg: TrainConfig, epochs_done: int, best: float, val: float,
                    train_total: float) -> None:
    """Write ``path`` atomically; ``config`` = the training options (architecture excluded) + ``EncoderConfig``."""
    training = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(cfg).items()
                if k not in ("latent_dim", "hidden_dims")}
    config = {**training, **dataclasses.asdict(state.enc_cfg)}
    with atomic_path(path) as tmp:
        torch.save({"model": state.model.state_dict(), "config": config, "optimizer": state.optimizer.state_dict(),
                    "scaler": state.scaler.state_dict(), "epoch": epochs_done - 1, "epochs_done": epochs_done,
                    "best_val": best, "val_loss": val, "train_loss": train_total}, tmp)
