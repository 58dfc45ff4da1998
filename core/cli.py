"""``python -m core <command>``: the headless entry points (thin wrappers over the Python API).

  generate      prompt embeddings → latents (+ retrieval log, timings), or
                prompts → mp4 + retrieval log + retrieval map per video (needs text encoder and VAE)
  build-corpus  clean latents of a frozen backbone: the retrieval encoder's training data
  train-encoder train the retrieval encoder
  demo          the whole pipeline on a tiny random backbone (no downloads)
"""
from __future__ import annotations

import argparse
import sys

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"latent size '{text}' must look like HxW, e.g. 60x104") from None
    return h, w


def parse_steps(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"steps '{text}' must be comma-separated integers, e.g. 1000,750,500,250") from None


def add_generation_options(p: argparse.ArgumentParser, default_mode: str = "rag", modes=("rag", "native")) -> None:
    """Options shared by every command that runs the AR loop (defaults = the published configs)."""
    g = p.add_argument_group("backbone")
    g.add_argument("--backbone", required=True, help="Self-Forcing / Causal-Forcing / LongLive .pt, Wan .safetensors or diffusers folder")
    g.add_argument("--lora", help="LongLive LoRA (longlive_lora.pt), merged at load")
    g.add_argument("--lora-strength", type=float, default=1.0)
    g.add_argument("--num-heads", type=int, help="attention heads (default dim/128)")
    g.add_argument("--no-ema", action="store_true", help="Self-Forcing: use 'generator' instead of 'generator_ema'")
    g.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="compute dtype (default float32 on CPU, bfloat16 on CUDA)")
    g.add_argument("--device", default=None, help="cpu or cuda[:N] (default cuda if available; cuda:LOCAL_RANK under torchrun)")
    s = p.add_argument_group("sampling")
    s.add_argument("--mode", choices=modes, default=default_mode, help="rag: retrieval; native: sliding window")
    s.add_argument("--encoder", default="avg_pool", help="retrieval encoder checkpoint (ae_latent_mem.pt) or avg_pool")
    s.add_argument("--memory-size", type=int, default=6, help="K: frames retrieved per block")
    s.add_argument("--recent-exclude", type=int, default=5, help="R: most recently evicted frames never retrieved")
    s.add_argument("--sink-size", type=int, default=1)
    s.add_argument("--local-attn-size", type=int, default=12, help="KV cache window in latent frames")
    s.add_argument("--frames-per-block", type=int, default=3)
    s.add_argument("--steps", type=parse_steps, default=(1000, 750, 500, 250))
    s.add_argument("--shift", type=float, default=5.0)
    s.add_argument("--context-noise", type=float, default=0.0)
    s.add_argument("--latent-size", type=parse_size, default=(60, 104), help="HxW of the latent (60x104 = 480x832 video)")
    s.add_argument("--seed", type=int, default=0, help="noise seed (prompt i of a list uses seed + i)")
    m = p.add_argument_group("history pool (rag mode)")
    m.add_argument("--pool", choices=("host", "device", "disk"), default="host",
                   help="where evicted frames' K/V live first (host RAM is the published behaviour)")
    m.add_argument("--pool-budget-mb", type=float, default=None,
                   help="memory budget of that first location; frames beyond it spill to the next (device→host→disk)")
    m.add_argument("--pool-dir", default=None, help="folder for the disk pool's files (default: system temp)")
    m.add_argument("--pool-storage", choices=("kv", "kv-half", "latent"), default="kv",
                   help="kv: exact (default); kv-half: half the bytes (approximate); "
                        "latent: store latents, recompute K/V on retrieval (approximate, smallest)")


def generation_config(args):
    from .pipeline import GenerationConfig
    return GenerationConfig(mode=args.mode, frames_per_block=args.frames_per_block,
                            local_attn_size=args.local_attn_size, sink_size=args.sink_size,
                            memory_size=args.memory_size, recent_exclude=args.recent_exclude, steps=args.steps,
                            shift=args.shift, context_noise=args.context_noise)


def resolve_device(args, rank=None) -> tuple[torch.device, torch.dtype]:
    from .distributed import current_rank
    device = (rank or current_rank()).device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but torch sees no CUDA device; use --device cpu")
    dtype = DTYPES[args.dtype] if args.dtype else (torch.bfloat16 if device.type == "cuda" else torch.float32)
    return device, dtype


def make_pool(args, device: torch.device):
    from .history_pool import HistoryPool, tiers_from
    return HistoryPool(tiers_from(args.pool, args.pool_budget_mb), storage=args.pool_storage,
                       compute_device=device, directory=args.pool_dir)


def load_models(args, device: torch.device, dtype: torch.dtype, need_encoder: bool | None = None):
    """(backbone, encoder or None) as the generation options ask."""
    from .checkpoint import load_backbone
    from .encoder import load_encoder
    backbone = load_backbone(args.backbone, lora=args.lora, lora_strength=args.lora_strength,
                             num_heads=args.num_heads, dtype=dtype, device=device, use_ema=not args.no_ema)
    encoder = None
    if need_encoder is None:
        need_encoder = args.mode in ("rag", "both")
    if need_encoder and args.encoder != "avg_pool":
        encoder = load_encoder(args.encoder, device=device)
    return backbone, encoder


