"""What a retrieval-encoder training run is asked to do: ``TrainConfig``, built once (by the
``train-encoder`` command or by a caller) and passed down to the loop, the losses and the checkpoints."""
from __future__ import annotations

from dataclasses import dataclass, field


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


def check_config(cfg: TrainConfig) -> None:
    """ValueError naming the option when ``cfg`` cannot describe a run."""
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
