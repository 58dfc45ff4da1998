"""``python -m core <command>``: argument parsing, then one call into the job layer (core/app/jobs.py).

  generate      prompt embeddings → latents (+ retrieval log, timings), or
                prompts → mp4 + retrieval log + retrieval map per video (needs text encoder and VAE), or
                a prompt schedule (timed prompts, one story) → mp4 per mode
  build-corpus  clean latents of a frozen backbone: the retrieval encoder's training data
  train-encoder train the retrieval encoder          convert  released backbone → ComfyUI's own format
  demo          the whole pipeline on tiny random models (no downloads), and a command for every other feature

Everything that can be checked without the models (frames, latent size, output paths, settings)
is checked before anything is loaded. Bad input: one line on stderr, exit code 2, nothing written.
An output may not be an input or another output; a missing output folder is created when its parent
exists (and said so), a longer missing path is refused; two runs never write one output (a lock).
Ctrl-C, SIGTERM, SIGHUP: the finished blocks are kept (OUT.partial.safetensors), one line says how to
finish, exit code 128 + the signal (130 for Ctrl-C); nothing is ever half-written. A full disk: one
line (what failed, the space left, what was kept). The same command again resumes a stopped run.
"""
from __future__ import annotations

import argparse
import sys

from . import convert_cli, demo, jobs
from .resume import PARTIAL_EVERY
from .signals import Stopped, handling_signals
from ..training import cli as train_encoder
from ..training.distributed import current_rank
from ..sampling.config import (DTYPES, RETRIEVAL_SCOPES, SAMPLERS, STRATEGIES, SWITCH_MODES, SamplingConfig,
                               check_latent_size, parse_steps)
from ..retrieval.config import AUTO, POOL_LOCATIONS, POOL_STORAGES, PREFETCH, PoolConfig, RetrievalConfig
from ..sampling.defaults import FamilyDefaults
from ..context.strategies import SPECS
from ..files.atomic import check_output_dir, check_output_file
from ..sampling.prompt_files import load_prompt_schedule
from ..sampling.prompts import fire_frames, read_schedule_file, timeline
from ..latents.format import LatentFormat
from ..sampling.noise import NOISE_CONTRACTS
from ..sampling.request import SamplingRequest, parse_options
from ..sampling.samplers import get_sampler
from .fact_text import each, fragment
from .plan import RunPlan, RunRequest, check_memory, choose_memory, choose_weights, default_family, latent_size, plan_run
from ..model.fp8_linear import to_fp8
from .guidance_options import add_shot_and_guidance_options, negative_text
from .memory_options import add_memory_options, arg_type as _arg, memory_settings
from .starts import StartFiles

DEFAULT_RETRIEVAL = RetrievalConfig()
MODES = ("rag", "native")          # --mode: the older spelling of --strategy for the first two strategies
FAMILY = "(default: the backbone family's: {})"


def per_family(value) -> str:
    """'Wan 1.3B 3, LongLive 2.0 8': a setting of every registered family, for the help texts."""
    return each(lambda f: value(f.defaults))


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (the full usage of ``generate`` is 20 lines long)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"latent size '{text}' must look like HxW, e.g. 60x104") from None
    return check_latent_size((h, w))


def _strategy_help() -> str:
    lines = [f"{s.name} ({s.title}): {s.summary}" for s in SPECS.values()]
    return ("long-context strategy: " + "; ".join(lines) + f". Its window on each backbone unless --window is given: "
            f"{fragment('strategy-windows')}; its sink unless --sink is: {fragment('strategy-sinks')}")

