"""Where one AR block's time goes, both regimes, at the medium size (torch.profiler, CPU).

    python benchmarks/profile_block.py                     # native + retrieval, 60 frames
    PYTHONPATH=/tmp/before python benchmarks/profile_block.py --tag before   # another checkout's core/

Only blocks with a full context are profiled (from frame 30 on). Each op's self time goes to one
bucket: matmul (addmm/mm/bmm, the patch-embedding convolution), attention (everything under
scaled_dot_product_attention), RoPE (everything under the RoPE functions, tables included),
norms/modulation/activations (the remaining element-wise math), copies/concatenation (cat,
copy_, clone, dtype conversions, the cache's block bookkeeping) and Python/other (allocations,
views, the rest, and the wall time no op accounts for: interpreter, dispatch, profiler
overhead). Also prints the floor (benchmarks/floor.py) measured in the same run and each
regime's unprofiled ms/block as a ratio to it. Writes benchmarks/results/profile_block[_tag].json.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from floor import (MEDIUM, MEDIUM_FRAMES, MEDIUM_HW, STEADY_FROM_FRAME,  # noqa: E402
                   context_pass_writes_only, measure_floor, medium_shape, prompt, random_model, steady_blocks,
                   write_result)

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile, record_function  # noqa: E402

import core.context.kv_cache  # noqa: E402
import core.model.transformer  # noqa: E402
from core.sampling.config import SamplingConfig  # noqa: E402
from core.sampling.loop import generate  # noqa: E402
from core.app.plan import sampling_config

BUCKETS = ("matmul", "attention", "RoPE", "norms/modulation/activations", "copies/concatenation", "Python/other")
MATMUL = {"aten::addmm", "aten::mm", "aten::bmm", "aten::baddbmm", "aten::addmv", "aten::mkldnn_convolution",
          "aten::_mkldnn_convolution", "aten::convolution_overrideable", "aten::_convolution"}
COPIES = {"aten::cat", "aten::copy_", "aten::clone", "aten::_to_copy", "aten::contiguous", "aten::stack",
          "aten::index", "aten::index_put_", "aten::fill_", "aten::zero_", "aten::_unsafe_view"}
ELEMENTWISE = ("add", "sub", "mul", "div", "rsqrt", "pow", "mean", "sum", "layer_norm", "rms_norm", "gelu",
               "silu", "addcmul", "addcdiv", "exp", "sin", "cos", "polar", "neg", "sqrt", "lerp", "norm")
LABELS = {"RoPE": [(core.context.kv_cache, "apply_rope"), (core.context.kv_cache, "rope_table"), (core.model.transformer, "apply_rope"),
                   (core.model.transformer, "rope_table"), (core.context.kv_cache, "rotate"), (core.model.transformer, "rotate")],
          "cache": [(core.context.kv_cache.KVCache, "begin_block"), (core.context.kv_cache.KVCache, "set_retrieved"),
                    (core.context.kv_cache.KVCache, "_fill")]}


@contextlib.contextmanager
def labelled():
    """Wrap the RoPE functions and the cache's per-block work in profiler labels (restored after)."""
    saved = []

    def wrap(fn, label):
        def wrapped(*a, **kw):
            with record_function(label):
                return fn(*a, **kw)
        return wrapped

    for label, targets in LABELS.items():
        for owner, name in targets:
            if hasattr(owner, name):
                saved.append((owner, name, getattr(owner, name)))
                setattr(owner, name, wrap(getattr(owner, name), label))
    try:
        yield
    finally:
        for owner, name, fn in saved:
            setattr(owner, name, fn)


def bucket_of(ev) -> str:
    labels, node = [], ev
    while node is not None:
        labels.append(node.name)
        node = node.cpu_parent
    if "RoPE" in labels:
        return "RoPE"
    if any("scaled_dot_product" in n for n in labels):
        return "attention"
    if ev.name in MATMUL:
        return "matmul"
    if ev.name in COPIES or "cache" in labels:
        return "copies/concatenation"
    if ev.name.startswith("aten::") and any(k in ev.name[6:] for k in ELEMENTWISE):
        return "norms/modulation/activations"
    return "Python/other"


