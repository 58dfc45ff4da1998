"""The demo's copy-paste commands: every headless feature of ``python -m core generate`` on the demo's own files.

``python -m core demo`` writes a tiny backbone, retrieval encoder, text encoder (umT5, transformers' layout) and
VAE (Wan2.1, Wan's names), the inputs below, and the finished blocks of an interrupted run; then it prints one
command per feature — a prompt schedule with both modes, an image start, extend, resume, every strategy with its
grid — each starting with the interpreter that ran the demo, to be run from the folder it was run from. No
command downloads anything.
"""
from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import jobs
from .resume import partial_path

PROMPT = "a red cat runs in the snow"
SWITCH_S = 1.5                         # the story's second prompt begins here (seconds)
STORY = f"0s: {PROMPT}\n{SWITCH_S}s: a blue dog runs in the city at night\n"
START_PX = (128, 128)                  # the start image's (height, width): not the video's, so it is fitted
VIDEO_FRAMES = 15                      # latent frames of the video commands (5 blocks: seconds to decode on a CPU)
EXTEND_BY = 12                         # latent frames the extend command adds to the retrieval run


@dataclass(frozen=True)
class DemoFiles:
    """Where the demo writes what: ``at(out)``."""
    out: Path
    models: Path
    backbone: Path
    encoder: Path
    text_encoder: Path          # a folder: text_encoder/ (transformers' UMT5EncoderModel) + tokenizer/
    vae: Path                   # the Wan2.1 VAE under Wan's names, as ComfyUI's wan_2.1_vae.safetensors
    embeds: Path
    story: Path
    start: Path
    rag_latents: Path
    resumed: Path               # the output of the run the demo interrupts

    @classmethod
    def at(cls, out: Path) -> "DemoFiles":
        m = out / "models"
        return cls(out, m, m / "demo_wan_tiny.safetensors", m / "demo_encoder.pt", m / "demo_umt5",
                   m / "demo_wan21_vae.safetensors", out / "prompt_embeds.safetensors", out / "story.txt",
                   out / "start.png", out / "latents_rag.safetensors", out / "latents_rag_resumed.safetensors")


@dataclass(frozen=True)
class Command:
    """One printed command: the feature it shows, what it does (comment lines above it) and its argv."""
    name: str
    about: tuple[str, ...]
    argv: tuple[str, ...]

    def text(self) -> str:
        return "\n".join(f"# {line}" for line in self.about) + "\n" + shlex.join(self.argv)


def shown(path: Path) -> str:
    """``path`` as the commands show it: relative to the current folder when inside it, else absolute."""
    path = Path(os.path.abspath(path))
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def write_inputs(files: DemoFiles) -> None:
    """The schedule (story.txt) and the start image (start.png, a sun over snow, START_PX)."""
    from PIL import Image, ImageDraw
    files.story.write_text(STORY)
    h, w = START_PX
    sky = np.linspace([40, 70, 160], [170, 200, 240], h).astype(np.uint8)[:, None].repeat(w, 1)
    img = Image.fromarray(np.ascontiguousarray(sky))
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, int(h * 0.65), w, h], fill=(235, 235, 240))
    draw.ellipse([w * 0.55, h * 0.15, w * 0.8, h * 0.4], fill=(230, 60, 40))
    img.save(files.start)


@dataclass
class _StopAfter(jobs.Progress):
    """Progress that stops the run after ``blocks`` blocks, as Ctrl-C there would."""
    blocks: int = 1

    def on_block(self, update) -> None:
        super().on_block(update)
        if self.blocks_done >= self.blocks:
            raise KeyboardInterrupt