def add_generation_options(p: argparse.ArgumentParser, default_mode: str = "rag", modes=MODES) -> None:
    """Options shared by every command that runs the AR loop (defaults = the published configs)."""
    g = p.add_argument_group("backbone")
    g.add_argument("--backbone", required=True, help="Self-Forcing / Causal-Forcing / LongLive .pt, Wan .safetensors or diffusers folder")
    g.add_argument("--lora", help="LongLive LoRA (longlive_lora.pt), merged at load")
    g.add_argument("--lora-strength", type=float, default=1.0)
    g.add_argument("--num-heads", type=int, help="attention heads (default: from the file, else dim/128)")
    g.add_argument("--no-ema", action="store_true", help="Self-Forcing: use 'generator' instead of 'generator_ema'")
    g.add_argument("--dtype", choices=sorted(DTYPES), default=None,
                   help="compute dtype (default float32 on CPU, bfloat16 on CUDA, float16 where bf16 is unsupported)")
    g.add_argument("--device", default=None, help="cpu or cuda[:N] (default cuda if available; cuda:LOCAL_RANK under torchrun)")
    g.add_argument("--compile", action="store_true",
                   help="torch.compile the layers: fuses the element-wise work after a first run that compiles "
                        "(measured on CPU: 1.06-1.09x faster; see README, Speed)")
    s = p.add_argument_group("sampling")
    s.add_argument("--strategy", type=_arg(parse_strategies), default=None, metavar="NAME[,NAME…]|all",
                   help=_strategy_help() + ". Several names (or all): one video per strategy, same prompt and seed, "
                        "and <name>_grid.mp4 with them side by side")
    s.add_argument("--mode", choices=modes, default=None,
                   help=f"the original strategies by their old name: rag (retrieval) or native (sliding window)"
                        f"{', or both' if 'both' in modes else ''}; same as --strategy (default {default_mode}; native "
                        f"is the backbone's published method)")
    p.set_defaults(default_mode=default_mode)
    s.add_argument("--encoder", default="avg_pool", help="retrieval encoder checkpoint (ae_latent_mem.pt) or avg_pool")
    s.add_argument("--top-k", "--memory-size", dest="top_k", type=int, default=DEFAULT_RETRIEVAL.top_k,
                   help="K: past frames retrieved per block (--memory-size is the published name)")
    s.add_argument("--recent-exclude", type=int, default=DEFAULT_RETRIEVAL.recent_exclude,
                   help="R: most recently evicted frames never retrieved")
    s.add_argument("--sink", "--sink-size", dest="sink", type=int,
                   help="S: first latent frames kept forever (default: the strategy's on this backbone; native/rag: "
                        f"the backbone family's: {fragment('sink')})")
    s.add_argument("--window", "--local-attn-size", dest="window", type=int,
                   help="L: KV cache window in latent frames (default: the strategy's on this backbone; native/rag: "
                        f"the backbone family's: {fragment('window')})")
    s.add_argument("--strategy-options", type=_arg(parse_options), default={}, metavar="NAME=VALUE[,…]",
                   help="the strategy's own settings, e.g. alpha_long=0.02 (memrope) or compressed_frames=5,"
                        "recent_frames=3 (deep-forcing); default: its published values on this backbone")
    s.add_argument("--frames-per-block", type=int, help="latent frames per block " + FAMILY.format(fragment("block")))
    s.add_argument("--sampler", choices=SAMPLERS, help="renoise: x0 then fresh noise at each step (Self-Forcing, LongLive); unipc: "
                   "a UniPC solver per block; rolling: blocks denoised together (Rolling Forcing) " + FAMILY.format(per_family(lambda d: d.sampler)))
    s.add_argument("--steps", type=_arg(parse_steps), help="renoise, rolling: the denoising timesteps (default: the family's, else "
                   f"{','.join(map(str, get_sampler('renoise').published['steps']))})")
    s.add_argument("--sampling-steps", type=int, help="unipc sampler: solver steps (default: the family's, else "
                   f"{get_sampler('unipc').published['sampling_steps']})")
    s.add_argument("--shift", type=float, help="timestep shift " + FAMILY.format(fragment("shift")))
    s.add_argument("--context-noise", type=float, help="noise level of the clean context pass (default 0)")
    s.add_argument("--width", type=int, help="video width in px, as the sampler node's (instead of --latent-size)")
    s.add_argument("--height", type=int, help="video height in px (with --width; default: the family's)")
    s.add_argument("--latent-size", type=_arg(parse_size),
                   help="HxW of the latent " + FAMILY.format(per_family(
                       lambda d: "{0}x{1} = {3}x{2} px".format(*d.latent_hw, *d.latent.video_size(d.latent_hw)))))
    s.add_argument("--seed", type=int, default=0, help="noise seed (prompt i of a list uses seed + i)")
    s.add_argument("--noise-contract", choices=NOISE_CONTRACTS,
                   help="per-block (default): block k's noise depends only on (seed, k), so a run's first seconds equal the "
                        "shorter run and resume/extend are exact; reference: the published code's draws (the "
                        "golden cases). The same seed gives different videos under the two")
    _add_pool_and_switch_options(p)
    add_shot_and_guidance_options(p, per_family)
    add_memory_options(p)


