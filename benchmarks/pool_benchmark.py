"""History-pool benchmark: per-block time native vs retrieval, memory as the video grows.

    python benchmarks/pool_benchmark.py                      # tiny + medium on this device
    python benchmarks/pool_benchmark.py --sizes real         # Wan 1.3B size (needs a GPU)

Prints a table and writes JSON (default benchmarks/results/pool_benchmark.json). Each
memory measurement runs in its own process so its peak RSS is its own. Weights are random:
this measures cost, not quality.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # benchmarks run from a checkout, like `python -m core`

import torch  # noqa: E402

from core.families.registry import family  # noqa: E402
from core.retrieval.config import PoolConfig, RetrievalConfig
from core.sampling.config import SamplingConfig  # noqa: E402
from core.retrieval.pool import HistoryPool  # noqa: E402
from core.app.tiny import randomise  # noqa: E402
from core.model.transformer import WanConfig, WanTransformer  # noqa: E402
from core.sampling.loop import generate  # noqa: E402
from core.app.plan import sampling_config

SIZES = {
    #        dim, ffn, layers, heads, text_dim, latent HxW
    "tiny": (128, 256, 2, 2, 64, (8, 12)),
    "medium": (512, 1024, 4, 4, 64, (24, 40)),
    "real": (1536, 8960, 30, 12, 4096, (60, 104)),
}
STORAGE_MODES = [  # (name, location, budget MB, storage)
    ("kv/host", "host", None, "kv"),
    ("kv/disk(budget 0)", "host", 0, "kv"),
    ("kv-half/host", "host", None, "kv-half"),
    ("kv-fp8/host", "host", None, "kv-fp8"),
    ("latent/host", "host", None, "latent"),
]


def build(size: str, device: torch.device, dtype: torch.dtype) -> tuple[WanTransformer, tuple[int, int], int]:
    dim, ffn, layers, heads, text_dim, hw = SIZES[size]
    torch.manual_seed(0)
    with torch.device("meta"):
        model = WanTransformer(WanConfig(dim=dim, ffn_dim=ffn, num_layers=layers, num_heads=heads, text_dim=text_dim,
                                                 in_dim=16, out_dim=16))
    model = model.to_empty(device=device).to(dtype)
    return randomise(model, std=0.02, bias_std=0.02), hw, text_dim


def run_once(size, mode, frames, location, budget, storage, device, dtype, pool_dir=None):
    model, hw, text_dim = build(size, device, dtype)
    emb = torch.randn(1, 32, text_dim)
    pool = PoolConfig(location, budget, storage, pool_dir)
    cfg = sampling_config(retrieval=RetrievalConfig(pool=pool) if mode == "rag" else None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    res = generate(model, emb, frames, hw, 0, cfg, timings=True)
    steady = [t["total_s"] for t in res.timings[6:]] or [t["total_s"] for t in res.timings]
    out = {"size": size, "mode": mode, "frames": frames, "location": location, "budget_mb": budget,
           "storage": storage, "block_s_median": statistics.median(steady),
           "retrieval_s_median": statistics.median(t["retrieval_s"] for t in res.timings[6:] or res.timings),
           "peak_memory_mb": res.peak_memory_mb, "pool_bytes_per_frame": res.pool_bytes_per_frame,
           "pool_peak_bytes": res.pool_peak_bytes,
           "pool_frames": sum(t["frames"] for t in res.pool_usage.values())}
    return out


# the published backbones: layers, heads of 128, the family's defaults (latent size and format, window)
REAL_FRAMES = {"wan2.1": (30, 12, family("Wan2.1 text-to-video").defaults),     # Wan2.1-T2V-1.3B, 480x832
               "wan2.2": (30, 24, family("Wan2.2 TI2V-5B").defaults)}           # Wan2.2-TI2V-5B (LongLive 2.0), 704x1280


def real_frame_bytes(family: str = "wan2.1") -> int:
    """Bytes per pooled frame at the real size of a published backbone (bf16), measured by the pool's own
    accounting on one synthetic frame, and what 30 s / 60 s / 120 s at the family's rate keep (latent frames
    − the window)."""
    layers, heads, defaults = REAL_FRAMES[family]
    fmt, (h, w), d = defaults.latent, defaults.latent_hw, 128
    tokens = (h // 2) * (w // 2)
    k = [torch.randn(1, tokens, heads, d, dtype=torch.bfloat16) for _ in range(layers)]
    latent = torch.randn(1, fmt.channels, h, w, dtype=torch.bfloat16)
    print(f"{family}: {layers} layers x {tokens} tokens x {heads * d} (K and V), latent {fmt.channels}x{h}x{w}, "
          f"{fmt.fps} fps, window {defaults.window}")
    print(f"{'storage':10} {'bytes/frame':>12} {'MiB/frame':>10} {'30 s GiB':>9} {'60 s GiB':>9} {'120 s GiB':>10}")
    for storage in ("kv", "kv-half", "kv-fp8", "latent"):
        pool = HistoryPool(PoolConfig(storage=storage), recompute=lambda lat: (lat, lat))  # never called here
        pool.append(k, k, latent=latent)
        per = pool.bytes_per_frame
        pooled = [fmt.seconds_to_frame(s) - defaults.window for s in (30, 60, 120)]   # latent frames − window
        print(f"{storage:10} {per:12d} {per / 2**20:10.3f} " + " ".join(f"{n * per / 2**30:9.2f}" for n in pooled))
        pool.close()
    return 0


def worker(spec: dict) -> dict:
    device = torch.device(spec.pop("device"))
    dtype = getattr(torch, spec.pop("dtype"))
    return run_once(device=device, dtype=dtype, **spec)


def in_subprocess(spec: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default=None, help="comma list of tiny,medium,real (default tiny,medium; +real on CUDA)")
    ap.add_argument("--frames", default="24,48,96,192", help="video lengths (latent frames) for the memory table")
    ap.add_argument("--ab-frames", type=int, default=48, help="length of the native-vs-retrieval timing runs")
    ap.add_argument("--repeats", type=int, default=2, help="interleaved native/retrieval pairs per size")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "pool_benchmark.json"))
    ap.add_argument("--pool-dir", default=None)
    ap.add_argument("--real-frame", nargs="?", const="wan2.1", choices=sorted(REAL_FRAMES),
                    help="only measure the pool's bytes per frame at a published backbone's real size (one synthetic "
                         "frame per storage): wan2.1 = Wan 1.3B at 480x832 (default), wan2.2 = LongLive 2.0 5B at "
                         "704x1280")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    if args.real_frame:
        return real_frame_bytes(args.real_frame)
    device = torch.device(args.device)
    dtype = "bfloat16" if device.type == "cuda" else "float32"
    sizes = args.sizes.split(",") if args.sizes else ["tiny", "medium"] + (["real"] if device.type == "cuda" else [])
    report = {"device": str(device), "dtype": dtype, "torch": torch.__version__, "threads": torch.get_num_threads(),
              "ab": [], "memory": []}

    print(f"device {device}, {dtype}, {torch.get_num_threads()} threads")
    print("\n== per-block wall time at equal window (L=12): native vs retrieval (K=6) ==")
    print(f"{'size':8} {'native s/block':>15} {'retrieval s/block':>18} {'ratio':>7}")
    for size in sizes:
        nat, rag = [], []
        for _ in range(args.repeats):  # interleaved so machine noise hits both alike
            for mode, acc in (("native", nat), ("rag", rag)):
                acc.append(in_subprocess(dict(size=size, mode=mode, frames=args.ab_frames, location="host",
                                              budget=None, storage="kv", device=str(device), dtype=dtype,
                                              pool_dir=args.pool_dir))["block_s_median"])
        n, r = statistics.median(nat), statistics.median(rag)
        report["ab"].append({"size": size, "native_block_s": n, "rag_block_s": r, "ratio": r / n,
                             "native_runs": nat, "rag_runs": rag})
        print(f"{size:8} {n:15.4f} {r:18.4f} {r / n:7.3f}")

    print("\n== memory as the video grows (retrieval mode) ==")
    print(f"{'size':8} {'storage':18} {'frames':>6} {'pool MB/frame':>14} {'pool peak MB':>13} "
          f"{'peak mem MB':>12} {'s/block':>8}")
    for size in sizes:
        if size == "real" and device.type != "cuda":
            continue
        for name, location, budget, storage in STORAGE_MODES:
            for frames in [int(f) for f in args.frames.split(",")]:
                r = in_subprocess(dict(size=size, mode="rag", frames=frames, location=location, budget=budget,
                                       storage=storage, device=str(device), dtype=dtype, pool_dir=args.pool_dir))
                r["name"] = name
                report["memory"].append(r)
                print(f"{size:8} {name:18} {frames:6d} {r['pool_bytes_per_frame'] / 2**20:14.3f} "
                      f"{r['pool_peak_bytes'] / 2**20:13.1f} {r['peak_memory_mb']:12.1f} {r['block_s_median']:8.3f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
