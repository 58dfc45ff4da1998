"""History-pool scaling: does a block's pre-denoise time stay flat as the video grows?

    python benchmarks/pool_scaling.py                        # 1500-frame run + pool micro-benchmark
    python benchmarks/pool_scaling.py --frames 600 --micro 10,1000,10000   # quicker

1. A 1500-latent-frame retrieval run of a tiny random-weight model (latent 8x12) whose pool is
   host RAM with a 2 MB budget spilling to disk (so almost every frame is on disk). With
   ``timings=True`` each block reports ``retrieval_s``: everything before denoising (choosing
   the frames, evicting into the pool, gathering the retrieved K/V). Printed: its median (and
   minimum, less sensitive to other processes) over 11 blocks around blocks 6, 200 and 450, the
   pool's own share (append + gather), and the ratios block 450 / block 6 (flat = 1.0). The
   denoise ratio is the yardstick for machine noise: denoising does the same work every block.
2. The pool alone with 1 KB frames: the median of 200 appends, and of 200 gathers of K=6 frames
   chosen at random among all stored ones, when the pool holds 10, 10,000 and 100,000 frames,
   for a pool on disk and one in host RAM.

Weights are random: this measures cost, not quality. CPU numbers are noisy; compare within a run.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # benchmarks run from a checkout, like `python -m core`

import torch  # noqa: E402

from core.retrieval.config import PoolConfig, RetrievalConfig
from core.sampling.config import SamplingConfig  # noqa: E402
from core.retrieval.pool import HistoryPool  # noqa: E402
from core.app.tiny import tiny_model  # noqa: E402
from core.sampling import loop as pipeline  # noqa: E402
from core.sampling.loop import generate  # noqa: E402
from core.app.plan import sampling_config


class TimedPool(HistoryPool):
    """The pipeline's pool, also adding up the wall time of its own append and gather calls."""
    spent = 0.0

    def append(self, *args, **kwargs):
        t0 = time.perf_counter()
        super().append(*args, **kwargs)
        TimedPool.spent += time.perf_counter() - t0

    def gather(self, *args, **kwargs):
        t0 = time.perf_counter()
        out = super().gather(*args, **kwargs)
        TimedPool.spent += time.perf_counter() - t0
        return out


def window(timings: list[dict], centre: int, first: int, half: int = 5) -> tuple[int, int]:
    """2·half+1 blocks around ``centre``, not starting before block ``first``: [lo, hi)."""
    lo = max(centre - half, first)
    return lo, min(lo + 2 * half + 1, len(timings))


def run_scaling(frames: int, budget_mb: float, pool_dir: str, centres: list[int]) -> None:
    model = tiny_model(0, dim=128, text_dim=64, freq_dim=256, std=0.02, bias_std=0.02)
    emb = torch.randn(1, 32, 64, generator=torch.Generator().manual_seed(0))
    pool = PoolConfig(location="host", budget_mb=budget_mb, storage="kv", directory=pool_dir)
    cfg = sampling_config(retrieval=RetrievalConfig(pool=pool))
    pool_s = []

    def per_block(update):
        pool_s.append(TimedPool.spent)
        TimedPool.spent = 0.0

    pipeline.HistoryPool = TimedPool   # generate() builds its pool through this name
    t0 = time.perf_counter()
    try:
        res = generate(model, emb, frames, (8, 12), 0, cfg, callback=per_block, timings=True)
    finally:
        pipeline.HistoryPool = HistoryPool
    wall = time.perf_counter() - t0
    for t, p in zip(res.timings, pool_s):
        t["pool_s"] = p
    blocks = len(res.timings)
    first = 6   # blocks 0-5 retrieve nothing: the pool holds ≤ recent_exclude frames
    print(f"{frames} latent frames = {blocks} blocks in {wall:.1f} s; pool at the end: "
          + ", ".join(f"{k} {u['frames']} frames / {u['bytes'] / 2**20:.1f} MB" for k, u in res.pool_usage.items()))
    print("times in ms per block; retrieval_s = all before denoising; pool = its append + gather calls")
    print(f"{'block':>6} {'blocks':>10} {'retrieval median':>17} {'retrieval min':>14} {'pool median':>12} "
          f"{'denoise median':>15}")
    stats = {}
    for c in centres:
        if c >= blocks:
            continue
        lo, hi = window(res.timings, c, first)
        w = res.timings[lo:hi]
        stats[c] = row = [statistics.median(t["retrieval_s"] for t in w), min(t["retrieval_s"] for t in w),
                          statistics.median(t["pool_s"] for t in w), statistics.median(t["denoise_s"] for t in w)]
        print(f"{c:6d} {f'{lo}-{hi - 1}':>10} " + " ".join(f"{x * 1e3:{n}.2f}" for x, n in zip(row, (17, 14, 12, 15))))
    if len(stats) >= 2:
        a, b = min(stats), max(stats)
        r = [y / x for x, y in zip(stats[a], stats[b])]
        print(f"ratio block {b} / block {a}: retrieval median {r[0]:.2f} (target ≤ 1.2), retrieval min {r[1]:.2f}, "
              f"pool median {r[2]:.2f}, denoise median {r[3]:.2f}")
    leftovers = list(Path(pool_dir).iterdir())
    print(f"files left in the pool directory after the run: {len(leftovers)}")