def _add_pool_and_switch_options(p: argparse.ArgumentParser) -> None:
    """The history pool's options (rag) and what a prompt switch does."""
    m = p.add_argument_group("history pool (rag mode)")
    m.add_argument("--pool", choices=POOL_LOCATIONS, default="host",
                   help="where evicted frames' K/V live first (host RAM is the published behaviour)")
    m.add_argument("--pool-budget-mb", type=_arg(parse_pool_budget), default=AUTO, metavar="auto|MB",
                   help="memory budget of that first location; frames beyond it spill to the next (device→host→disk). "
                        "auto (default): half of the memory the rest of the run leaves free there; a number of MB; "
                        "0 = unlimited: every frame that leaves the window stays in memory (tens of GB for 30 s at "
                        "the published sizes: README, History Pool)")
    m.add_argument("--pool-dir", default=None, help="folder for the disk pool's file (default: system temp)")
    m.add_argument("--pool-storage", choices=POOL_STORAGES, default="kv",
                   help="kv: exact (default); kv-half: half the bytes (approximate); kv-fp8: float8 with a scale per "
                        "token and head, about half of bf16 / a quarter of float32 K/V (approximate); "
                        "latent: store latents, recompute K/V on retrieval (approximate, smallest)")
    m.add_argument("--prefetch", choices=PREFETCH, default=DEFAULT_RETRIEVAL.prefetch,
                   help="read each block's retrieved frames during the previous block's context pass (same output); "
                        "auto: on a GPU only (on a CPU the read competes with the compute)")
    w = p.add_argument_group("prompt switches (a prompt schedule)")
    w.add_argument("--switch", choices=SWITCH_MODES,
                   help="recache: re-encode the cached window under the new prompt (LongLive); none: only the "
                        "cross-attention prompt changes (default of memrope, deep-forcing); flush: infinity-rope's KV "
                        "flush, + a RoPE cut into prompts marked 'cut' (its default). Native/rag "
                        + FAMILY.format(per_family(lambda d: d.switch)))
    w.add_argument("--global-sink", action=argparse.BooleanOptionalAction, default=None,
                   help="a re-cache keeps the sink frames' K/V once the window has filled (LongLive's global_sink; "
                        "default on)")
    w.add_argument("--retrieval-scope", choices=RETRIEVAL_SCOPES,
                   help="rag mode: all past frames stay retrievable after a switch (default), or only the current "
                        "prompt's (segment)")


def parse_pool_budget(text: str) -> float | str | None:
    """--pool-budget-mb: 'auto', a number of MB, or 0 (unlimited: None)."""
    if text.strip().lower() == AUTO:
        return AUTO
    try:
        mb = float(text)
    except ValueError:
        mb = -1.0
    if not mb >= 0:
        raise ValueError(f"pool budget '{text}' must be auto, a number of MB ≥ 0, or 0 (unlimited)")
    return mb or None


