"""One command for the first CUDA machine: correctness and speed figures in one JSON report.

    python benchmarks/gpu_check.py                       # everything (about 10 min on one GPU)
    python benchmarks/gpu_check.py --frames 30 --skip-tests   # quicker

With CUDA:
  1. the CUDA tests: every test whose id contains "cuda" (they are skipped on CPU-only machines);
  2. bf16 vs fp32 on the golden retrieval case (tests/data/golden, retrieval encoder): relative error
     of the latents between the two, and of each to the published float32 outputs; whether the
     retrieval picks the same frames. Expected: bf16 vs fp32 ≤ 0.1 (the same bound tests/core/sampling/test_loop.py
     uses on a tiny model). bf16 rounds every activation to 8 bits of mantissa (unit roundoff
     2^-8 ≈ 4e-3); 2 layers x 80 forwards compound that to about 1e-2, and the AR loop feeds each
     block's output back through the cache, so the error grows block by block. A retrieval pick can
     flip where two candidates' similarities are within ~1e-3 (the golden case's smallest top-k
     margin is 1.1e-3): then the videos diverge more and the report says so (``same_selection``);
  3. native vs retrieval per block at the real size (Wan 1.3B shape, random weights, bf16,
     480x832 → 60x104 latents, ``--frames`` latent frames = 30 s at 16 fps by default) with the pool on
     device / host / disk: ms per block after the cache is full, as video fps in the speed line every benchmark
     prints (benchmarks/speed_line.py: the README's "Speed, stated honestly" table takes it as is), its ratio to the floor (benchmarks/floor.py,
     measured after every block on this GPU), peak VRAM, and the bytes the pool moves host→device per block
     (what its gather reads from the host and disk tiers); host and disk pools each with the next block's
     frames read during the context pass (overlap, the default) and at the block's start (serial);
  4. peak device memory (``torch.cuda.max_memory_allocated``) of each family × native/rag × memory setting at the
     published size, next to the real-size dry run's figure of the same run (benchmarks/vram.py's table).
Writes benchmarks/results/gpu_check.json. Without CUDA it runs the CPU self-check (the FLOP counter
against a hand count, the report writer round trip, the speed line of a made-up real-size block), prints it and
exits 0.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from floor import (ROOT, STEADY_FROM_FRAME, BlockShape, FloorProbe, block_flops, context_pass_writes_only,  # noqa: E402
                   random_model)
from speed_line import ForwardCounter, Measured, device_name, speed_line  # noqa: E402

import torch  # noqa: E402

from core.app.tiny import tiny_config  # noqa: E402
from core.model.transformer import WanConfig  # noqa: E402
from core.app.plan import sampling_config

REAL = WanConfig(dim=1536, ffn_dim=8960, num_layers=30, num_heads=12, in_dim=16, out_dim=16)
REAL_HW = (60, 104)
REAL_FRAMES = 120          # 30 s at 16 fps: 480 video frames → 120 latent frames (4x temporal compression)
BF16_TOLERANCE = 0.1


# ---------------------------------------------------------------------------------------- report
def write_report(report: dict, path: Path) -> Path:
    """The report as JSON with what produced it (torch, device, host); returns the path."""
    meta = {"torch": torch.__version__, "python": platform.python_version(), "host": platform.node(),
            "cuda_device": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, **report}, indent=1, default=str))
    return path


def self_check() -> dict:
    """CPU-only checks of this script's own machinery; raises AssertionError when one fails."""
    cfg = tiny_config()
    s = BlockShape(cfg, tokens=6, frames_per_block=3, context_frames=4, forwards=5)
    n, lk, d = 18, 24, 64   # query tokens, key tokens, dim
    per_layer = 2 * n * d * d * 6 + 2 * n * d * 128 * 2 + 4 * n * lk * d + 4 * n * 512 * d
    want = per_layer * cfg.num_layers * s.forwards
    got = block_flops(s)
    assert got["total"] == want, f"FLOP counter: {got['total']} != hand count {want}"
    assert got["matmul"] + got["sdpa"] == got["total"]
    probe = FloorProbe(s, repeats=1).measure()
    assert probe["floor_s"] > 0 and probe["essential_floor_s"] < probe["floor_s"]
    with tempfile.TemporaryDirectory() as tmp:
        path = write_report({"self_check": {"flops": got}}, Path(tmp) / "r.json")
        back = json.loads(path.read_text())
    assert back["self_check"]["flops"] == got and "torch" in back["meta"]
    line = speed_line(real_size_measured(0.5, 4, 5, "native", "cpu"))
    assert line.startswith("24.00 video fps (3 latent × 4 = 12 video frames per block in 500.0 ms"), line
    assert "832×480 px (60×104 latents, 1560 tokens per frame)" in line and "5 backbone forwards" in line, line
    return {"flops": got, "floor_s": probe["floor_s"], "speed_line": line}


