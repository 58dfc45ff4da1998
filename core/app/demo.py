"""``python -m core demo``: a self-contained pipeline demo on a tiny random backbone (no downloads).

It writes tiny checkpoints in the real formats, loads them through the real loaders, renders the
native sliding window and LongLive-RAG retrieval from the same seed, and saves a side-by-side
preview video, the retrieval map, the retrieval log and the latents. The weights are random, so
the pictures are noise-like: this demonstrates the plumbing, not the method's quality.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ..retrieval.config import RetrievalConfig
from ..retrieval.encoder import EncoderConfig, RetrievalEncoder, load_encoder
from ..files.atomic import atomic_path, check_output_dir, save_json, save_tensors
from ..latents.format import LatentFormat
from .tiny import tiny_config, tiny_model
from ..sampling.loop import generate
from .default_family import default_family
from .demo_preview import summary, summary_lines, three_panels
from ..retrieval.map import render_retrieval_map
from .plan import sampling_config

CHANNELS = default_family().defaults.latent.channels      # the demo's backbone is of the default family
DEMO_CONFIG = tiny_config(dim=128, text_dim=64, channels=CHANNELS, freq_dim=256)
LATENT_HW = (8, 12)


def demo_modes() -> dict:
    """The two runs, native and rag, at the published settings of the default family (the demo's backbone's)."""
    family = default_family().defaults
    return {"native": sampling_config(family), "rag": sampling_config(family, retrieval=RetrievalConfig())}


def _label(frames: np.ndarray, text: str) -> np.ndarray:
    from PIL import Image, ImageDraw
    out = []
    for f in frames:
        img = Image.fromarray(f)
        draw = ImageDraw.Draw(img)
        draw.rectangle([0, 0, 8 * len(text) + 6, 14], fill=(0, 0, 0))
        draw.text((3, 1), text, fill=(255, 255, 255))
        out.append(np.asarray(img))
    return np.stack(out)


def write_demo_checkpoints(folder: Path, seed: int = 0) -> tuple[Path, Path]:
    """A tiny random backbone (bare Wan names, safetensors) and retrieval encoder (released .pt format)."""
    from ..formats import save_backbone_safetensors
    model = tiny_model(seed, DEMO_CONFIG)
    folder.mkdir(parents=True, exist_ok=True)
    backbone = folder / "demo_wan_tiny.safetensors"
    # the head count travels in the file's metadata (it changes no weight shape, so it cannot be inferred)
    save_backbone_safetensors(model, backbone, DEMO_CONFIG)
    cfg = EncoderConfig(in_channels=CHANNELS, spatial_h=LATENT_HW[0], spatial_w=LATENT_HW[1], latent_dim=64,
                        hidden_dims=[16, 32, 64])
    enc = RetrievalEncoder(cfg)
    encoder = folder / "demo_encoder.pt"
    with atomic_path(encoder) as tmp:
        torch.save({"model": enc.state_dict(), "config": cfg.__dict__}, tmp)
    return backbone, encoder


def reproduce_command(out: Path, frames: int, seed: int) -> str:
    """The one ``generate`` command that recomputes the demo's retrieval run from its files."""
    models = out / "models"
    args = ["python", "-m", "core", "generate", "--backbone", models / "demo_wan_tiny.safetensors",
            "--encoder", models / "demo_encoder.pt", "--embeds", out / "prompt_embeds.safetensors",
            "--frames", frames, "--latent-size", f"{LATENT_HW[0]}x{LATENT_HW[1]}", "--seed", seed, "--device", "cpu",
            "--out", out / "latents_rag_again.safetensors", "--log", out / "retrieval_log_again.json"]
    return " ".join(shlex.quote(str(a)) for a in args)


def _preview(results: dict, out: Path, latent: LatentFormat, frames_per_block: int) -> dict:
    """preview_native_vs_rag.mp4 (native | retrieval | difference, with the difference curve; ``latent``: the
    backbone's format, its fps and video frames per latent frame) and the summary in numbers (also summary.json)."""
    from ..files.video import write_mp4
    native, rag, log = results["native"].latents[0], results["rag"].latents[0], results["rag"].retrieval_log
    video = three_panels(native, rag, log, _label).repeat(latent.time_stride, axis=0)
    write_mp4(out / "preview_native_vs_rag.mp4", video, fps=latent.fps)
    numbers = summary(native, rag, log, frames_per_block)
    save_json(out / "summary.json", numbers)
    return numbers


def run_demo(out: Path, frames: int = 48, seed: int = 0) -> dict:
    from ..formats import load_backbone
    from ..files.video import write_png
    modes = demo_modes()
    modes["rag"].check_frames(frames)
    check_output_dir(out, "--out")
    t0 = time.perf_counter()
    backbone_path, encoder_path = write_demo_checkpoints(out / "models")
    backbone = load_backbone(backbone_path)
    encoder = load_encoder(encoder_path)
    embeds = torch.randn(1, 20, DEMO_CONFIG.text_dim, generator=torch.Generator().manual_seed(seed + 1))
    save_tensors(out / "prompt_embeds.safetensors", {"prompt_embeds": embeds})
    results = {}
    for mode, cfg in modes.items():
        print(f"[demo] {mode}: {frames} latent frames ...", file=sys.stderr)
        results[mode] = generate(backbone.model, embeds, frames, LATENT_HW, seed, cfg,
                                 encoder=encoder if cfg.retrieval is not None else None)
        save_tensors(out / f"latents_{mode}.safetensors", {"latents": results[mode].latents})
    log, rag = results["rag"].retrieval_log, modes["rag"]
    save_json(out / "retrieval_log.json", log)
    write_png(out / "retrieval_map.png", render_retrieval_map(log, frames, rag.sink, rag.window, rag.frames_per_block,
                                                              title="demo (random tiny backbone)"))
    numbers = _preview(results, out, backbone.defaults.latent, rag.frames_per_block)
    command = reproduce_command(out, frames, seed)
    (out / "README.txt").write_text(
        "LongLive-RAG pipeline demo — tiny RANDOM backbone and encoder, no real model.\n"
        "preview_native_vs_rag.mp4: latents shown as colours (no VAE): native window | retrieval | where they\n"
        "  differ (heat map, scaled to the largest difference), with each frame's difference as a curve below.\n"
        "summary.json: what retrieval changed and where it reached back to, in numbers.\n"
        "retrieval_map.png / retrieval_log.json: which past frame each block retrieved.\n"
        "latents_*.safetensors: [B,16,T,H,W] model-space latents; prompt_embeds.safetensors: the prompt used.\n"
        f"Recompute the retrieval run headless (same latents as latents_rag.safetensors):\n  {command}\n")
    report = {"seconds": round(time.perf_counter() - t0, 2), "retrieving_blocks": len(log), "summary": numbers,
               "outputs": sorted(p.name for p in out.iterdir()), "command": command}
    for line in summary_lines(numbers, backbone.defaults.latent):
        print(f"[demo] {line}", file=sys.stderr)
    print(f"[demo] done in {report['seconds']} s -> {out}", file=sys.stderr)
    print(f"[demo] recompute the retrieval run with:\n{command}", file=sys.stderr)
    return report


def add_cli(sub) -> None:
    p = sub.add_parser("demo", help="pipeline demo on a tiny random backbone (no downloads)")
    p.add_argument("--out", default="demo_out", help="output folder")
    p.add_argument("--frames", type=int, default=48, help="latent frames (multiple of 3)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=lambda args, progress: (run_demo(Path(args.out), args.frames, args.seed), 0)[1])