def parse_strategies(text: str) -> tuple[str, ...]:
    """'memrope' / 'native,rag' / 'all' → the strategy names (every name checked; unknown → the list)."""
    names = STRATEGIES if text.strip() == "all" else tuple(n.strip() for n in text.split(",") if n.strip())
    for n in names:
        if n not in STRATEGIES:
            raise ValueError(f"invalid choice: '{n}' (choose from {', '.join(STRATEGIES)}, or all)")
    if not names or len(set(names)) != len(names):
        raise ValueError(f"--strategy '{text}' must name each strategy once (e.g. native,memrope or all)")
    return names


def strategy_names(args) -> list[str]:
    """The strategies to run: --strategy (one, several or all), or --mode (rag, native, or both of them), or the
    command's default."""
    if args.strategy is not None and args.mode is not None and args.mode != ",".join(args.strategy):
        raise ValueError(f"--strategy {','.join(args.strategy)} and --mode {args.mode} disagree; give one of them")
    if args.strategy is not None:
        return list(args.strategy)
    name = args.mode or args.default_mode
    return ["native", "rag"] if name == "both" else [name]


def family_defaults(args, progress: jobs.Progress | None = None) -> FamilyDefaults:
    """The run defaults of the backbone's family, read from the file's tensor names and shapes (no weights).
    A file that cannot be identified gets the default family's; loading it later reports the problem."""
    from ..formats import CheckpointError, detect_defaults
    try:
        family, preset, defaults = detect_defaults(args.backbone)
    except (CheckpointError, OSError):
        return default_family().defaults
    if progress is not None and defaults is not default_family().defaults:
        progress.report(f"{preset if preset in family.variants else family.name} backbone: {defaults.describe()} (unless set)")
    return defaults


def sampling_request(args, name: str) -> SamplingRequest:
    """What the options ask of a run with strategy ``name`` (unset options: None, the family's or strategy's)."""
    retrieval = None
    if name == "rag":
        pool = PoolConfig(args.pool, args.pool_budget_mb, args.pool_storage, args.pool_dir)
        retrieval = RetrievalConfig(args.top_k, args.recent_exclude, pool, prefetch=args.prefetch)
    return SamplingRequest(strategy=name, window=args.window, sink=args.sink,
                           options=tuple(args.strategy_options.items()), retrieval=retrieval,
                           frames_per_block=args.frames_per_block, sampler=args.sampler, steps=args.steps,
                           sampling_steps=args.sampling_steps, shift=args.shift, context_noise=args.context_noise,
                           noise=args.noise_contract, switch=args.switch, global_sink=args.global_sink,
                           retrieval_scope=args.retrieval_scope, shot_rope_offset=args.shot_rope_offset,
                           shot_sink=args.multi_shot_sink, shot_clean_recache=args.shot_clean_recache,
                           guidance_scale=args.guidance_scale)


def run_request(args, name: str, start_frames: int = 0) -> RunRequest:
    """The whole run the options ask for with strategy ``name`` (length, size, start)."""
    if args.latent_size is not None and (args.width or args.height):
        raise ValueError("give the size once: --latent-size HxW (latents) or --width/--height (px)")
    return RunRequest(sampling_request(args, name), frames=args.frames, video_frames=getattr(args, "length", None),
                      seconds=getattr(args, "seconds", None), latent_hw=args.latent_size, width=args.width,
                      height=args.height, start_frames=start_frames)


def plans(args, defaults: FamilyDefaults, start_frames: int = 0, preset: str = "") -> dict[str, RunPlan]:
    """One plan per strategy the options name (checked here, before any model is loaded, memory included)."""
    runs = {name: plan_run(run_request(args, name, start_frames), defaults, preset) for name in strategy_names(args)}
    check_fits(args, runs)
    return runs


