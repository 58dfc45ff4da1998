"""Prompt-list jobs: text → video (``generate --prompt/--prompts``) and the encoder's training
corpus (``build-corpus``). Both shard their list across ``torchrun`` processes and skip outputs
that already exist, so an interrupted or repeated run resumes where it stopped."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import torch

from .distributed import barrier, current_rank, init_process_group, shard
from .io import load_prompt_embeds, save_json, save_tensors
from .pipeline import generate

VIDEO_FPS = 16


def latent_frames_for_seconds(seconds: float, frames_per_block: int = 3) -> int:
    """Latent frames for a duration at 16 fps (4 video frames per latent frame), in whole blocks."""
    if seconds <= 0:
        raise ValueError(f"--seconds {seconds} must be > 0")
    blocks = max(1, round(seconds * VIDEO_FPS / 4 / frames_per_block))
    return blocks * frames_per_block


def read_prompts(prompt: str | None, prompts_file: str | None) -> list[str]:
    if prompt is not None:
        return [prompt]
    path = Path(prompts_file)
    if not path.is_file():
        raise FileNotFoundError(f"prompt list '{path}' does not exist; pass a text file with one prompt per line")
    prompts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not prompts:
        raise ValueError(f"prompt list '{path}' holds no prompts (one per line expected)")
    return prompts


def output_stem(index: int, prompt: str) -> str:
    """Deterministic, filesystem-safe name: index + the prompt's first words."""
    slug = re.sub(r"[^a-z0-9]+", "_", prompt.lower()).strip("_")[:40].rstrip("_")
    return f"{index:04d}_{slug or 'prompt'}"


def _encode_prompts(args, prompts: list[str], device, dtype) -> list[torch.Tensor]:
    """Embeddings [1, 512, dim] per prompt on CPU; the text encoder is freed afterwards."""
    from .text_encoder import load_text_encoder
    te = load_text_encoder(args.text_encoder, device=device, dtype=dtype)
    out = [te.encode([p]).float().cpu() for p in prompts]
    del te
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out


def text_to_video(args) -> int:
    """``generate --prompt/--prompts``: one mp4 per prompt and mode, plus retrieval log and map (rag)."""
    from .cli import generation_config, load_models, resolve_device, make_pool
    from .retrieval_map import render_retrieval_map
    from .vae import load_vae
    from .video_io import write_mp4, write_png

    rank = current_rank()
    prompts = read_prompts(args.prompt, args.prompts)
    frames = latent_frames_for_seconds(args.seconds, args.frames_per_block) if args.seconds else args.frames
    if frames is None:
        raise ValueError("give the length with --frames (latent frames) or --seconds")
    modes = ["native", "rag"] if args.mode == "both" else [args.mode]
    out_dir = Path(args.out_dir)
    work = []
    for index, prompt in shard(prompts, rank):
        for mode in modes:
            stem = out_dir / f"{output_stem(index, prompt)}_{mode}"
            if stem.with_suffix(".mp4").exists() and not args.overwrite:
                print(f"skip {stem.name}.mp4 (exists)", file=sys.stderr)
                continue
            work.append((index, prompt, mode, stem))
    if not work:
        return 0
    device, dtype = resolve_device(args, rank)
    init_process_group(rank, device)
    embeds = dict(zip(sorted({i for i, *_ in work}),
                      _encode_prompts(args, [prompts[i] for i in sorted({i for i, *_ in work})], device, dtype)))
    vae = load_vae(args.vae, device=device, dtype=dtype)
    backbone, encoder = load_models(args, device, dtype, need_encoder="rag" in modes)
    for index, prompt, mode, stem in work:
        args.mode = mode
        cfg = generation_config(args)
        pool = make_pool(args, device)
        try:
            res = generate(backbone.model, embeds[index], frames, args.latent_size, args.seed + index, cfg,
                           encoder=encoder if mode == "rag" else None, pool=pool)
        finally:
            pool.close()
        # streamed: decoded pieces go straight into the mp4, the whole video is never held at once
        pieces = (c[0].permute(1, 2, 3, 0) for c in vae.iter_decode(res.latents.to(device)))
        write_mp4(stem.with_suffix(".mp4"), pieces, fps=VIDEO_FPS)
        if mode == "rag":
            save_json(stem.with_suffix(".retrieval.json"), {"prompt": prompt, "seed": args.seed + index,
                                                             "blocks": res.retrieval_log})
            write_png(stem.with_suffix(".retrieval_map.png"),
                      render_retrieval_map(res.retrieval_log, frames, cfg.sink_size, cfg.local_attn_size,
                                           title=prompt[:60]))
        print(f"[rank {rank.rank}] wrote {stem.name}.mp4", file=sys.stderr)
    barrier(rank)
    return 0


def build_corpus(args) -> int:
    """Clean latents of a frozen backbone, one ``latents`` [T, 16, H, W] file per video."""
    from .cli import generation_config, load_models, resolve_device
    rank = current_rank()
    if args.embeds:
        items = []   # (name, embeds [1, L, D])
        for path in args.embeds:
            emb = load_prompt_embeds(path)
            items += [(f"{Path(path).stem}_{b:03d}", emb[b:b + 1]) for b in range(emb.shape[0])]
        names = [n for n, _ in items]
    else:
        prompts = read_prompts(None, args.prompts)
        names = [output_stem(i, p) for i, p in enumerate(prompts)]
        items = list(zip(names, prompts))
    out_dir = Path(args.out)
    mine = [(i, item) for i, item in shard(items, rank) if not (out_dir / f"{item[0]}.safetensors").exists()]
    if not mine:
        return 0
    device, dtype = resolve_device(args, rank)
    init_process_group(rank, device)
    if not args.embeds:
        encoded = _encode_prompts(args, [p for _, (_, p) in mine], device, dtype)
        mine = [(i, (name, e)) for (i, (name, _)), e in zip(mine, encoded)]
    backbone, encoder = load_models(args, device, dtype)
    cfg = generation_config(args)
    for i, (name, emb) in mine:
        res = generate(backbone.model, emb, args.frames, args.latent_size, args.seed + i, cfg, encoder=encoder)
        save_tensors(out_dir / f"{name}.safetensors", {"latents": res.latents[0].permute(1, 0, 2, 3)},
                     metadata={"layout": "[T,16,H,W] model-normalised", "seed": str(args.seed + i)})
        print(f"[rank {rank.rank}] {name}: {args.frames} frames", file=sys.stderr)
    barrier(rank)
    return 0
