"""Runs that continue: a start read from a latents file, and ``.partial`` files that let a stopped run finish.

While a run makes blocks it keeps them in ``<out>.partial.safetensors``: ``latents`` [B, C, P, H, W] (model space,
the P frames done) and, in the metadata, the run's identity (backbone file, prompt embeddings, seed, latent size,
every setting that changes the result). The file is written atomically every ``every`` seconds (and at most 1/20
of the run's time goes to it), when the run stops (an error, Ctrl-C, SIGTERM), and once the whole video is made
(then with the run's logs, so that only the outputs remain to be written); it is never replaced by one holding
fewer frames, and the run deletes it only after every output is written. ``--resume`` (or the same command again)
reads it back as the start of the same run — refused, with the differences named, when the run asking is not the
same one.
"""
from __future__ import annotations

import hashlib
import json
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors import safe_open

from ..sampling.config import SamplingConfig
from ..sampling.loop import GenerationResult
from ..files.atomic import WriteError, save_tensors
from ..files.safe_reader import why_unreadable
from .signals import deferred

PARTIAL_SUFFIX = ".partial.safetensors"
PARTIAL_EVERY = 60.0        # seconds between two writes of the partial, unless set
_WRITE_SHARE = 20           # ... and at least 20× the time the last write took
_RESULT = ("retrieval_log", "timings", "pool_bytes_per_frame", "pool_peak_bytes", "pool_usage", "peak_memory_mb",
           "cache_bytes", "switches")      # what a finished run's partial keeps of its GenerationResult


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
    negative = None if torch.is_tensor(prompts) else prompts.negative
    if negative is not None:                  # a guided run's negative prompt (absent: the digest as before it existed)
        h.update(b"negative")
        h.update(negative.float().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def run_identity(backbone: str, embeds, seed: int, frames: int, latent_hw, cfg: SamplingConfig,
                 lora: str | None = None) -> dict:
    """What a resumed run must share with the stopped one (plain JSON values); ``embeds`` a prompt
    tensor or a PromptSchedule."""
    settings = asdict(cfg)
    for where in ("request", "family", "scaled"):       # where the values came from, not what they are
        settings.pop(where, None)
    if settings.get("guidance_scale") == 1.0:         # unguided, unset: identities as before these settings existed
        settings.pop("guidance_scale")
    if not settings["shots"].get("clean_recache", True):
        settings["shots"].pop("clean_recache")
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


class PartialKeeper(BlockCollector):
    """A BlockCollector that writes ``out``'s partial every ``every`` seconds (0: after every block) once it
    holds more than the ``given`` start frames; the last block of the ``frames`` waits for ``finished``."""

    def __init__(self, out: str | Path, identity: dict, given: int, frames: int | None, then=None,
                 every: float = PARTIAL_EVERY):
        super().__init__(then)
        self.out, self.path, self.identity = Path(out), partial_path(out), identity
        self.given, self.frames, self.every = given, frames, every
        self.result: GenerationResult | None = None
        self.kept = partial_frames(self.path)[0]      # frames the partial on disk holds
        self.failed = False                           # a write of the partial failed
        self._last, self._cost = time.monotonic(), 0.0

    def __call__(self, update) -> None:
        self.blocks.append(update.x0.float().cpu())
        if (self.frames is None or self.frames_done < self.frames) and self._due():
            self.save()
        if self.then is not None:
            self.then(update)

    def _due(self) -> bool:
        """``every`` seconds since the last write, and 20× what that write took (cadence 0: always)."""
        return not self.every or time.monotonic() - self._last >= max(self.every, _WRITE_SHARE * self._cost)

    def finished(self, result: GenerationResult) -> None:
        """The whole video is made (``result``): keep it, with its logs, before the outputs are written (a VAE
        decode that runs out of memory, a kill or a full disk then costs only the outputs)."""
        self.result = result
        self.save()

    def save(self) -> None:
        """Write the partial now if it gains frames (or the result); a signal waits until the file is complete."""
        latents = self.result.latents if self.result is not None else self.latents() if self.blocks else None
        if latents is None or latents.shape[2] <= self.given:
            return
        began = time.monotonic()
        with deferred():
            try:
                self.kept = write_partial(self.out, latents, self.identity, self.result)
            except OSError:
                self.failed = True
                raise
            self._last = time.monotonic()
            self._cost = self._last - began

    def stop(self, exc: BaseException, auto: bool) -> str:
        """The run stopped with ``exc``: keep what it made; → the sentence saying what is kept and how to finish
        ('' when it made nothing beyond its start)."""
        problem = ""
        if not self.failed:
            try:
                with deferred(reraise=False):
                    self.save()
            except OSError as e:
                problem = str(e)
        space = "free some space, then " if isinstance(exc, WriteError) or self.failed or problem else ""
        if not self.kept:
            if problem:
                return f"nothing could be kept ({problem})"
            return f"nothing was kept; {space}run the same command again" if self.failed else ""
        how = f"{space}run the same command again to finish it" + ("" if auto else f" (or add --resume {self.path})")
        if problem or self.failed:
            lost = f"the newest blocks could not be kept ({problem}); " if problem else ""
            return f"{lost}{self.path} still holds {self.kept} finished latent frames; {how}"
        return f"kept the {self.kept} finished latent frames in {self.path}; {how}"


@contextmanager
def keeping_partial(out: str | Path, identity: dict, given: int, then, report, auto: bool = False,
                    every: float = PARTIAL_EVERY, frames: int | None = None):
    """Yield a PartialKeeper to pass as ``generate``'s callback (and to tell the ``finished`` result). If the block
    stops once blocks beyond the ``given`` start frames exist, keep them in ``out``'s partial and say how to finish
    (``auto``: the same command picks it up; else also ``--resume``): an OSError (a full disk) becomes one line with
    that sentence, anything else is reported and goes on."""
    keeper = PartialKeeper(out, identity, given, frames, then, every)
    try:
        yield keeper
    except BaseException as exc:
        line = keeper.stop(exc, auto)
        if line and isinstance(exc, OSError):
            raise OSError(f"{exc}; {line}") from exc
        if line:
            report(line)
        raise


def partial_frames(path: str | Path) -> tuple[int, bool]:
    """(latent frames, holds the finished run's result) of the partial at ``path``; (0, False) when there is none
    or it cannot be read."""
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        return int(meta.get("frames_done", 0)), "result" in meta
    except Exception:
        return 0, False


def write_partial(out: str | Path, latents: torch.Tensor, identity: dict, result: GenerationResult | None = None
                  ) -> int:
    """``latents`` [B, C, P, H, W] (and a finished run's ``result``) into ``out``'s partial, unless the file there
    already holds more frames (or as many, and the result); → the frames it holds now."""
    path, n = partial_path(out), latents.shape[2]
    have, has_result = partial_frames(path)
    if have > n or (have == n and (has_result or result is None)):
        return have
    meta = {"llrag_partial": json.dumps(identity), "frames_done": str(n),
            "layout": f"[B,{latents.shape[1]},T,H,W] model-normalised"}
    if result is not None:
        meta["result"] = json.dumps({k: getattr(result, k) for k in _RESULT})
    save_tensors(path, {"latents": latents}, metadata=meta)
    return n


@dataclass
class Resumption:
    """Where a run picks up: ``start`` [B, C, P, H, W] (P frames to replay; None: from the beginning), and ``result``
    when the stopped run had made its whole video (only its outputs remain to be written)."""
    path: Path
    start: torch.Tensor | None
    result: GenerationResult | None = None

    @property
    def given(self) -> int:
        return self.start.shape[2] if self.start is not None else 0


def resumption(out: str | Path, identity: dict, frames: int, frames_per_block: int, resume: str | Path | None = None,
               fresh: str = "move it away") -> Resumption | None:
    """The partial this run continues: ``resume`` (asked for), else ``out``'s own partial if there is one. A partial
    of another run, or of a longer one, is refused naming it; ``fresh`` says how to start over instead."""
    own = partial_path(out)
    if resume is not None and own.exists() and Path(resume).resolve() != own.resolve():
        raise ValueError(f"'{own}' (this output's partial) exists besides --resume '{resume}'; resume from it "
                         f"(--resume {own}), or move it away")
    path = Path(resume) if resume is not None else own if own.exists() else None
    if path is None:
        return None
    latents, meta = _read(path, "--resume")
    if "llrag_partial" not in meta:
        raise ValueError(f"'{path}' is not a .partial file of this tool (no run record); to start from its "
                         "latents use --continue-from")
    stored, now = _flat(json.loads(meta["llrag_partial"])), _flat(identity)
    diffs = "; ".join(f"{k}: {_short(stored.get(k))} (partial) vs {_short(now.get(k))} (now)"
                      for k in sorted(set(stored) | set(now)) if stored.get(k) != now.get(k))
    n = latents.shape[2]
    if diffs and resume is not None:
        raise ValueError(f"'{path}' was written by a different run; {diffs}. Resume with the stopped run's options, "
                         "or start fresh (without --resume; for videos: --overwrite)")
    if diffs:
        raise ValueError(f"'{path}' holds the {n} finished latent frames of a different run ({diffs}); finish that "
                         f"run (its options plus --resume {path}), or {fresh} to start this one")
    if n > frames:
        raise ValueError(f"'{path}' holds {n} finished latent frames, more than the {frames} of this run: it is a "
                         f"longer run's; finish that one (its length plus --resume {path}), or {fresh} to start "
                         "this one")
    if n < frames:
        return Resumption(path, latents)
    if "result" in meta:
        return Resumption(path, latents, GenerationResult(latents, **json.loads(meta["result"])))
    keep = frames - frames_per_block     # every frame but no result: stopped between its last block and its end
    return Resumption(path, latents[:, :, :keep] if keep > 0 else None)


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
