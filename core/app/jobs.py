"""The headless jobs behind ``python -m core``: they take config objects, never an argparse namespace.

``generate_latents``  prompt embeddings → latents (+ retrieval log, timings)
``text_to_video``     prompts → one mp4 per prompt and strategy (+ retrieval log and map)
``story_to_video``    a prompt schedule → one mp4 per strategy (+ retrieval log and map with the switches)

``build_corpus``      a frozen backbone's clean latents: the retrieval encoder's training data

The prompt-list jobs shard their list across ``torchrun`` processes and skip outputs that already
exist, so an interrupted or repeated run resumes where it stopped. Every output is written
atomically: an interrupted job leaves nothing half-written. Before any work a job refuses outputs that are
its inputs or each other and locks its outputs (core/app/outputs.py); while it works, the finished blocks of
each video are kept in a partial file until every output of that video is written (core/app/resume.py).
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

import torch

from ..sampling.config import DTYPES, SamplingConfig, default_dtype
from ..training.distributed import Rank, barrier, current_rank, init_process_group, shard
from ..sampling.prompt_files import load_prompt_embeds, load_prompt_schedule
from ..files.atomic import save_json, save_tensors
from ..latents.format import LatentFormat
from ..sampling.loop import BlockUpdate, GenerationResult, generate
from ..sampling.prompts import TimedPrompt, as_schedule, cut_texts, schedule_from_timed
from .prompt_texts import encode_prompts, output_stem, read_prompts  # noqa: F401  (read_prompts: the CLI's)
from .starts import StartFiles
from .plan import choose_memory
from ..model.block_swap import swap_blocks, swapped_blocks
from ..sampling.memory import MemorySettings
from .outputs import check_distinct, claiming
from .resume import PARTIAL_EVERY, keeping_partial, partial_path, read_start, resumption, run_identity


@dataclass(frozen=True)
class ModelSpec:
    """Which weights to load: the backbone (+ LoRA) and the retrieval encoder (``avg_pool`` = no file)."""
    backbone: str
    lora: str | None = None
    lora_strength: float = 1.0
    num_heads: int | None = None
    use_ema: bool = True
    encoder: str = "avg_pool"
    device: str | None = None        # None: cuda if present (cuda:LOCAL_RANK under torchrun), else cpu
    dtype: str | None = None         # None: default_dtype(device)
    compile: bool = False            # torch.compile each layer's cache-free halves (WanTransformer.compile_blocks)
    memory: MemorySettings = MemorySettings()    # context buffers, KV cache, block swap (core/sampling/memory.py)
    weights: str = "auto"            # the weights on the device: native (compute dtype), fp8, auto (core/formats)

    def __post_init__(self):
        if self.dtype is not None and self.dtype not in DTYPES:
            raise ValueError(f"dtype '{self.dtype}' is unknown; use one of {sorted(DTYPES)}")

    def resolve(self, rank: Rank) -> tuple[torch.device, torch.dtype]:
        device = rank.device(self.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda was asked for but torch sees no CUDA device; use --device cpu")
        return device, DTYPES[self.dtype] if self.dtype else default_dtype(device)


@dataclass
class Progress:
    """What has been done so far (read by the CLI when the user interrupts)."""
    blocks_done: int = 0
    current: str = ""
    finished: list[str] = field(default_factory=list)
    report: Callable[[str], None] = lambda line: print(line, file=sys.stderr)

    def on_block(self, update: BlockUpdate) -> None:
        self.blocks_done = update.block + 1
        where = f"{self.current}: " if self.current else ""
        self.report(f"{where}block {update.block + 1}/{update.num_blocks} {update.timing['total_s']:.2f}s")


def load_models(spec: ModelSpec, device: torch.device, dtype: torch.dtype, need_encoder: bool):
    """(backbone, encoder or None)."""
    from ..formats import load_backbone
    from ..retrieval.encoder import load_encoder
    swap = spec.memory.block_swap if spec.memory.block_swap != "auto" else 0
    backbone = load_backbone(spec.backbone, lora=spec.lora, lora_strength=spec.lora_strength,
                             num_heads=spec.num_heads, dtype=dtype, device="cpu" if swap else device,
                             use_ema=spec.use_ema, weights=spec.weights)
    if swap:                                    # the swapped blocks never all land on the device
        swap_blocks(backbone.model, swap, device)
    if spec.compile:
        backbone.model.compile_blocks()
    encoder = load_encoder(spec.encoder, device=device) if need_encoder and spec.encoder != "avg_pool" else None
    return backbone, encoder


# ------------------------------------------------------------------------------------ latents
@dataclass(frozen=True)
class LatentJob:
    embeds: str
    frames: int
    latent_hw: tuple[int, int]
    seed: int
    out: str
    log: str | None = None
    timings: str | None = None
    start: str | None = None       # --continue-from: latents the video begins with
    resume: str | None = None      # --resume: a stopped run's .partial file
    partial_every: float = PARTIAL_EVERY   # seconds between two writes of the partial (0: after every block)


def _inputs(spec: ModelSpec, **files) -> dict:
    """The files a run reads, by option: none of its outputs may be one of them."""
    return {"--backbone": spec.backbone, "--lora": spec.lora,
            "--encoder": None if spec.encoder == "avg_pool" else spec.encoder, **files}


def _pool_dirs(configs) -> list:
    """The disk pool's folder of every retrieval run (None: the system's temporary folder)."""
    return [c.retrieval.pool.directory for c in configs if c.retrieval is not None]


def generate_latents(spec: ModelSpec, cfg: SamplingConfig, job: LatentJob, progress: Progress) -> int:
    """``generate --embeds``: latents [B, C, T, H, W] (model space) in ``job.out``. The file may hold a
    prompt schedule (core/files/atomic.py ``load_prompt_schedule``). The finished blocks are kept in
    ``<out>.partial.safetensors`` until every output is written; the same command (or ``--resume``) picks it up
    (see core/app/resume.py)."""
    check_distinct({"--out": job.out, "--log": job.log, "--timings": job.timings},
                   _inputs(spec, **{"--embeds": job.embeds, "--continue-from": job.start, "--resume": job.resume}))
    device, dtype = spec.resolve(current_rank())
    identity = run_identity(spec.backbone, load_prompt_schedule(job.embeds), job.seed, job.frames, job.latent_hw,
                            cfg, spec.lora)
    outputs = {Path(p): what for what, p in (("--out", job.out), ("--log", job.log), ("--timings", job.timings)) if p}
    with claiming(outputs, progress.report, _pool_dirs([cfg])):
        resumed = resumption(job.out, identity, job.frames, cfg.frames_per_block, job.resume)
        start = resumed.start if resumed and resumed.start is not None else read_start(job.start) if job.start else None
        result = resumed.result if resumed else None
        if resumed:
            progress.report(f"resuming from the {resumed.given} finished latent frames in {resumed.path}"
                            if result is None else f"{resumed.path} holds the whole run; writing its outputs")
        if start is not None and result is None:
            cfg.check_frames(job.frames, start.shape[2])
        given = start.shape[2] if start is not None else 0
        with keeping_partial(job.out, identity, given, progress.on_block, progress.report, every=job.partial_every,
                             frames=job.frames) as keeper:
            if result is None:
                result = _generate_latents(spec, cfg, job, device, dtype, start, keeper, progress)
            keeper.finished(result)
            _save_latents(job, cfg, result)
        partial_path(job.out).unlink(missing_ok=True)
    progress.report(f"wrote {job.out}")
    return 0


def _generate_latents(spec: ModelSpec, cfg: SamplingConfig, job: LatentJob, device, dtype, start, callback,
                      progress: Progress) -> GenerationResult:
    backbone, encoder = load_models(spec, device, dtype, need_encoder=cfg.retrieval is not None)
    embeds = load_prompt_schedule(job.embeds, backbone.config.text_dim)
    progress.report(f"backbone: {backbone.info.preset} ({backbone.info.format}), {backbone.config.num_layers} "
                    f"layers, dim {backbone.config.dim}; strategy {cfg.strategy}, encoder "
                    f"{spec.encoder if cfg.retrieval is not None else '-'}"
                    + (f"; starting from {start.shape[2]} given frames" if start is not None else ""))
    memory = run_memory(spec, backbone.model, cfg, job.latent_hw, as_schedule(embeds).batch, device, dtype,
                        progress.report)
    result = generate(backbone.model, embeds, job.frames, job.latent_hw, job.seed, cfg, encoder=encoder,
                      callback=callback, timings=job.timings is not None, start=start, memory=memory)
    for line in result.notes:
        progress.report(line)
    return result


def run_memory(spec: ModelSpec, model, cfg: SamplingConfig, latent_hw, batch: int, device, dtype,
               report: Callable[[str], None]) -> MemorySettings:
    """The run's memory settings, each ``auto`` resolved from the device's free memory (told to the user)."""
    choice = choose_memory((cfg, latent_hw), model, batch, device, dtype, spec.memory)
    report(choice.line)
    if choice.settings.block_swap and swapped_blocks(model) != choice.settings.block_swap:
        swap_blocks(model, choice.settings.block_swap, device)    # the rest of the model stays where it is
    return choice.settings


def _save_latents(job: LatentJob, cfg: SamplingConfig, result: GenerationResult) -> None:
    """``job.out`` (+ the retrieval log and timings when asked for)."""
    save_tensors(job.out, {"latents": result.latents},
                 metadata={"layout": f"[B,{result.latents.shape[1]},T,H,W] model-normalised", "seed": str(job.seed),
                           "strategy": cfg.strategy, "window": str(cfg.window), "sink": str(cfg.sink),
                           "noise_contract": cfg.noise, "switches": json.dumps(result.switches)})
    if job.log:
        save_json(job.log, result.retrieval_log)
    if job.timings:
        save_json(job.timings, {"blocks": result.timings, "peak_memory_mb": result.peak_memory_mb,
                                "pool_bytes_per_frame": result.pool_bytes_per_frame,
                                "pool_peak_bytes": result.pool_peak_bytes, "pool_usage": result.pool_usage})


@dataclass(frozen=True)
class VideoJob:
    """Prompts → videos: one video per prompt of ``prompts`` (prompt i with seed + i), or, with ``story`` (timed
    prompts, parsed and checked: core/sampling/prompts.py), one video of the whole story (``prompts`` = its first)."""
    prompts: tuple[str, ...]
    frames: int
    latent_hw: tuple[int, int]
    seed: int
    text_encoder: str
    vae: str
    out_dir: str
    latent: LatentFormat           # the backbone family's (its VAE, video size and fps)
    overwrite: bool = False
    start: StartFiles = StartFiles()
    story: tuple[TimedPrompt, ...] = ()
    partial_every: float = PARTIAL_EVERY   # seconds between two writes of a video's partial (0: after every block)
    negative: str | None = None    # a guided run's negative prompt, encoded with the prompts


def _pending_videos(job: VideoJob, strategies: dict[str, SamplingConfig], rank: Rank, progress: Progress):
    work = []
    for index, prompt in shard(list(job.prompts), rank):
        for name in strategies:
            stem = Path(job.out_dir) / f"{output_stem(index, prompt)}_{name}"
            if stem.with_suffix(".mp4").exists() and not job.overwrite:
                progress.report(f"skip {stem.name}.mp4 (exists)")
                continue
            work.append((index, prompt, name, stem))
    return work


def text_to_video(spec: ModelSpec, strategies: dict[str, SamplingConfig], job: VideoJob, progress: Progress) -> int:
    """One mp4 per prompt and strategy (``strategies``: name → config), plus retrieval log and map per retrieval run."""
    from ..formats.vae import load_vae
    rank = current_rank()
    work = _pending_videos(job, strategies, rank, progress)
    mine = [Path(job.out_dir) / output_stem(i, p) for i, p in shard(list(job.prompts), rank)]
    if not work:
        for base in mine:
            write_comparison(base, list(strategies), False, progress, job.latent.fps)
        return 0
    with _claiming_videos(spec, job, [stem for *_, stem in work], strategies.values(), progress):
        device, dtype = spec.resolve(rank)
        init_process_group(rank, device)
        indices = sorted({i for i, *_ in work})
        negatives = [job.negative] if job.negative is not None else []
        encoded = encode_prompts(job.text_encoder, [job.prompts[i] for i in indices] + negatives, device, dtype)
        negative = encoded[-1] if negatives else None
        embeds = {i: as_schedule(e, negative) for i, e in zip(indices, encoded)}    # zip: the negative is not a video
        vae = load_vae(job.vae, device=device, dtype=dtype, latent=job.latent)
        backbone, encoder = load_models(spec, device, dtype, any(c.retrieval is not None for c in strategies.values()))
        start = job.start.load(vae, job.latent_hw)
        for index, prompt, name, stem in work:
            cfg = strategies[name]
            write = partial(write_outputs, vae, stem=stem, cfg=cfg, about={"prompt": prompt, "seed": job.seed + index},
                            progress=progress)
            _make_video(spec, backbone.model, embeds[index], job, job.seed + index, cfg, encoder, start, stem, progress,
                        write)
            progress.report(f"[rank {rank.rank}] wrote {stem.name}.mp4")
    for base in mine:
        write_comparison(base, list(strategies), job.overwrite, progress, job.latent.fps)
    barrier(rank)
    return 0


def write_comparison(base: Path, strategies: list[str], overwrite: bool, progress: Progress, fps: int) -> None:
    """With several strategies: ``base``_grid.mp4, every strategy's video side by side under its name (same prompt,
    same seed). Written once all of them exist; kept if present unless ``overwrite``."""
    from ..files.grid import write_grid_mp4
    grid = Path(f"{base}_grid.mp4")
    if len(strategies) < 2 or (grid.exists() and not overwrite):
        return
    write_grid_mp4(grid, [Path(f"{base}_{m}.mp4") for m in strategies], strategies, fps=fps)
    progress.finished.append(grid.name)
    progress.report(f"wrote {grid.name}")


def _claiming_videos(spec: ModelSpec, job: VideoJob, stems: list[Path], configs, progress: Progress):
    """Refuse videos that would overwrite an input; then lock each video (core/app/outputs.py ``claiming``)."""
    outputs = {f"--out-dir's {stem.name}{suffix}": Path(f"{stem}{suffix}") for stem in stems
               for suffix in (".mp4", ".retrieval.json", ".retrieval_map.png")}
    check_distinct(outputs, _inputs(spec, **{"--text-encoder": job.text_encoder, "--vae": job.vae,
                                             "--image": job.start.image, "--video": job.start.video,
                                             "--continue-from": job.start.latents}))
    return claiming({stem.with_suffix(".mp4"): "--out-dir" for stem in stems}, progress.report, _pool_dirs(configs))


def _make_video(spec: ModelSpec, model, prompts, job, seed: int, cfg: SamplingConfig, encoder, start, stem: Path,
                progress: Progress, write) -> None:
    """One video: its generate call, then ``write(result)`` its outputs. Its finished blocks are kept in
    ``stem``.partial.safetensors until every output is written; the same command picks that up (--overwrite
    discards it)."""
    progress.current = stem.name
    identity = run_identity(spec.backbone, prompts, seed, job.frames, job.latent_hw, cfg, spec.lora)
    out = stem.with_suffix(".safetensors")
    if job.overwrite:
        partial_path(out).unlink(missing_ok=True)
    resumed = resumption(out, identity, job.frames, cfg.frames_per_block, fresh="add --overwrite")
    res = resumed.result if resumed else None
    if resumed:
        start = resumed.start if resumed.start is not None else start
        progress.report(f"{stem.name}: resuming from the {resumed.given} frames in {resumed.path.name}"
                        if res is None else f"{stem.name}: {resumed.path.name} holds the whole video; writing it")
    given = start.shape[2] if start is not None else 0
    with keeping_partial(out, identity, given, progress.on_block, progress.report, auto=True, every=job.partial_every,
                         frames=job.frames) as keeper:
        if res is None:
            param = next(model.parameters())
            memory = run_memory(spec, model, cfg, job.latent_hw, as_schedule(prompts).batch, param.device,
                                param.dtype, lambda line: progress.report(f"{stem.name}: {line}"))
            res = generate(model, prompts, job.frames, job.latent_hw, seed, cfg,
                           encoder=encoder if cfg.retrieval else None, callback=keeper, start=start, memory=memory)
            for line in res.notes:
                progress.report(f"{stem.name}: {line}")
        keeper.finished(res)
        write(res)
    partial_path(out).unlink(missing_ok=True)


def write_outputs(vae, res: GenerationResult, stem: Path, cfg: SamplingConfig, about: dict, progress: Progress) -> None:
    """``stem``.mp4 and, for a retrieval run, ``stem``.retrieval.json (``about`` + switches + blocks) and
    ``stem``.retrieval_map.png (switches marked)."""
    from ..retrieval.map import render_retrieval_map
    from ..files.video import write_mp4, write_png
    # streamed: decoded pieces go straight into the mp4, the whole video is never held at once
    pieces = (c[0].permute(1, 2, 3, 0) for c in vae.iter_decode(res.latents.to(vae.device)))
    frames = res.latents.shape[2]
    write_mp4(stem.with_suffix(".mp4"), pieces, fps=vae.latent.fps)
    if cfg.retrieval is not None:
        save_json(stem.with_suffix(".retrieval.json"), {**about, "switches": res.switches, "blocks": res.retrieval_log})
        title = str(about.get("prompt", ""))[:60]
        write_png(stem.with_suffix(".retrieval_map.png"),
                  render_retrieval_map(res.retrieval_log, frames, cfg.sink, cfg.window, cfg.frames_per_block,
                                       title=title, switches=res.switches))
    progress.finished.append(f"{stem.name}.mp4")


def story_to_video(spec: ModelSpec, strategies: dict[str, SamplingConfig], job: VideoJob, progress: Progress) -> int:
    """One mp4 per strategy of the whole schedule (same seed for every strategy), named story_<first prompt>_<strategy>."""
    rank = current_rank()
    base = Path(job.out_dir) / output_stem(0, job.story[0].text).replace("0000_", "story_", 1)
    work = [m for m in strategies if job.overwrite or not Path(f"{base}_{m}.mp4").exists()]
    for m in set(strategies) - set(work):
        progress.report(f"skip {base.name}_{m}.mp4 (exists)")
    if rank.rank != 0:                   # one video: only the first process works
        return 0
    if not work:
        write_comparison(base, list(strategies), False, progress, job.latent.fps)
        return 0
    with _claiming_videos(spec, job, [Path(f"{base}_{m}") for m in work], [strategies[m] for m in work], progress):
        _make_story(spec, strategies, job, work, base, progress)
    write_comparison(base, list(strategies), job.overwrite, progress, job.latent.fps)
    return 0


def _make_story(spec: ModelSpec, strategies: dict[str, SamplingConfig], job: VideoJob, work: list[str], base: Path,
                progress: Progress) -> None:
    """The story's video for each strategy named in ``work``."""
    from ..formats.vae import load_vae
    device, dtype = spec.resolve(current_rank())
    # a shot's first block: the scene-cut prefix + its prompt (families with shots; elsewhere a cut is a prompt change)
    shots = any(c.has_shots for c in strategies.values())
    cuts = cut_texts(list(job.story)) if shots else {}
    negatives = [job.negative] if job.negative is not None else []
    texts = [p.text for p in job.story] + list(cuts.values()) + negatives
    encoded = encode_prompts(job.text_encoder, texts, device, dtype)
    n = len(job.story)
    schedule = schedule_from_timed(list(job.story), encoded[:n], dict(zip(cuts, encoded[n:])))
    schedule = as_schedule(schedule, encoded[-1] if negatives else None)
    vae = load_vae(job.vae, device=device, dtype=dtype, latent=job.latent)
    backbone, encoder = load_models(spec, device, dtype, any(strategies[m].retrieval is not None for m in work))
    start = job.start.load(vae, job.latent_hw)
    for name in work:
        cfg, stem = strategies[name], Path(f"{base}_{name}")
        about = {"prompt": job.story[0].text, "seed": job.seed,
                 "schedule": schedule.timeline(cfg.frames_per_block, job.latent)}
        write = partial(write_outputs, vae, stem=stem, cfg=cfg, about=about, progress=progress)
        _make_video(spec, backbone.model, schedule, job, job.seed, cfg, encoder, start, stem, progress, write)
        progress.report(f"wrote {stem.name}.mp4")


