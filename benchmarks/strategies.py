"""Every long-context strategy on the same backbone, prompt and seed: time per block and memory.

    python benchmarks/strategies.py                       # medium size, 24 → 192 latent frames
    python benchmarks/strategies.py --frames 24,48 --strategies native,rag     # quicker
    python benchmarks/strategies.py --strategies native,rolling       # the rolling block sampler beside native
    python benchmarks/strategies.py --preset "Causal-Forcing++ 2-step" --frames 36,72   # a frame-wise variant

Each (strategy, length) runs in a fresh process (so its peak RSS is its own), one after the other in a
rotating order (a change of machine load hits every strategy). The medium size of benchmarks/floor.py:
4 layers of 512 (4 heads of 128), 16x24 latents (96 tokens per frame), random weights, float32.

Reported per run: the median time of the blocks from frame 30 on (every strategy's context is full
there), the attention cache's bytes (``GenerationResult.cache_bytes``: K/V, context buffers, memory
tokens — what sits on the GPU in a CUDA run), the history pool's peak bytes (retrieval only; host RAM by
default), the process's peak RSS and its RSS once the model was loaded. Growth per 24 frames is the
slope of cache + pool bytes between the shortest and the longest run. Real size (Wan2.1-1.3B at
480x832: 30 layers of 1536, 1560 tokens per frame, bf16) scales the measured bytes per token-layer-dim.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402

from floor import MEDIUM, MEDIUM_HW, prompt, random_model, steady_blocks, write_result  # noqa: E402
from core.app.plan import strategy_config
from core.families.registry import family  # noqa: E402

REAL = {"layers": 30, "dim": 1536, "tokens": 1560, "bytes": 2}   # Wan2.1-T2V-1.3B, 480x832, bf16
WAN21 = family("Wan2.1 text-to-video").defaults.latent             # strategy_config's defaults are this family's
FRAMES_PER_SECOND = WAN21.fps / WAN21.time_stride                 # latent frames per video second


def strategy_names() -> list[str]:
    from core.context.strategies import NAMES
    return list(NAMES)


def one_run(name: str, frames: int, threads: int, preset: str | None = None) -> dict:
    """The child process: one generate call of strategy ``name``, ``frames`` latent frames (with a Wan2.1 variant's
    settings, e.g. frame-wise Causal Forcing++, when ``preset`` names one)."""
    from core.app.plan import strategy_config
    from core.sampling.loop import generate
    torch.set_num_threads(threads)
    model = random_model()
    # "rolling": native under Rolling Forcing's settings (the rolling block sampler, its steps, window and anchor)
    strategy, preset = ("native", "Rolling Forcing") if name == "rolling" else (name, preset)
    cfg = strategy_config(strategy, family("Wan2.1 text-to-video").defaults_for(preset))
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    res = generate(model, prompt(MEDIUM), frames, MEDIUM_HW, 0, cfg, timings=True)
    blocks = steady_blocks(res.timings, cfg.frames_per_block) or res.timings[-2:]
    return {"strategy": name, "frames": frames, "window": cfg.window, "sink": cfg.sink,
            "block_ms": 1e3 * statistics.median(t["total_s"] for t in blocks),
            "cache_bytes": res.cache_bytes, "pool_peak_bytes": res.pool_peak_bytes,
            "pool_bytes_per_frame": res.pool_bytes_per_frame,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "rss_loaded_mb": rss_loaded,
            "cuda_peak_mb": res.peak_memory_mb if torch.cuda.is_available() else None}


def child(name: str, frames: int, threads: int, preset: str | None = None) -> dict:
    cmd = [sys.executable, __file__, "--one", name, "--frames", str(frames), "--threads", str(threads)] + \
        (["--preset", preset] if preset else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=dict(os.environ, OMP_NUM_THREADS=str(threads)))
    return json.loads(out.stdout.strip().splitlines()[-1])


def to_real_size(medium_bytes: float) -> float:
    """Bytes measured at the medium size (float32) → the same structure at Wan2.1-1.3B 480p in bf16: the
    cache and the pool hold per-token, per-layer vectors of the model width, so bytes scale with
    tokens · layers · dim · element size."""
    tokens = (MEDIUM_HW[0] // 2) * (MEDIUM_HW[1] // 2)
    per = medium_bytes / (tokens * MEDIUM.num_layers * MEDIUM.dim * 4)
    return per * REAL["tokens"] * REAL["layers"] * REAL["dim"] * REAL["bytes"]


def summarise(runs: list[dict], names: list[str], lengths: list[int]) -> list[dict]:
    rows = []
    for name in names:
        mine = {r["frames"]: r for r in runs if r["strategy"] == name}
        a, b = mine[lengths[0]], mine[lengths[-1]]
        held = lambda r: r["cache_bytes"] + r["pool_peak_bytes"]  # noqa: E731
        growth = (held(b) - held(a)) / max(1, lengths[-1] - lengths[0]) * 24
        rows.append({"strategy": name, "window": b["window"], "sink": b["sink"],
                     "block_ms": {f: mine[f]["block_ms"] for f in lengths},
                     "cache_mb": b["cache_bytes"] / 2**20, "pool_mb": {f: mine[f]["pool_peak_bytes"] / 2**20 for f in lengths},
                     "peak_rss_mb": {f: mine[f]["peak_rss_mb"] for f in lengths},
                     "growth_mb_per_24_frames": growth / 2**20,
                     "real_cache_gib": to_real_size(b["cache_bytes"]) / 2**30,
                     "real_pool_gib_per_30s": to_real_size(b["pool_bytes_per_frame"]) * 30 * FRAMES_PER_SECOND / 2**30})
    return rows


def print_table(rows: list[dict], lengths: list[int]) -> None:
    print(f"{'strategy':14} {'win/sink':>8} " + " ".join(f"{'ms@' + str(f):>8}" for f in lengths)
          + f" {'cache MB':>9} {'pool MB@' + str(lengths[-1]):>12} {'RSS MB@' + str(lengths[-1]):>11}"
          + f" {'+MB/24f':>8} {'1.3B cache GiB':>15} {'1.3B pool GiB/30s':>18}")
    for r in rows:
        print(f"{r['strategy']:14} {str(r['window']) + '/' + str(r['sink']):>8} "
              + " ".join(f"{r['block_ms'][f]:8.1f}" for f in lengths)
              + f" {r['cache_mb']:9.2f} {r['pool_mb'][lengths[-1]]:12.2f} {r['peak_rss_mb'][lengths[-1]]:11.0f}"
              + f" {r['growth_mb_per_24_frames']:8.2f} {r['real_cache_gib']:15.2f} {r['real_pool_gib_per_30s']:18.2f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--strategies", help="comma-separated (default: every registered strategy)")
    ap.add_argument("--frames", default="24,48,96,192", help="latent frame counts, comma-separated")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--preset", help="a Wan2.1 variant's settings, e.g. 'Causal-Forcing++ 2-step' (frame-wise)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    lengths = sorted(int(f) for f in args.frames.split(","))
    if args.one:
        print(json.dumps(one_run(args.one, lengths[0], args.threads, args.preset)))
        return 0
    names = args.strategies.split(",") if args.strategies else strategy_names()
    runs = []
    for i, frames in enumerate(lengths):
        order = names[i % len(names):] + names[:i % len(names)]       # rotate who runs first
        for name in order:
            runs.append(child(name, frames, args.threads, args.preset))
            print(f"  {name:14} {frames:4d} frames: {runs[-1]['block_ms']:7.1f} ms/block, cache "
                  f"{runs[-1]['cache_bytes'] / 2**20:.2f} MB, pool {runs[-1]['pool_peak_bytes'] / 2**20:.2f} MB, "
                  f"RSS {runs[-1]['peak_rss_mb']:.0f} MB", flush=True)
    rows = summarise(runs, names, lengths)
    print_table(rows, lengths)
    write_result("strategies" + ("_" + args.preset.lower().replace(" ", "_").replace("+", "p") if args.preset else ""),
                 {"command": " ".join(sys.argv), "threads": args.threads, "runs": runs, "table": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
