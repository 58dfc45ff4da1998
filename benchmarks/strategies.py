"""Every long-context strategy on the same backbone, prompt and seed: time per block and memory.

    python benchmarks/strategies.py                       # medium size, 24 → 192 latent frames
    python benchmarks/strategies.py --frames 24,48 --strategies native,rag     # quicker
    python benchmarks/strategies.py --strategies native,rolling       # the rolling block sampler beside native
    python benchmarks/strategies.py --preset "Causal-Forcing++ 2-step" --frames 36,72   # a frame-wise variant
    python benchmarks/strategies.py --preset "Rolling Forcing" --strategies native      # refuses the others
    python benchmarks/strategies.py --preset "LongLive 2.0" --strategies native,rag --frames 48,64  # Wan2.2, UniPC
    python benchmarks/strategies.py --preset "LongLive 2.0" --strategies native --guidance 3      # a second cache

Each (strategy, length) runs in a fresh process (so its peak RSS is its own), one after the other in a
rotating order (a change of machine load hits every strategy); ``--repeats N`` runs each N times, interleaved, and
reports medians. On a loaded machine ``--threads 1`` scatters far less than 2 threads on 2 shared cores. The medium size of benchmarks/floor.py:
4 layers of 512 (4 heads of 128), 16x24 latents (96 tokens per frame), random weights, float32, in the family's
latent channels (Wan2.1 16, LongLive 2.0's Wan2.2 48).

Reported per run: the median time of the blocks from frame 30 on (from the window's size when it is larger:
every strategy's context is full there; Rolling Forcing: also without its last blocks, where its window drains),
as video frames per second in the line of benchmarks/speed_line.py (with the backbone forwards per block, counted),
the attention cache's bytes (``GenerationResult.cache_bytes``: K/V, context buffers, memory tokens — what sits on
the GPU in a CUDA run), the history pool's peak bytes (retrieval only; host RAM by
default), the process's peak RSS and its RSS once the model was loaded. Growth per 24 frames is the
slope of cache + pool bytes between the shortest and the longest run. Real size (the family's released model at
its published size in bf16: Wan2.1-1.3B 480x832, Wan2.2-5B 704x1280) scales the measured bytes per token-layer-dim.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402

from floor import MEDIUM, MEDIUM_HW, STEADY_FROM_FRAME, prompt, random_model, write_result  # noqa: E402
from speed_line import ForwardCounter, Measured, device_name, speed_line  # noqa: E402
from core.app.plan import strategy_config
from core.families.registry import FAMILIES, family  # noqa: E402
from core.sampling.prompts import PromptSchedule  # noqa: E402

WAN21 = family("Wan2.1 text-to-video")


def strategy_names() -> list[str]:
    from core.context.strategies import NAMES
    return list(NAMES)


def backbone(preset: str | None):
    """The family a preset belongs to (None: the chunk-wise Wan2.1 backbones) and its run settings."""
    fam = next((f for f in FAMILIES if preset in f.presets), None) if preset else WAN21
    if fam is None:
        raise SystemExit(f"--preset '{preset}' is no backbone preset; the known ones are "
                         + ", ".join(repr(p) for f in FAMILIES for p in f.presets))
    return fam, fam.defaults_for(preset)


def medium_model(defaults):
    """The medium size of benchmarks/floor.py in the family's latent channels (Wan2.1 16, Wan2.2 48)."""
    c = defaults.latent.channels
    return random_model(replace(MEDIUM, in_dim=c, out_dim=c))


def steady_from(cfg) -> int:
    """The first latent frame whose block is timed: from frame 30 (the default window and rag's retrieved frames are
    full) or the window's size if that is larger (LongLive 2.0: 32)."""
    return max(STEADY_FROM_FRAME, cfg.window)