def small_frame(layers=2, tokens=4, heads=2, d=8, seed=0) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    k = [torch.randn(1, tokens, heads, d, generator=g) for _ in range(layers)]
    v = [torch.randn(1, tokens, heads, d, generator=g) for _ in range(layers)]
    return k, v


def run_micro(points: list[int], location: str, budget_mb: float | None, pool_dir: str, top_k: int = 6,
              samples: int = 200) -> None:
    """Times ``samples`` appends starting at each point and ``samples`` gathers at it."""
    pool = HistoryPool(PoolConfig(location=location, budget_mb=budget_mb, storage="kv", directory=pool_dir), "cpu")
    k, v = small_frame()
    g = torch.Generator().manual_seed(1)
    rows = []
    try:
        for p in sorted(points):
            while len(pool) < p:
                pool.append(k, v)
            appends = []
            for _ in range(samples):
                t0 = time.perf_counter_ns()
                pool.append(k, v)
                appends.append(time.perf_counter_ns() - t0)
            gathers = []
            for _ in range(samples):
                idx = torch.randint(0, len(pool), (1, top_k), generator=g)
                t0 = time.perf_counter_ns()
                pool.gather(idx, torch.device("cpu"), torch.float32)
                gathers.append(time.perf_counter_ns() - t0)
            rows.append((p, statistics.median(appends) / 1e3, statistics.median(gathers) / 1e3))
        use, per_frame = pool.usage(), pool.bytes_per_frame
    finally:
        pool.close()
    name = f"{location}" + (f" (budget {budget_mb} MB, then disk)" if budget_mb is not None else "")
    tiers = ", ".join(f"{t} {u['frames']}" for t, u in use.items())
    print(f"\npool on {name}, {per_frame} B/frame, frames per tier at the end: {tiers}")
    print(f"{'frames':>8} {'append µs':>10} {f'gather K={top_k} µs':>15}")
    for p, a, gth in rows:
        print(f"{p:8d} {a:10.1f} {gth:15.1f}")
    if len(rows) >= 2:
        print(f"ratio {rows[-1][0]} / {rows[0][0]} frames: append {rows[-1][1] / rows[0][1]:.2f}, "
              f"gather {rows[-1][2] / rows[0][2]:.2f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=1500, help="latent frames of the end-to-end run (0 = skip it)")
    ap.add_argument("--budget-mb", type=float, default=2.0, help="host budget before the pool spills to disk")
    ap.add_argument("--blocks", default="6,200,450", help="blocks whose neighbourhood medians are compared")
    ap.add_argument("--micro", default="10,10000,100000", help="pool sizes of the micro-benchmark ('' = skip it)")
    ap.add_argument("--pool-dir", default=None, help="disk tier folder (default: a fresh temporary folder)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (tiny tensors gain nothing from more)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="pool_scaling_", dir=args.pool_dir) as pool_dir:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), pool folder {pool_dir}")
        if args.frames:
            run_scaling(args.frames, args.budget_mb, pool_dir, [int(b) for b in args.blocks.split(",")])
        if args.micro:
            points = [int(p) for p in args.micro.split(",")]
            run_micro(points, "host", 0, pool_dir)
            run_micro(points, "host", None, pool_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
