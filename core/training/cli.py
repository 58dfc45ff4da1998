"""Training the retrieval encoder: the ``train-encoder`` command and its entry point :func:`train`.

The command builds one :class:`TrainConfig` (defaults ← ``--config`` YAML ← command line) and calls
``train(cfg)``; the training code never sees the argparse namespace. The pieces, one per module:
``corpus`` (the latent videos and their windows), ``train_losses`` (reconstruction + Window Temporal
Delta + smoothness), ``train_state`` (weights, optimizer, checkpoints, resume) and ``train_loop``
(epochs, validation). Runs on CPU, one GPU (AMP) or several under ``torchrun`` (DDP).
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from .distributed import Rank, current_rank, init_process_group
from .config import TrainConfig, check_config
from .loop import TrainResult, run_training

__all__ = ["TrainConfig", "TrainResult", "train", "config_from", "add_cli"]


def _device(cfg: TrainConfig, rank: Rank) -> torch.device:
    device = rank.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"train-encoder: device '{cfg.device}' requested but CUDA is not available; "
                         "use --device cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def train(cfg: TrainConfig) -> TrainResult:
    """Train (or continue training) a retrieval encoder; writes OUT/encoder_last.pt, OUT/encoder_best.pt
    (lowest validation loss; training loss when there is no validation video) and
    OUT/encoder_epochNNNN.pt every ``save_every`` epochs. Under ``torchrun`` only rank 0 writes and prints."""
    check_config(cfg)
    rank = current_rank()
    device = _device(cfg, rank)
    owns_group = rank.world > 1 and not (torch.distributed.is_available() and torch.distributed.is_initialized())
    init_process_group(rank, device)  # gloo on CPU, nccl on CUDA
    try:
        return run_training(cfg, rank, device)
    finally:
        if owns_group and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


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
    check_config(cfg)
    return cfg


def cmd_train_encoder(args: argparse.Namespace, progress=None) -> int:
    """The command: parse → one TrainConfig → train. ``progress`` (the CLI's block reporter) is unused:
    training reports per epoch on stderr itself."""
    train(config_from(args))
    return 0


def add_cli(sub) -> None:
    """Register ``train-encoder`` on an argparse subparsers object."""
    p = sub.add_parser("train-encoder", help="train the retrieval encoder on clean latents",
                       description="Train the retrieval encoder (reconstruction + Window Temporal Delta + "
                                   "smoothness). Options not given come from --config, then the published defaults. "
                                   "Several processes: torchrun --nproc_per_node N -m core train-encoder ...")
    p.add_argument("--data", help="folder of <video>.safetensors with 'latents' [T,C,H,W] (or published .pt files); "
                   "the encoder takes their channels (16 Wan2.1, 48 Wan2.2)")
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