def profile_regime(model, regime: str, frames: int) -> dict:
    cfg = sampling_config() if regime == "native" else sampling_config(strategy="rag")
    first = STEADY_FROM_FRAME // cfg.frames_per_block
    prof = profile(activities=[ProfilerActivity.CPU])

    def start(update):
        if update.block == first - 1:
            prof.start()

    with labelled():
        res = generate(model, prompt(model.cfg), frames, MEDIUM_HW, 0, cfg, timings=True, callback=start)
    prof.stop()
    blocks = steady_blocks(res.timings, cfg.frames_per_block)
    wall_ms = 1e3 * sum(t["total_s"] for t in blocks) / len(blocks)
    ms = dict.fromkeys(BUCKETS, 0.0)
    for ev in prof.events():
        if ev.name.startswith("aten::") or ev.name in ("RoPE", "cache"):
            ms[bucket_of(ev)] += ev.self_cpu_time_total / 1e3 / len(blocks)
    accounted = sum(ms.values())
    ms["Python/other"] += max(0.0, wall_ms - accounted)   # interpreter time between ops
    return {"regime": regime, "profiled_ms_per_block": wall_ms, "buckets_ms": ms}


def plain_ms(model, regime: str, frames: int) -> float:
    """Median unprofiled ms/block of the steady blocks."""
    cfg = sampling_config() if regime == "native" else sampling_config(strategy="rag")
    res = generate(model, prompt(model.cfg), frames, MEDIUM_HW, 0, cfg, timings=True)
    return 1e3 * statistics.median(t["total_s"] for t in steady_blocks(res.timings, cfg.frames_per_block))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=MEDIUM_FRAMES)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tag", default="", help="suffix of the result file (e.g. before/after)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = random_model(MEDIUM)
    context_pass = context_pass_writes_only()
    floor = measure_floor(medium_shape())
    out = {"core": str(Path(core.model.transformer.__file__).parent), "threads": args.threads, "context_pass": context_pass,
           "floor": floor, "regimes": []}
    for regime in ("native", "retrieval"):
        r = profile_regime(model, regime, args.frames)
        r["plain_ms_per_block"] = plain_ms(model, regime, args.frames)
        out["regimes"].append(r)
    floor_after = measure_floor(medium_shape())["floor_s"]
    out["floor_ms"] = 1e3 * statistics.mean([floor["floor_s"], floor_after])
    out["floor_drift"] = floor_after / floor["floor_s"]
    print_table(out)
    write_result(f"profile_block{'_' + args.tag if args.tag else ''}", out)
    return 0


def print_table(out: dict) -> None:
    f = out["floor_ms"]
    print(f"context pass: {out['context_pass']}")
    print(f"core from {out['core']}, {out['threads']} threads; floor {f:.1f} ms/block "
          f"(matmul {out['floor']['matmul_gflops']:.0f} GFLOPS, SDPA {out['floor']['sdpa_gflops']:.0f} GFLOPS; "
          f"floor before/after the runs differs by {100 * (out['floor_drift'] - 1):+.0f} %)")
    regs = out["regimes"]
    print(f"{'ms per block (profiled)':32}" + "".join(f"{r['regime']:>12} {'%':>5}" for r in regs))
    for b in BUCKETS:
        print(f"{b:32}" + "".join(f"{r['buckets_ms'][b]:12.1f} {100 * r['buckets_ms'][b] / r['profiled_ms_per_block']:5.1f}"
                                  for r in regs))
    print(f"{'total (profiled)':32}" + "".join(f"{r['profiled_ms_per_block']:12.1f} {'':5}" for r in regs))
    print(f"{'unprofiled median':32}" + "".join(f"{r['plain_ms_per_block']:12.1f} {'':5}" for r in regs))
    print(f"{'unprofiled / floor':32}" + "".join(f"{r['plain_ms_per_block'] / f:12.2f} {'':5}" for r in regs))


if __name__ == "__main__":
    raise SystemExit(main())