def check_fits(args, runs: dict[str, RunPlan]) -> None:
    """Resolve the auto weights and memory settings, then refuse a run the memory cannot hold (check_memory, on the
    backbone's sizes from its file), before anything is loaded; an unreadable backbone is left to its loader."""
    from ..formats import CheckpointError, backbone_on_meta, is_fp8_file
    from ..sampling.prompt_files import prompt_batch
    try:
        model = backbone_on_meta(args.backbone, num_heads=args.num_heads, use_ema=not args.no_ema)
    except (CheckpointError, OSError):
        return
    spec = model_spec(args)
    device, dtype = spec.resolve(current_rank())
    batch = prompt_batch(args.embeds) if isinstance(getattr(args, "embeds", None), str) else 1
    for plan in runs.values():
        args.weights = choose_weights(plan, model, batch, device, dtype, spec.memory, spec.weights,
                                      is_fp8_file(args.backbone))          # what the load then keeps on the device
        fitted = to_fp8(model) if args.weights == "fp8" else model
        memory = choose_memory(plan, fitted, batch, device, dtype, spec.memory).settings
        check_memory(plan, fitted, batch, device, dtype, memory=memory)
        args.block_swap = memory.block_swap or getattr(args, "block_swap", "auto")   # swapped: loaded to RAM first


def model_spec(args) -> jobs.ModelSpec:
    return jobs.ModelSpec(args.backbone, lora=args.lora, lora_strength=args.lora_strength, num_heads=args.num_heads,
                          use_ema=not args.no_ema, encoder=args.encoder, device=args.device, dtype=args.dtype,
                          compile=args.compile, memory=memory_settings(args),
                          weights=getattr(args, "weights", AUTO))


def cmd_generate(args, progress: jobs.Progress) -> int:
    defaults = family_defaults(args, progress)
    latent = defaults.latent
    start = StartFiles(args.continue_from, args.image, args.video)
    if args.embeds is not None and (args.image or args.video):
        raise ValueError("--image and --video need the VAE of a text run (--prompt ... --vae ...); with --embeds "
                         "start from latents: --continue-from")
    if args.embeds is None and args.resume:
        raise ValueError("--resume is for --embeds runs; a stopped video run is picked up by running the same "
                         "command again")
    size = RunRequest(latent_hw=args.latent_size, width=args.width, height=args.height)   # the run's, before the start
    given = start.check(latent_size(size, defaults), latent, progress.report) if args.resume is None else 0
    runs = plans(args, defaults, given)
    negative = negative_text(args, defaults)
    first = next(iter(runs.values()))
    configs = {name: plan.config for name, plan in runs.items()}
    if args.embeds is None:
        missing = [o for o, v in (("--text-encoder", args.text_encoder), ("--vae", args.vae),
                                  ("--out-dir", args.out_dir)) if v is None]
        if missing:
            source = next(o for o, v in (("--prompt-schedule", args.prompt_schedule), ("--prompt", args.prompt),
                                         ("--prompts", args.prompts)) if v is not None)
            embeds = ("; without a text encoder, give the prompts as embeddings instead: --embeds FILE with --out "
                      "('prompt_embeds' [B, L, D]; a schedule adds 'prompt_embeds_1', … and 'switch_frames')"
                      if args.text_encoder is None else "")
            raise ValueError(f"generating from text ({source}) needs {', '.join(missing)}{embeds}")
        check_output_dir(args.out_dir, "--out-dir")
        story = ()
        if args.prompt_schedule is not None:
            story = tuple(read_schedule_file(args.prompt_schedule, latent))
            show_timeline([p.frame for p in story], [p.describe() for p in story], first.config, first.frames,
                          progress, latent)
        prompts = (story[0].text,) if story else tuple(jobs.read_prompts(args.prompt, args.prompts))
        job = jobs.VideoJob(prompts, first.frames, first.latent_hw, args.seed, args.text_encoder, args.vae,
                            args.out_dir, latent, args.overwrite, start, story, args.partial_every, negative)
        return (jobs.story_to_video if story else jobs.text_to_video)(model_spec(args), configs, job, progress)
    if args.out is None or len(runs) > 1:
        raise ValueError("generating from --embeds needs --out and one strategy (--strategy NAME, or --mode rag / "
                         "native)")
    for path, what in ((args.out, "--out"), (args.log, "--log"), (args.timings, "--timings")):
        if path is not None:
            check_output_file(path, what)
    segments = load_prompt_schedule(args.embeds).segments
    show_timeline([s.start for s in segments], [s.label for s in segments], first.config, first.frames, progress,
                  latent)
    job = jobs.LatentJob(args.embeds, first.frames, first.latent_hw, args.seed, args.out, args.log, args.timings,
                         start=args.continue_from, resume=args.resume, partial_every=args.partial_every)
    return jobs.generate_latents(model_spec(args), first.config, job, progress)