def one_run(name: str, frames: int, threads: int, preset: str | None = None, guidance: float = 1.0) -> dict:
    """The child process: one generate call of strategy ``name``, ``frames`` latent frames, with a backbone preset's
    settings (a frame-wise Causal Forcing++, Rolling Forcing, LongLive 2.0; None: the chunk-wise Wan2.1 backbones)."""
    from core.sampling.loop import generate
    torch.set_num_threads(threads)
    # "rolling": native under Rolling Forcing's settings (the rolling block sampler, its steps, window and anchor)
    strategy, preset = ("native", "Rolling Forcing") if name == "rolling" else (name, preset)
    fam, defaults = backbone(preset)
    cfg = strategy_config(strategy, defaults, **({"guidance_scale": guidance} if guidance != 1 else {}))
    counter = ForwardCounter()
    model = counter.count(medium_model(defaults))
    text = prompt(MEDIUM)
    if cfg.guided:
        text = PromptSchedule(PromptSchedule.single(text).segments, negative=prompt(MEDIUM, seed=2))
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    res = generate(model, text, frames, MEDIUM_HW, 0, cfg, timings=True, callback=counter)
    # the rolling sampler's last blocks drain its window (fewer blocks per call): cheaper, not the steady state
    tail = len(cfg.steps) - 1 if cfg.sampler == "rolling" else 0
    last = len(res.timings) - tail
    blocks = [t for t in res.timings[:last] if t["block"] * cfg.frames_per_block >= steady_from(cfg)] or res.timings[-2:]
    latent = defaults.latent
    measured = Measured(
        block_s=statistics.median(t["total_s"] for t in blocks), blocks=len(blocks),
        latent_frames_per_block=cfg.frames_per_block, time_stride=latent.time_stride, latent_hw=MEDIUM_HW,
        spatial_stride=latent.stride, tokens_per_frame=model.tokens_per_frame(*MEDIUM_HW),
        steps=f"{cfg.sampler} sampler, {cfg.block_sampler.describe(cfg)}",
        forwards_per_block=statistics.median(counter.per_block[t["block"]] for t in blocks),
        model=f"medium {MEDIUM.num_layers}×{MEDIUM.dim} (random weights)", dtype=torch.float32,
        device=device_name("cpu", threads),
        skipped=f"blocks before latent frame {steady_from(cfg)} (window filling, warm-up)"
                + (f" and the last {tail} (the rolling window draining)" if tail else ""),
        extra=f"{preset or 'Self-Forcing/Causal-Forcing/LongLive'} settings, strategy {strategy} (window {cfg.window}, "
              f"sink {cfg.sink})" + (f", guidance {cfg.guidance_scale:g} (a second cache)" if cfg.guided else ""))
    return {"strategy": name, "preset": preset, "family": fam.name, "frames": frames, "window": cfg.window,
            "sink": cfg.sink, "guidance": cfg.guidance_scale,
            "block_ms": 1e3 * measured.block_s, "video_fps": measured.video_fps, "speed_line": speed_line(measured),
            "forwards_per_block": measured.forwards_per_block,
            "cache_bytes": res.cache_bytes, "pool_peak_bytes": res.pool_peak_bytes,
            "pool_bytes_per_frame": res.pool_bytes_per_frame,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "rss_loaded_mb": rss_loaded,
            "cuda_peak_mb": res.peak_memory_mb if torch.cuda.is_available() else None,
            "load_average": os.getloadavg()[0]}


def child(name: str, frames: int, threads: int, preset: str | None = None, guidance: float = 1.0) -> dict:
    cmd = [sys.executable, __file__, "--one", name, "--frames", str(frames), "--threads", str(threads),
           "--guidance", str(guidance)] + (["--preset", preset] if preset else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=dict(os.environ, OMP_NUM_THREADS=str(threads)))
    return json.loads(out.stdout.strip().splitlines()[-1])


