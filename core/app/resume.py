"""Runs that continue: a start read from a latents file, and ``.partial`` files that let a stopped run finish.

A run that stops (Ctrl-C, an exception, out of memory) after finishing some blocks writes them to
``<out>.partial.safetensors``: ``latents`` [B, 16, P, H, W] (model space, the P frames done) and, in
the metadata, the run's identity (backbone file, prompt embeddings, seed, latent size, every setting
that changes the result). ``--resume`` reads it back as the start of the same run — refused, with
the differences named, when the run asking is not the same one — and the finished run removes it.
"""
from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import safe_open

from ..sampling.config import SamplingConfig
from ..files.atomic import save_tensors
from ..files.safe_reader import why_unreadable

PARTIAL_SUFFIX = ".partial.safetensors"


def partial_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name.removesuffix(".safetensors") + PARTIAL_SUFFIX)


def _prompt_digest(prompts) -> str:
    """SHA-256 (16 hex digits) of the prompt embeddings: a tensor, or a schedule's segments and starts."""
    h = hashlib.sha256()
    for seg in ([None] if torch.is_tensor(prompts) else prompts.segments):
        start, emb = (0, prompts) if seg is None else (seg.start, seg.embeds)
        h.update(str(start).encode())
        h.update(emb.float().contiguous().numpy().tobytes())
        if seg is not None and seg.cut:       # a cut and its first block's prompt change the video
            h.update(b"cut")
            if seg.cut_embeds is not None:
                h.update(seg.cut_embeds.float().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def run_identity(backbone: str, embeds, seed: int, frames: int, latent_hw, cfg: SamplingConfig,
                 lora: str | None = None) -> dict:
    """What a resumed run must share with the stopped one (plain JSON values); ``embeds`` a prompt
    tensor or a PromptSchedule."""
    settings = asdict(cfg)
    for where in ("request", "family", "scaled"):       # where the values came from, not what they are
        settings.pop(where, None)
    if settings.get("retrieval"):
        pool = settings["retrieval"].pop("pool")
        settings["retrieval"]["pool_storage"] = pool["storage"]      # where the pool lives changes nothing
        settings["retrieval"].pop("prefetch", None)
    ident = {"backbone": str(Path(backbone).resolve()), "lora": str(Path(lora).resolve()) if lora else None,
             "prompt_embeds_sha256": _prompt_digest(embeds),
             "seed": int(seed), "latent_hw": list(latent_hw), "settings": settings}
    if cfg.noise == "reference":
        ident["frames"] = int(frames)       # the reference contract's noise depends on the video's length
    return json.loads(json.dumps(ident))


class BlockCollector:
    """A ``generate`` callback that keeps every finished block's x0 (and calls ``then``)."""

    def __init__(self, then=None):
        self.then, self.blocks = then, []

    def __call__(self, update) -> None:
        self.blocks.append(update.x0.float().cpu())
        if self.then is not None:
            self.then(update)

    @property
    def frames_done(self) -> int:
        return sum(b.shape[1] for b in self.blocks)

    def latents(self) -> torch.Tensor:
        """[B, C, P, H, W] of the finished blocks."""
        return torch.cat(self.blocks, 1).permute(0, 2, 1, 3, 4).contiguous()


@contextmanager
def keeping_partial(out: str | Path, identity: dict, given: int, then, report, auto: bool = False):
    """Yield a BlockCollector to pass as ``generate``'s callback; if the run stops after finishing blocks
    beyond the ``given`` start frames, write them to ``out``'s .partial file and say how to finish
    (``auto``: the same command picks it up by itself)."""
    collector = BlockCollector(then)
    try:
        yield collector
    except BaseException:
        if collector.frames_done > given:
            kept = write_partial(out, collector, identity)
            how = "run the same command again to finish it" if auto else f"finish with the same command plus --resume {kept}"
            report(f"kept the {collector.frames_done} finished latent frames in {kept}; {how}")
        raise


def write_partial(out: str | Path, collector: BlockCollector, identity: dict) -> Path:
    path = partial_path(out)
    save_tensors(path, {"latents": collector.latents()},
                 metadata={"llrag_partial": json.dumps(identity), "frames_done": str(collector.frames_done),
                           "layout": "[B,16,T,H,W] model-normalised"})
    return path


def read_partial(path: str | Path, identity: dict) -> torch.Tensor:
    """The finished frames of a stopped run, after checking it is this run; [B, C, P, H, W]."""
    latents, meta = _read(path, "--resume")
    if "llrag_partial" not in meta:
        raise ValueError(f"'{path}' is not a .partial file of this tool (no run record); to start from its "
                         "latents use --continue-from")
    stored, now = _flat(json.loads(meta["llrag_partial"])), _flat(identity)
    diffs = [f"{k}: {_short(stored.get(k))} (partial) vs {_short(now.get(k))} (now)"
             for k in sorted(set(stored) | set(now)) if stored.get(k) != now.get(k)]
    if diffs:
        raise ValueError(f"'{path}' was written by a different run; {'; '.join(diffs)}. Resume with the "
                         "stopped run's options, or start fresh (without --resume; for videos: --overwrite)")
    return latents


def read_start(path: str | Path) -> torch.Tensor:
    """Start latents from a file: ``latents`` [B, 16, T, H, W] (this tool's output) or [T, 16, H, W]
    (a corpus file), or the file's only tensor in the first layout."""
    latents, meta = _read(path, "--continue-from")
    if meta.get("layout", "").startswith("[T,16,H,W]"):
        latents = latents.permute(1, 0, 2, 3).unsqueeze(0)
    if latents.dim() != 5:
        raise ValueError(f"'{path}' holds latents of shape {list(latents.shape)}; expected [B, 16, T, H, W]")
    return latents


def _read(path, option: str) -> tuple[torch.Tensor, dict]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{option} '{path}' does not exist")
    try:
        with safe_open(str(path), "pt") as f:
            keys, meta = list(f.keys()), f.metadata() or {}
            key = "latents" if "latents" in keys else (keys[0] if len(keys) == 1 else None)
            if key is None:
                raise ValueError(f"{option} '{path}' holds {keys} and no 'latents'; save the latents under 'latents'")
            return f.get_tensor(key).float(), meta
    except ValueError:
        raise
    except Exception as exc:
        raise ValueError(f"{option} '{path}' is not a readable .safetensors file: {why_unreadable(exc)}") from exc


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def _short(value) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."