def interrupt_run(files: DemoFiles, cfg, frames: int, seed: int, latent_hw, blocks: int) -> Path:
    """Run the resume command's run (retrieval, ``cfg``) through the job layer and stop it after ``blocks``
    blocks, as Ctrl-C would: the job keeps the finished blocks in its .partial file (returned)."""
    partial_path(files.resumed).unlink(missing_ok=True)     # left by an earlier demo into this folder: made anew
    spec = jobs.ModelSpec(str(files.backbone), encoder=str(files.encoder), device="cpu")
    job = jobs.LatentJob(str(files.embeds), frames, latent_hw, seed, str(files.resumed))
    try:
        jobs.generate_latents(spec, cfg, job, _StopAfter(report=lambda line: None, blocks=blocks))
    except KeyboardInterrupt:
        return partial_path(files.resumed)
    raise RuntimeError(f"the demo's interrupted run finished all {frames} frames instead of stopping after block "
                       f"{blocks}")


def commands(files: DemoFiles, frames: int, seed: int, latent_hw, latent, stopped: tuple[int, int]) -> list[Command]:
    """The printed commands (``frames``/``seed``/``latent_hw``: the demo's retrieval run's; ``latent``: its latent
    format; ``stopped``: the blocks the interrupted run finished, of how many)."""
    py = [sys.executable, "-m", "core", "generate", "--backbone", files.backbone, "--encoder", files.encoder,
          "--latent-size", f"{latent_hw[0]}x{latent_hw[1]}", "--seed", seed, "--device", "cpu"]
    text = py + ["--text-encoder", files.text_encoder, "--vae", files.vae]
    embeds = py + ["--embeds", files.embeds]
    interrupted = embeds + ["--frames", frames, "--out", files.resumed]
    partial = partial_path(files.resumed)
    px = "{}x{}".format(*latent.video_size(latent_hw))
    return [
        _command("schedule", f"a prompt schedule ({shown(files.story)}: the prompt changes at {SWITCH_S} s), rag and "
                 "native side by side (--mode both)",
                 text + ["--prompt-schedule", files.story, "--frames", VIDEO_FRAMES, "--mode", "both",
                         "--out-dir", files.out / "story"]),
        _command("image", f"an image start: {shown(files.start)} ({START_PX[1]}x{START_PX[0]} px) is centre-cropped "
                 f"and scaled to the video's {px} px, then the video goes on",
                 text + ["--prompt", PROMPT, "--image", files.start, "--frames", VIDEO_FRAMES + 1,
                         "--out-dir", files.out / "image_start"]),
        _command("extend", f"extend the retrieval run: its {frames} latent frames are replayed and kept as they are, "
                 f"{EXTEND_BY} more are generated",
                 embeds + ["--continue-from", files.rag_latents, "--frames", frames + EXTEND_BY,
                           "--out", files.out / "latents_rag_extended.safetensors"]),
        _command("resume", f"resume an interrupted run: the demo ran this one and stopped it after block {stopped[0]} "
                 f"of {stopped[1]}, as Ctrl-C would,\nwhich kept the finished blocks in {shown(partial)}:\n"
                 f"  {shlex.join(_args(interrupted))}\nthe same command plus --resume finishes it (the latents of "
                 f"{shown(files.rag_latents)}, bit for bit):", interrupted + ["--resume", partial]),
        _command("strategies", "every long-context strategy on one prompt and seed: one video each and a grid of them "
                 "side by side", text + ["--prompt", PROMPT, "--strategy", "all", "--frames", VIDEO_FRAMES,
                                         "--out-dir", files.out / "strategies"]),
    ]


def _command(name: str, about: str, argv: list) -> Command:
    return Command(name, tuple(about.splitlines()), _args(argv))


def _args(argv: list) -> tuple[str, ...]:
    """Paths as ``shown``, numbers as text."""
    return tuple(shown(a) if isinstance(a, Path) else str(a) for a in argv)


def commands_text(found: list[Command]) -> str:
    """The commands as printed: where to run them (a ``cd`` line), then each with its comment."""
    head = ("# every headless feature on the demo's files, no download; run these from this folder:\n"
            f"cd {shlex.quote(os.getcwd())}\n")
    return head + "\n\n".join(c.text() for c in found) + "\n"