# ------------------------------------------------------------------------------------ corpus
@dataclass(frozen=True)
class CorpusJob:
    out: str
    frames: int
    latent_hw: tuple[int, int]
    seed: int                              # item i uses seed + i
    embeds: tuple[str, ...] = ()           # prompt-embedding files (one video per row), or
    prompts: str | None = None             # a prompt list encoded with
    text_encoder: str | None = None


def _corpus_items(job: CorpusJob) -> list[tuple[str, object]]:
    """(name, embeddings [1, L, D]) per video for embedding files; (name, prompt) for a prompt list."""
    if job.embeds:
        items = []
        for path in job.embeds:
            emb = load_prompt_embeds(path)
            items += [(f"{Path(path).stem}_{b:03d}", emb[b:b + 1]) for b in range(emb.shape[0])]
        return items
    prompts = read_prompts(None, job.prompts)
    return [(output_stem(i, p), p) for i, p in enumerate(prompts)]


def build_corpus(spec: ModelSpec, cfg: SamplingConfig, job: CorpusJob, progress: Progress) -> int:
    """Clean latents of a frozen backbone, one ``latents`` [T, C, H, W] file per video (C: 16 Wan2.1, 48 Wan2.2)."""
    rank = current_rank()
    out_dir = Path(job.out)
    mine = [(i, item) for i, item in shard(_corpus_items(job), rank)
            if not (out_dir / f"{item[0]}.safetensors").exists()]
    if not mine:
        return 0
    device, dtype = spec.resolve(rank)
    init_process_group(rank, device)
    if not job.embeds:
        encoded = encode_prompts(job.text_encoder, [p for _, (_, p) in mine], device, dtype)
        mine = [(i, (name, e)) for (i, (name, _)), e in zip(mine, encoded)]
    backbone, encoder = load_models(spec, device, dtype, need_encoder=cfg.retrieval is not None)
    for i, (name, emb) in mine:
        progress.current = name
        memory = run_memory(spec, backbone.model, cfg, job.latent_hw, emb.shape[0], device, dtype, lambda _: None)
        res = generate(backbone.model, emb, job.frames, job.latent_hw, job.seed + i, cfg, encoder=encoder,
                       callback=progress.on_block, memory=memory)
        save_tensors(out_dir / f"{name}.safetensors", {"latents": res.latents[0].permute(1, 0, 2, 3)},
                     metadata={"layout": f"[T,{res.latents.shape[1]},H,W] model-normalised", "seed": str(job.seed + i)})
        progress.finished.append(f"{name}.safetensors")
        progress.report(f"[rank {rank.rank}] {name}: {job.frames} frames")
    barrier(rank)
    return 0
