"""``python -m core demo``: a self-contained pipeline demo on a tiny random backbone (no downloads).

It writes tiny checkpoints in the real formats (backbone, retrieval encoder, umT5 text encoder, Wan2.1 VAE),
loads them through the real loaders, renders the native sliding window and LongLive-RAG retrieval from the same
seed, and saves a side-by-side preview video, the retrieval map, the retrieval log and the latents; then it
prints a copy-paste command for every other headless feature on those files (core/app/demo_commands.py). The
weights are random, so the pictures are noise-like: this demonstrates the plumbing, not the method's quality.
"""
from __future__ import annotations

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
from .tiny_files import umt5_state_dict, wan_vae_state_dict, write_umt5_diffusers
from .demo_commands import DemoFiles, commands, commands_text, interrupt_run, write_inputs
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


def write_demo_checkpoints(files: DemoFiles, seed: int = 0) -> None:
    """A tiny random backbone (bare Wan names, safetensors), retrieval encoder (released .pt format), umT5 text
    encoder (transformers' folder + tokenizer, as the diffusers layout) and Wan2.1 VAE (Wan's names, safetensors)."""
    from ..formats import save_backbone_safetensors
    model = tiny_model(seed, DEMO_CONFIG)
    files.models.mkdir(parents=True, exist_ok=True)
    # the head count travels in the file's metadata (it changes no weight shape, so it cannot be inferred)
    save_backbone_safetensors(model, files.backbone, DEMO_CONFIG)
    cfg = EncoderConfig(in_channels=CHANNELS, spatial_h=LATENT_HW[0], spatial_w=LATENT_HW[1], latent_dim=64,
                        hidden_dims=[16, 32, 64])
    enc = RetrievalEncoder(cfg)
    with atomic_path(files.encoder) as tmp:
        torch.save({"model": enc.state_dict(), "config": cfg.__dict__}, tmp)
    write_umt5_diffusers(umt5_state_dict(seed=seed, dim=DEMO_CONFIG.text_dim), files.text_encoder)
    save_tensors(files.vae, wan_vae_state_dict(seed=seed))


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
    """The demo into the folder ``out``: ``frames`` latent frames per run from ``seed``; returns what it made."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)      # tiny models: more threads only wait on each other, and on a core that is busy
    try:
        return _run(out, frames, seed)
    finally:
        torch.set_num_threads(threads)


def _run(out: Path, frames: int, seed: int) -> dict:
    from ..formats import load_backbone
    from ..files.video import write_png
    modes = demo_modes()
    modes["rag"].check_frames(frames)
    check_output_dir(out, "--out")
    t0 = time.perf_counter()
    files = DemoFiles.at(out)
    write_demo_checkpoints(files)
    backbone = load_backbone(files.backbone)
    encoder = load_encoder(files.encoder)
    embeds = torch.randn(1, 20, DEMO_CONFIG.text_dim, generator=torch.Generator().manual_seed(seed + 1))
    save_tensors(files.embeds, {"prompt_embeds": embeds})
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
    write_inputs(files)
    blocks = len(rag.blocks(frames))
    stop = blocks // 2 or 1                         # the interrupted run keeps its first half
    partial = interrupt_run(files, rag, frames, seed, LATENT_HW, stop)
    found = commands(files, frames, seed, LATENT_HW, backbone.defaults.latent, (stop, blocks))
    (out / "README.txt").write_text(
        "LongLive-RAG pipeline demo — tiny RANDOM models (backbone, retrieval encoder, text encoder, VAE), no real\n"
        "model. models/: the files, in the real formats the loaders read.\n"
        "preview_native_vs_rag.mp4: latents shown as colours (no VAE): native window | retrieval | where they\n"
        "  differ (heat map, scaled to the largest difference), with each frame's difference as a curve below.\n"
        "summary.json: what retrieval changed and where it reached back to, in numbers.\n"
        "retrieval_map.png / retrieval_log.json: which past frame each block retrieved.\n"
        "latents_*.safetensors: [B,16,T,H,W] model-space latents; prompt_embeds.safetensors: the prompt used.\n"
        f"{files.story.name}, {files.start.name}, {partial.name}: inputs of the commands below.\n\n"
        + commands_text(found))
    report = {"seconds": round(time.perf_counter() - t0, 2), "retrieving_blocks": len(log), "summary": numbers,
              "outputs": sorted(p.name for p in out.iterdir()), "commands": {c.name: c.argv for c in found}}
    for line in summary_lines(numbers, backbone.defaults.latent):
        print(f"[demo] {line}", file=sys.stderr)
    print(f"[demo] done in {report['seconds']} s -> {out} (README.txt there lists the commands below too)",
          file=sys.stderr)
    sys.stderr.flush()
    print(commands_text(found), end="")
    return report


def add_cli(sub) -> None:
    p = sub.add_parser("demo", help="pipeline demo on tiny random models (no downloads); prints a command for every "
                                    "other headless feature on its files")
    p.add_argument("--out", default="demo_out", help="output folder")
    p.add_argument("--frames", type=int, default=48, help="latent frames (multiple of 3)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=lambda args, progress: (run_demo(Path(args.out), args.frames, args.seed), 0)[1])