def to_real_size(medium_bytes: float, fam=WAN21) -> float:
    """Bytes measured at the medium size (float32) → the same structure at the family's released size in bf16
    (Wan2.1-1.3B at 832×480: 30 layers of 1536, 1560 tokens per frame; Wan2.2-5B at 1280×704: 30 of 3072, 880):
    the cache and the pool hold per-token, per-layer vectors of the model width, so bytes scale with
    tokens · layers · dim · element size."""
    tokens = (MEDIUM_HW[0] // 2) * (MEDIUM_HW[1] // 2)
    per = medium_bytes / (tokens * MEDIUM.num_layers * MEDIUM.dim * 4)
    real, (h, w) = fam.released, fam.defaults.latent_hw
    real_tokens = (h // real.patch_size[1]) * (w // real.patch_size[2])
    return per * real_tokens * real.num_layers * real.dim * 2


def summarise(runs: list[dict], names: list[str], lengths: list[int], fam=WAN21) -> list[dict]:
    """One row per strategy: medians over the repeats at each length, memory at the longest length."""
    latent = fam.defaults.latent
    rows = []
    for name in names:
        mine = {f: [r for r in runs if r["strategy"] == name and r["frames"] == f] for f in lengths}
        med = {f: sorted(rs, key=lambda r: r["block_ms"])[(len(rs) - 1) // 2] for f, rs in mine.items()}
        a, b = med[lengths[0]], med[lengths[-1]]
        held = lambda r: r["cache_bytes"] + r["pool_peak_bytes"]  # noqa: E731
        growth = (held(b) - held(a)) / max(1, lengths[-1] - lengths[0]) * 24
        rows.append({"strategy": name, "window": b["window"], "sink": b["sink"],
                     "block_ms": {f: statistics.median(r["block_ms"] for r in mine[f]) for f in lengths},
                     "video_fps": statistics.median(r["video_fps"] for r in mine[lengths[-1]]),
                     "repeats": len(mine[lengths[-1]]), "speed_line": b["speed_line"],
                     "cache_mb": b["cache_bytes"] / 2**20, "pool_mb": {f: med[f]["pool_peak_bytes"] / 2**20 for f in lengths},
                     "peak_rss_mb": {f: med[f]["peak_rss_mb"] for f in lengths},
                     "growth_mb_per_24_frames": growth / 2**20,
                     "real_cache_gib": to_real_size(b["cache_bytes"], fam) / 2**30,
                     "real_pool_gib_per_30s": to_real_size(b["pool_bytes_per_frame"], fam) * 30 * latent.fps
                     / latent.time_stride / 2**30})
    return rows


def print_table(rows: list[dict], lengths: list[int], fam=WAN21) -> None:
    real = f"{fam.released.num_layers}x{fam.released.dim}"
    print(f"{'strategy':14} {'win/sink':>8} {'fps@' + str(lengths[-1]):>8} " + " ".join(f"{'ms@' + str(f):>8}" for f in lengths)
          + f" {'cache MB':>9} {'pool MB@' + str(lengths[-1]):>12} {'RSS MB@' + str(lengths[-1]):>11}"
          + f" {'+MB/24f':>8} {real + ' cache GiB':>17} {real + ' pool GiB/30s':>20}")
    for r in rows:
        print(f"{r['strategy']:14} {str(r['window']) + '/' + str(r['sink']):>8} {r['video_fps']:8.2f} "
              + " ".join(f"{r['block_ms'][f]:8.1f}" for f in lengths)
              + f" {r['cache_mb']:9.2f} {r['pool_mb'][lengths[-1]]:12.2f} {r['peak_rss_mb'][lengths[-1]]:11.0f}"
              + f" {r['growth_mb_per_24_frames']:8.2f} {r['real_cache_gib']:17.2f} {r['real_pool_gib_per_30s']:20.2f}")
    for r in rows:
        print(f"{r['strategy']}: {r['speed_line']}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--strategies", help="comma-separated (default: every registered strategy)")
    ap.add_argument("--frames", default="24,48,96,192", help="latent frame counts, comma-separated")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--preset", help="a backbone preset's settings, e.g. 'Causal-Forcing++ 2-step' (frame-wise), "
                                     "'Rolling Forcing' (native only), 'LongLive 2.0' (Wan2.2, 48 channels)")
    ap.add_argument("--guidance", type=float, default=1.0, help="guidance scale (≠ 1: a negative prompt, a second cache)")
    ap.add_argument("--repeats", type=int, default=1, help="runs of each strategy and length (medians reported)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    lengths = sorted(int(f) for f in args.frames.split(","))
    if args.one:
        print(json.dumps(one_run(args.one, lengths[0], args.threads, args.preset, args.guidance)))
        return 0
    fam, _ = backbone(args.preset)
    names = args.strategies.split(",") if args.strategies else strategy_names()
    runs = []
    for i, frames in enumerate(lengths * args.repeats):
        order = names[i % len(names):] + names[:i % len(names)]       # rotate who runs first
        for name in order:
            runs.append(child(name, frames, args.threads, args.preset, args.guidance))
            print(f"  {name:14} {frames:4d} frames: {runs[-1]['block_ms']:7.1f} ms/block, "
                  f"{runs[-1]['video_fps']:6.2f} video fps, cache {runs[-1]['cache_bytes'] / 2**20:.2f} MB, "
                  f"pool {runs[-1]['pool_peak_bytes'] / 2**20:.2f} MB, RSS {runs[-1]['peak_rss_mb']:.0f} MB, "
                  f"load {runs[-1]['load_average']:.2f}", flush=True)
    rows = summarise(runs, names, lengths, fam)
    print_table(rows, lengths, fam)
    tag = (args.preset or "").lower().replace(" ", "_").replace("+", "p") + (f"_cfg{args.guidance:g}" if args.guidance != 1 else "")
    write_result("strategies" + ("_" + tag.strip("_") if tag else ""),
                 {"command": " ".join(sys.argv), "threads": args.threads, "runs": runs, "table": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