def show_timeline(starts: list[int], labels: list[str], cfg: SamplingConfig, frames: int,
                  progress: jobs.Progress, latent: LatentFormat) -> None:
    """Check that every prompt begins before the end; print where each begins (rounding shown; seconds in the
    backbone's ``latent`` format)."""
    fire_frames(starts, cfg.frames_per_block, frames, labels, latent)
    if len(starts) > 1:
        for line in timeline(starts, labels, cfg.frames_per_block, latent):
            progress.report(line)


def cmd_build_corpus(args, progress: jobs.Progress) -> int:
    if not args.embeds and not (args.prompts and args.text_encoder):
        raise ValueError("build-corpus needs --embeds FILE... or --prompts FILE with --text-encoder DIR")
    runs = plans(args, family_defaults(args, progress))
    if len(runs) > 1:
        raise ValueError(f"build-corpus runs one strategy; --strategy names {len(runs)} ({', '.join(runs)})")
    plan = next(iter(runs.values()))
    check_output_dir(args.out, "--out")
    job = jobs.CorpusJob(args.out, plan.frames, plan.latent_hw, args.seed, tuple(args.embeds or ()),
                         args.prompts, args.text_encoder)
    return jobs.build_corpus(model_spec(args), plan.config, job, progress)


def _add_generate(sub) -> None:
    gen = sub.add_parser("generate", help="generate latents from prompt embeddings, or videos from prompts")
    add_generation_options(gen, modes=(*MODES, "both"))
    src = gen.add_mutually_exclusive_group(required=True)
    src.add_argument("--embeds", help="safetensors with 'prompt_embeds' [B, L, text_dim] (writes latents); a schedule "
                                      "adds 'prompt_embeds_1', 'prompt_embeds_2', … and 'switch_frames' (int64 [S−1])")
    src.add_argument("--prompt", help="one text prompt (writes a video)")
    src.add_argument("--prompts", help="text file, one prompt per line (sharded across torchrun processes)")
    src.add_argument("--prompt-schedule", help="a story: text file of timed prompts, one per line, '0s: a fox ...' / "
                                               "'12s: ...' (seconds) or '48f: ...' (latent frames), or a .json list "
                                               "of {\"time\", \"prompt\"}; one video per mode")
    length = gen.add_mutually_exclusive_group()
    length.add_argument("--frames", type=int, help="latent frames (multiple of the block size)")
    length.add_argument("--seconds", type=float, help=f"video length at the backbone's rate ({fragment('fps')}), "
                                                      "the nearest whole number of blocks")
    length.add_argument("--length", type=int, metavar="VIDEO_FRAMES", help="video frames, as the sampler node's "
                        "'length' (4k+1; rounded up to whole blocks)")
    start = gen.add_argument_group("starting from something (--frames / --seconds is the whole video's length)")
    one = start.add_mutually_exclusive_group()
    one.add_argument("--continue-from", metavar="LATENTS", help="begin with these latents (this tool's output or any "
                     "[B,C,T,H,W] model-space latents, C = 16 Wan2.1 / 48 Wan2.2): extend a video")
    one.add_argument("--image", metavar="FILE", help="text mode: begin with this image (one latent frame). The video "
                     "keeps the run's size (--latent-size or --width/--height, else the family's): an image of "
                     "another size is centre-cropped to that aspect ratio and scaled to it. LongLive 2.0 holds it "
                     "clean inside the first block (image-to-video)")
    one.add_argument("--video", metavar="FILE", help="text mode: begin with this clip (its first 4k+1 frames; "
                     "fitted to the run's size like --image)")
    start.add_argument("--resume", metavar="PARTIAL", help="--embeds: finish a stopped run from its OUT.partial.safetensors "
                       "(the same command plus this; the same command alone picks OUT's up by itself); exact")
    start.add_argument("--partial-every", type=_arg(parse_seconds), default=PARTIAL_EVERY, metavar="SECONDS",
                       help="keep the finished blocks in OUT.partial.safetensors (a video's: "
                            f"<name>.partial.safetensors) every SECONDS (default {PARTIAL_EVERY:g}, and writing it never takes more than 1/20 of "
                            "the time; 0: after every block), when stopped, and until every output is written: a "
                            "killed run loses at most that much")
    gen.add_argument("--out", help="--embeds: output .safetensors ('latents' [B,C,T,H,W]); a missing folder is created "
                                   "if its parent exists, a longer missing path is refused (a typo)")
    gen.add_argument("--log", help="--embeds: retrieval log .json")
    gen.add_argument("--timings", help="--embeds: per-block timings and peak memory .json")
    gen.add_argument("--text-encoder", help="text mode: a Wan2.1 or Wan2.2 folder (models_t5_umt5-xxl-enc-bf16.pth + google/umt5-xxl) or diffusers folder")
    gen.add_argument("--vae", help="text mode: Wan2.1_VAE.pth or a diffusers vae/ folder (LongLive 2.0: the Wan2.2 VAE's "
                                   "diffusers vae/ folder)")
    gen.add_argument("--out-dir", help="text mode: folder for <index>_<prompt>_<mode>.mp4/.retrieval.json/"
                                       ".retrieval_map.png; created if its parent exists, a longer missing path is "
                                       "refused (a typo)")
    gen.add_argument("--overwrite", action="store_true", help="text mode: redo videos that already exist")
    gen.set_defaults(func=cmd_generate)


