"""The AR Block Sampler's start (a LATENT the video begins with) and its continue memo.

Start: VAE Encode (the backbone's VAE: Wan2.1, or Wan2.2 for LongLive 2.0) of an image or a clip, or an
AR Block Sampler's output; checked against the run with errors that name the widget or file to change. The sampler's own output carries its
model-space latents beside the raw ones (``ModelSpace``) because raw → model space is not bit-exact
in float32: a chained sampler replays exactly what was generated.

Continue memo: ComfyUI's Cancel raises out of the sampler, so a cancelled run returns nothing. The
finished blocks of the last run (one entry) are kept under the run's identity — everything that
changes the result except the length — and the next run with that identity starts from them: a
cancelled run continues where it stopped, a finished one is extended by replaying its frames instead
of regenerating them. Exact under the per-block noise contract; under the reference contract the
identity includes the length (its noise depends on it), so only the same length continues.
"""
from __future__ import annotations

import hashlib
import json
import weakref
from dataclasses import dataclass

import torch

from ..core.sampling.config import SamplingConfig
from ..core.latents.format import LatentFormat, format_for_channels, to_model_space, to_raw_space
from ..core.app.resume import run_identity


@dataclass(frozen=True)
class ModelSpace:
    """Stored in our LATENT under ``MODEL_SPACE_KEY``: the model-space latents of exactly ``raw``."""
    raw: torch.Tensor          # the LATENT's "samples" tensor (checked by identity)
    model: torch.Tensor        # [B, C, T, H, W] model-normalised


MODEL_SPACE_KEY = "llrag_model_space"


@dataclass(frozen=True)
class StartLatent:
    raw: torch.Tensor          # [B, C, P, H, W] raw VAE space, float32 CPU: copied back into the output
    model: torch.Tensor        # the same frames in model space: the prefix

    @property
    def frames(self) -> int:
        return self.raw.shape[2]


def start_latents(start, fmt: LatentFormat) -> StartLatent:
    """The sampler's 'start' LATENT, checked against the backbone's latent format ``fmt`` → raw and model
    space (its size: ``check_start_size``)."""
    encode = f"VAE Encode with {fmt.vae} ({fmt.vae_file})"
    samples = start.get("samples") if isinstance(start, dict) else None
    if not torch.is_tensor(samples):
        raise ValueError(f"start must be a LATENT: {encode} of an image or a clip, or an AR Block Sampler's latent "
                         "output")
    if samples.dim() != 5:
        raise ValueError(f"start is a latent of shape {list(samples.shape)}, not a video latent [B, {fmt.channels}, "
                         f"frames, H, W]: encode the image or clip with {encode}")
    c = samples.shape[1]
    if c != fmt.channels:
        theirs = format_for_channels(c)
        made = f"{theirs.name} latents, from {theirs.vae}" if theirs is not None else "another model's VAE"
        raise ValueError(f"start has {c} channels ({made}); this backbone takes {fmt.channels}-channel {fmt.name} "
                         f"latents: load {fmt.vae_file} in the VAELoader that feeds VAE Encode")
    carried = start.get(MODEL_SPACE_KEY)
    raw = samples.detach().to(device="cpu", dtype=torch.float32)
    if isinstance(carried, ModelSpace) and carried.raw is samples:
        return StartLatent(raw, carried.model)
    return StartLatent(raw, to_model_space(raw))


def run_key(backbone, encoder_name: str | None, prompts, seed: int, frames: int, latent_hw, cfg: SamplingConfig,
            start: StartLatent | None) -> str:
    """Everything that changes the result except the length (core/app/resume.py ``run_identity``; under the
    reference contract the length too), plus the start's values, the LoRA strength, dtype and device."""
    info = backbone.backbone.info
    ident = run_identity(info.path, prompts, seed, frames, latent_hw, cfg, info.lora_path)
    ident.update(lora_strength=info.lora_strength, dtype=str(backbone.dtype), device=str(backbone.device),
                 encoder=encoder_name, start=_digest(start.raw) if start is not None else None)
    return json.dumps(ident, sort_keys=True)


def _digest(t: torch.Tensor) -> str:
    h = hashlib.sha256(str(list(t.shape)).encode())
    h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@dataclass
class Continued:
    latents: torch.Tensor      # [B, C, M, H, W] model space: the prefix this run starts from
    stopped: bool              # the run it comes from stopped (cancelled or failed) before its end


class ContinueMemo:
    """The finished blocks of the last run (one entry), for the next run with the same key."""

    def __init__(self):
        self.clear()

    def clear(self) -> None:
        self.key, self.refs, self.latents, self.stopped = None, (), None, False

    def _holds(self, key: str, models) -> bool:
        return (self.latents is not None and key == self.key and len(models) == len(self.refs)
                and all((r() if r is not None else None) is m for r, m in zip(self.refs, models)))

    def prefix(self, key: str, models, frames: int, given: int, frames_per_block: int) -> Continued | None:
        """The kept frames to start from (at most ``frames`` − one block, so the run still generates its
        last block; block-aligned since the kept run has the same start), or None."""
        if not self._holds(key, models):
            return None
        use = min(self.latents.shape[2], frames - frames_per_block)
        if use <= given:
            return None
        return Continued(self.latents[:, :, :use], self.stopped and use == self.latents.shape[2])

    def keep(self, key: str, models, latents: torch.Tensor | None, given: int, stopped: bool) -> None:
        """After a run (finished or stopped): its finished frames [B, C, M, H, W] (model space), when they
        hold more than the start and, for the same run, more than is kept already."""
        done = latents.shape[2] if latents is not None else 0
        if done <= given or (self._holds(key, models) and done <= self.latents.shape[2]):
            return
        self.clear()                      # the old entry goes first: one entry in memory at a time
        self.key, self.stopped, self.latents = key, stopped, latents
        self.refs = tuple(weakref.ref(m) if m is not None else None for m in models)


MEMO = ContinueMemo()


def output_latent(model_space: torch.Tensor, start: StartLatent | None) -> dict:
    """The sampler's LATENT: raw [B, C, T, H, W] (ComfyUI's Wan21 / Wan22 layout and normalisation) with the
    start's raw frames copied back as given, and the model-space latents for a chained sampler."""
    raw = to_raw_space(model_space)
    if start is not None:
        raw[:, :, :start.frames] = start.raw
    return {"samples": raw, MODEL_SPACE_KEY: ModelSpace(raw, model_space)}


def continued_line(continued: Continued | None, fmt: LatentFormat) -> list[str]:
    """The info line of a run that continued the memo's last run (none otherwise)."""
    if continued is None:
        return []
    m = continued.latents.shape[2]
    what = "the run that stopped (cancelled or failed)" if continued.stopped else "the previous run"
    return [f"continued from {what} of this graph: its first {m} latent frames "
            f"({fmt.latent_to_video_frames(m)} video frames) replayed, not regenerated"]