def real_size_measured(block_s: float, blocks: int, forwards: float, regime: str, device) -> Measured:
    """A real-size run's figures in the speed line's terms (benchmarks/speed_line.py): the Wan2.1-1.3B shape at
    832×480 in bf16 with the default settings (renoise, 4 steps, blocks of 3)."""
    cfg = sampling_config()
    return Measured(block_s=block_s, blocks=blocks, latent_frames_per_block=cfg.frames_per_block,
                    time_stride=cfg.family.latent.time_stride, latent_hw=REAL_HW, spatial_stride=cfg.family.latent.stride,
                    tokens_per_frame=(REAL_HW[0] // 2) * (REAL_HW[1] // 2),
                    steps=f"{cfg.sampler} sampler, {cfg.block_sampler.describe(cfg)}", forwards_per_block=forwards,
                    model=f"Wan2.1-1.3B shape {REAL.num_layers}×{REAL.dim} (random weights)", dtype=torch.bfloat16,
                    device=device_name(device), extra=f"{regime}",
                    skipped=f"blocks before latent frame {STEADY_FROM_FRAME} (window filling, warm-up)")


# ---------------------------------------------------------------------------------------- CUDA parts
def cuda_tests() -> dict:
    cmd = [sys.executable, "-m", "pytest", "-q", "-k", "cuda", "tests/"]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    tail = res.stdout.strip().splitlines()[-1:] if res.stdout.strip() else [res.stderr.strip()[-500:]]
    return {"command": " ".join(cmd), "returncode": res.returncode, "summary": tail}


def bf16_vs_fp32() -> dict:
    """The golden retrieval case on CUDA in float32 and bfloat16."""
    sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "golden")]
    from factory import golden_config
    from paths import GOLDEN
    from safetensors.torch import load_file
    from test_longlive_rag import config_from_case, rel_err

    from core.retrieval.encoder import load_encoder
    from core.model.transformer import WanTransformer
    from core.sampling.loop import generate

    case = json.loads((GOLDEN / "case.json").read_text())
    inputs = load_file(str(GOLDEN / "inputs.safetensors"))
    ref = load_file(str(GOLDEN / "outputs.safetensors"))["latents_bcthw"]
    b, c, t, h, w = case["latent_shape_bcthw"]
    runs = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        model = WanTransformer(golden_config())
        model.load_state_dict(load_file(str(GOLDEN / "wan_tiny_t2v_bare.safetensors")))
        model = model.to("cuda", dtype).eval().requires_grad_(False)
        runs[name] = generate(model, inputs["prompt_embeds"], t, (h, w), case["seeds"]["noise"],
                              config_from_case(case), encoder=load_encoder(GOLDEN / "ae.pt", "cuda"))
    diff = rel_err(runs["bf16"].latents, runs["fp32"].latents)
    same = [r["pool_indices"] for r in runs["bf16"].retrieval_log] == [r["pool_indices"] for r in runs["fp32"].retrieval_log]
    return {"bf16_vs_fp32": diff, "fp32_vs_published": rel_err(runs["fp32"].latents, ref),
            "bf16_vs_published": rel_err(runs["bf16"].latents, ref), "same_selection": same,
            "tolerance": BF16_TOLERANCE, "ok": diff <= BF16_TOLERANCE}