def _add_build_corpus(sub) -> None:
    corpus = sub.add_parser("build-corpus", help="save a frozen backbone's clean latents (encoder training data)")
    add_generation_options(corpus, default_mode="native")
    src = corpus.add_mutually_exclusive_group(required=True)
    src.add_argument("--embeds", nargs="+", help="prompt-embedding safetensors files (one video per row)")
    src.add_argument("--prompts", help="text file, one prompt per line (needs --text-encoder)")
    corpus.add_argument("--text-encoder", help="Wan2.1 text encoder folder (with --prompts)")
    corpus.add_argument("--frames", type=int, default=90, help="latent frames per video")
    corpus.add_argument("--out", required=True, help="output folder, one <name>.safetensors ('latents' [T,C,H,W]) per video")
    corpus.set_defaults(func=cmd_build_corpus)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m core", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_generate(sub)
    _add_build_corpus(sub)
    train_encoder.add_cli(sub)
    demo.add_cli(sub)
    convert_cli.add_cli(sub)
    return parser


def parse_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise ValueError(f"'{text}' is not a number of seconds ≥ 0 (e.g. 60; 0: after every block)")
    return value


def _interrupted(progress: jobs.Progress, why: str = "") -> str:
    where = f" of {progress.current}" if progress.current else ""
    kept = f"; finished outputs kept: {len(progress.finished)}" if progress.finished else ""
    return f"interrupted{why} after block {progress.blocks_done}{where}; nothing half-written{kept}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    progress = jobs.Progress()
    try:
        with handling_signals():
            return args.func(args, progress)
    except KeyboardInterrupt as exc:
        stopped = isinstance(exc, Stopped) and exc.name != "SIGINT"
        print(_interrupted(progress, f" ({exc.name})" if stopped else ""), file=sys.stderr)
        return exc.exit_code if isinstance(exc, Stopped) else 130
    except (ValueError, OSError) as exc:       # CheckpointError is a ValueError; FileNotFoundError an OSError
        print(f"error: {exc}", file=sys.stderr)
        return 2