def cmd_generate(args) -> int:
    if args.embeds is None:
        missing = [o for o, v in (("--text-encoder", args.text_encoder), ("--vae", args.vae),
                                  ("--out-dir", args.out_dir)) if v is None]
        if missing:
            raise ValueError(f"generating from text needs {', '.join(missing)}")
        from .jobs import text_to_video
        return text_to_video(args)
    from .io import load_prompt_embeds, save_json, save_tensors
    from .pipeline import generate
    if args.out is None or args.frames is None or args.mode == "both":
        raise ValueError("generating from --embeds needs --out and --frames, and one --mode (rag or native)")
    cfg = generation_config(args)
    cfg.policy().check(cfg.frames_per_block)  # fail on bad settings before loading anything
    device, dtype = resolve_device(args)
    backbone, encoder = load_models(args, device, dtype)
    embeds = load_prompt_embeds(args.embeds, backbone.config.text_dim)
    print(f"backbone: {backbone.info.preset} ({backbone.info.format}), {backbone.config.num_layers} layers, "
          f"dim {backbone.config.dim}; mode {args.mode}, encoder {args.encoder if args.mode == 'rag' else '-'}",
          file=sys.stderr)

    def progress(u):
        print(f"block {u.block + 1}/{u.num_blocks} {u.timing['total_s']:.2f}s", file=sys.stderr)

    pool = make_pool(args, device)
    try:
        result = generate(backbone.model, embeds, args.frames, args.latent_size, args.seed, cfg, encoder=encoder,
                          pool=pool, callback=progress)
    finally:
        pool.close()
    save_tensors(args.out, {"latents": result.latents},
                 metadata={"layout": "[B,16,T,H,W] model-normalised", "seed": str(args.seed), "mode": args.mode})
    if args.log:
        save_json(args.log, result.retrieval_log)
    if args.timings:
        save_json(args.timings, {"blocks": result.timings, "peak_memory_mb": result.peak_memory_mb,
                                 "pool_bytes_per_frame": result.pool_bytes_per_frame,
                                 "pool_peak_bytes": pool.peak_bytes})
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def cmd_build_corpus(args) -> int:
    from .jobs import build_corpus
    if not args.embeds and not (args.prompts and args.text_encoder):
        raise ValueError("build-corpus needs --embeds FILE... or --prompts FILE with --text-encoder DIR")
    return build_corpus(args)


def build_parser() -> argparse.ArgumentParser:
    from . import demo
    parser = argparse.ArgumentParser(prog="python -m core", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="generate latents from prompt embeddings, or videos from prompts")
    add_generation_options(gen, modes=("rag", "native", "both"))
    src = gen.add_mutually_exclusive_group(required=True)
    src.add_argument("--embeds", help="safetensors with 'prompt_embeds' [B, L, text_dim] (writes latents)")
    src.add_argument("--prompt", help="one text prompt (writes a video)")
    src.add_argument("--prompts", help="text file, one prompt per line (sharded across torchrun processes)")
    length = gen.add_mutually_exclusive_group()
    length.add_argument("--frames", type=int, help="latent frames (multiple of the block size)")
    length.add_argument("--seconds", type=float, help="video length at 16 fps (text mode)")
    gen.add_argument("--out", help="--embeds: output .safetensors ('latents' [B,16,T,H,W])")
    gen.add_argument("--log", help="--embeds: retrieval log .json")
    gen.add_argument("--timings", help="--embeds: per-block timings and peak memory .json")
    gen.add_argument("--text-encoder", help="text mode: Wan2.1 folder (models_t5_umt5-xxl-enc-bf16.pth + google/umt5-xxl) or diffusers folder")
    gen.add_argument("--vae", help="text mode: Wan2.1_VAE.pth or a diffusers vae/ folder")
    gen.add_argument("--out-dir", help="text mode: folder for <index>_<prompt>_<mode>.mp4/.retrieval.json/.retrieval_map.png")
    gen.add_argument("--overwrite", action="store_true", help="text mode: redo videos that already exist")
    gen.set_defaults(func=cmd_generate)

    corpus = sub.add_parser("build-corpus", help="save a frozen backbone's clean latents (encoder training data)")
    add_generation_options(corpus, default_mode="native")
    src = corpus.add_mutually_exclusive_group(required=True)
    src.add_argument("--embeds", nargs="+", help="prompt-embedding safetensors files (one video per row)")
    src.add_argument("--prompts", help="text file, one prompt per line (needs --text-encoder)")
    corpus.add_argument("--text-encoder", help="Wan2.1 text encoder folder (with --prompts)")
    corpus.add_argument("--frames", type=int, default=90, help="latent frames per video")
    corpus.add_argument("--out", required=True, help="output folder, one <name>.safetensors ('latents' [T,16,H,W]) per video")
    corpus.set_defaults(func=cmd_build_corpus)

    try:
        from . import train_encoder
        train_encoder.add_cli(sub)
    except ImportError:
        pass
    demo.add_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