class _H2DCounter:
    """Counts the bytes the history pool's gather brings onto the GPU when the pool lives on the host or
    disk (without a budget nothing spills, so a device pool moves nothing)."""

    def __init__(self, location: str | None):
        from core.retrieval.pool import HistoryPool
        self.cls, self.original, self.bytes = HistoryPool, HistoryPool.gather, 0
        self.counting = location in ("host", "disk")

    def __enter__(self):
        counter = self

        def gather(pool, indices, device, dtype):
            out = counter.original(pool, indices, device, dtype)
            if counter.counting:
                counter.bytes += sum(x.numel() * x.element_size() for x in out)
            return out

        self.cls.gather = gather
        return self

    def __exit__(self, *exc):
        self.cls.gather = self.original


def real_size_run(model, regime: str, location: str, frames: int, probe: FloorProbe, prefetch: bool = True,
                  counter: ForwardCounter | None = None) -> dict:
    from core.retrieval.config import PoolConfig, RetrievalConfig
    from core.sampling.loop import generate

    cfg = (sampling_config() if regime == "native"
           else sampling_config(retrieval=RetrievalConfig(pool=PoolConfig(location=location), prefetch="on" if prefetch else "off")))
    emb = torch.randn(1, 512, REAL.text_dim, generator=torch.Generator().manual_seed(0))
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    counter = counter or ForwardCounter()
    counter.reset()

    def after_block(update):
        counter(update)
        probe(update)

    with _H2DCounter(location if regime != "native" else None) as h2d:
        res = generate(model, emb, frames, REAL_HW, 0, cfg, timings=True, callback=after_block)
    steady = [t for t in res.timings if t["block"] * cfg.frames_per_block >= STEADY_FROM_FRAME] or res.timings
    ratios = [t["total_s"] / probe.floors[t["block"]] for t in steady]
    label = regime if regime == "native" else f"{regime}, pool on {location}" + ("" if prefetch else ", serial read")
    line = speed_line(real_size_measured(statistics.median(t["total_s"] for t in steady), len(steady),
                                         statistics.median(counter.per_block.get(t["block"], 0) for t in steady),
                                         label, "cuda"))
    return {"regime": regime, "pool": location if regime != "native" else None, "frames": frames, "speed_line": line,
            "overlap": prefetch if regime != "native" else None,
            "ms_per_block": 1e3 * statistics.median(t["total_s"] for t in steady),
            "ratio_to_floor": statistics.median(ratios), "peak_vram_mb": torch.cuda.max_memory_allocated() / 2**20,
            "h2d_bytes_per_block": h2d.bytes / len(res.timings), "pool_peak_bytes": res.pool_peak_bytes}


def real_size(frames: int) -> list[dict]:
    counter = ForwardCounter()
    model = counter.count(random_model(REAL, dtype=torch.bfloat16, device="cuda"))
    tokens = (REAL_HW[0] // 2) * (REAL_HW[1] // 2)
    probe = FloorProbe(BlockShape(REAL, tokens), dtype=torch.bfloat16, device="cuda")
    out = []
    runs = [("native", None, True), ("retrieval", "device", True)]
    runs += [("retrieval", loc, overlap) for loc in ("host", "disk") for overlap in (True, False)]
    for regime, location, overlap in runs:
        r = real_size_run(model, regime, location, frames, probe, prefetch=overlap, counter=counter)
        label = "" if regime == "native" else (" overlap" if overlap else " serial ")
        print(f"  {regime:9} pool {str(r['pool']):6}{label} {r['ms_per_block']:8.1f} ms/block  {r['ratio_to_floor']:.2f}x floor  "
              f"peak VRAM {r['peak_vram_mb']:8.0f} MB  H2D {r['h2d_bytes_per_block'] / 2**20:7.1f} MB/block\n    "
              f"{r['speed_line']}", flush=True)
        out.append(r)
    return out


def vram_table(variants: list[str]) -> list[dict]:
    """The table of benchmarks/vram.py measured for real: each family × native/rag × memory variant at the published
    size with random weights in bf16, ``torch.cuda.max_memory_allocated`` of the run (weights included) next to the
    dry run's peak of the same run (core/app/dry_run.py, meta device, same process) and their ratio."""
    from core.app import facts as F
    from core.app.dry_run import default_frames, trace_config, trace_run
    from core.sampling.loop import generate
    from memory_variants import VARIANTS, prepare
    out = []
    for family in (f for f in F.families() if F.released(f) is not None):
        for strategy in ("native", "rag"):
            cfg, hw = F._config(family, strategy), family.defaults.latent_hw
            for name in variants:
                memory, weights = VARIANTS[name]
                meta = prepare(F._model(family), weights, torch.bfloat16)
                dry = trace_run(meta, cfg, hw, dtype=torch.bfloat16, memory=memory)
                model = meta.to_empty(device="cuda")
                with torch.no_grad():
                    for p in model.parameters():
                        if p.is_floating_point() and p.element_size() >= 2:
                            p.normal_(0, 0.02)
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
                emb = torch.randn(1, 512, family.released.text_dim, device="cuda", dtype=torch.bfloat16)
                generate(model, emb, default_frames(cfg), hw, 0, trace_config(cfg, torch.device("cuda"), dry=False),
                         memory=memory)
                real = torch.cuda.max_memory_allocated()
                del model
                row = {"family": family.name, "strategy": strategy, "variant": name, "real_gib": real / 2**30,
                       "dry_run_gib": dry.peak / 2**30, "dry_over_real": dry.peak / real}
                print(f"  {family.name:22} {strategy:7} {name:22} real {row['real_gib']:6.2f} GiB  dry run "
                      f"{row['dry_run_gib']:6.2f} GiB  ratio {row['dry_over_real']:.3f}", flush=True)
                out.append(row)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=REAL_FRAMES, help="latent frames of the real-size runs")
    ap.add_argument("--skip-tests", action="store_true")
    ap.add_argument("--vram-variants", nargs="*", default=["exact", "shared", "fp8 weights + fp8 KV"],
                    help="memory settings of benchmarks/memory_variants.py to measure (each family × native/rag)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gpu_check.json")
    args = ap.parse_args()
    check = self_check()
    if not torch.cuda.is_available():
        print(f"no CUDA device: ran the CPU self-check only (FLOP counter, report writer and speed line OK, "
              f"{check['flops']['total']} FLOPs on the check shape); a CUDA run prints lines like: {check['speed_line']}")
        return 0
    report = {"self_check": check, "context_pass": context_pass_writes_only()}
    if not args.skip_tests:
        report["cuda_tests"] = cuda_tests()
        print(f"CUDA tests: {report['cuda_tests']['summary']}", flush=True)
    report["bf16"] = bf16_vs_fp32()
    print(f"golden case bf16 vs fp32: {report['bf16']['bf16_vs_fp32']:.2e} (≤ {BF16_TOLERANCE} expected), "
          f"same retrieval picks: {report['bf16']['same_selection']}", flush=True)
    print(f"real size, {args.frames} latent frames of {REAL_HW[0]}x{REAL_HW[1]}, bf16:")
    report["real_size"] = real_size(args.frames)
    print("peak device memory, real run vs the dry run (benchmarks/vram.py's table):")
    report["vram"] = vram_table(args.vram_variants)
    print(f"wrote {write_report(report, args.out)}")
    ok = report["bf16"]["ok"] and report.get("cuda_tests", {}).get("returncode", 0) in (0, 5)
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("TQDM_DISABLE", "1")
    raise SystemExit(main())
