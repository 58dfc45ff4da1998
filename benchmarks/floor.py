"""The compute floor of one AR block, so that every speed figure is a ratio to it.

    python benchmarks/floor.py                 # the medium size on this machine

FLOPs come from the architecture: a block is ``forwards`` (4 denoising steps + 1 context pass)
backbone forwards over ``frames_per_block`` frames, each through every layer's self-attention
projections (q, k, v, o), self-attention over ``context_frames`` frames, cross-attention (q, o
projections; the text K/V are computed once per prompt) over ``text_len`` rows, and the FFN.
The floor divides each of those by the rate torch reaches *at that exact shape* in this process
(``torch.matmul`` for the projections, ``scaled_dot_product_attention`` for attention), so the
machine's load at the moment of measuring cancels out of the ratio as far as possible: measure
the floor in the same run, interleaved with the runs it is compared to.

Patch embedding, time embedding and the output head are left out (< 1 % at every size here):
the floor is a slight underestimate, never an overestimate. ``essential_floor_s`` also leaves out
what the context pass does not need (its last layer's attention output, cross-attention and FFN):
the context pass only has to write K/V.
"""
from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT))  # benchmarks run from a checkout (PYTHONPATH=<other checkout> compares another core/)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from core.model.transformer import WanConfig, WanTransformer  # noqa: E402
from core.app.plan import sampling_config

# The medium size: 4 layers of 512 (4 heads of 128), 16x24 latents = 8x12 = 96 tokens/frame.
MEDIUM = WanConfig(dim=512, ffn_dim=2048, num_layers=4, num_heads=4, text_dim=64, in_dim=16, out_dim=16)
MEDIUM_HW = (16, 24)
MEDIUM_FRAMES = 60
STEADY_FROM_FRAME = 30   # blocks from here on attend a full context in both regimes (K = 6 retrieved)


@dataclass(frozen=True)
class BlockShape:
    cfg: WanConfig
    tokens: int                  # tokens per latent frame
    frames_per_block: int = 3
    context_frames: int = 12     # key frames each self-attention reads (window L, or S + K + local)
    forwards: int = 5            # 4 denoising steps + 1 context pass
    batch: int = 1
    text_rows: int | None = None  # keys of the cross-attention (None: the model's text_len, 512)

    @property
    def rows(self) -> int:
        return self.batch * self.frames_per_block * self.tokens


@dataclass(frozen=True)
class Op:
    """One kernel call of a layer: ``per_layer`` calls of it in every layer of every forward."""
    name: str
    kind: str                    # "matmul" | "sdpa"
    dims: tuple[int, ...]        # matmul (m, k, n); sdpa (batch, heads, q_len, k_len, head_dim)
    per_layer: int = 1

    @property
    def flops(self) -> int:
        if self.kind == "matmul":
            m, k, n = self.dims
            return 2 * m * k * n
        b, h, lq, lk, d = self.dims
        return 4 * b * h * lq * lk * d  # QK^T and PV


def layer_ops(s: BlockShape) -> list[Op]:
    c, n = s.cfg, s.rows
    return [
        Op("self-attn q/k/v/o", "matmul", (n, c.dim, c.dim), 4),
        Op("self-attention", "sdpa", (s.batch, c.num_heads, s.frames_per_block * s.tokens,
                                      s.context_frames * s.tokens, c.head_dim)),
        Op("cross-attn q/o", "matmul", (n, c.dim, c.dim), 2),
        Op("cross-attention", "sdpa", (s.batch, c.num_heads, s.frames_per_block * s.tokens, s.text_rows or c.text_len,
                                       c.head_dim)),
        Op("ffn up", "matmul", (n, c.dim, c.ffn_dim)),
        Op("ffn down", "matmul", (n, c.ffn_dim, c.dim)),
    ]


def block_flops(s: BlockShape) -> dict[str, int]:
    """FLOPs of one block by kind: {'matmul': …, 'sdpa': …, 'total': …}."""
    out = {"matmul": 0, "sdpa": 0}
    for op in layer_ops(s):
        out[op.kind] += op.flops * op.per_layer * s.cfg.num_layers * s.forwards
    out["total"] = out["matmul"] + out["sdpa"]
    return out


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def op_call(op: Op, dtype=torch.float32, device="cpu"):
    """A no-argument function running one call of ``op`` on fixed random inputs (torch.matmul in an
    nn.Linear weight's layout, or SDPA; no bias, no copies)."""
    g = torch.Generator(device).manual_seed(0)

    def rand(*shape):
        return torch.randn(shape, generator=g, dtype=torch.float32, device=device).to(dtype)

    if op.kind == "matmul":
        m, k, n = op.dims
        x, w = rand(m, k), rand(n, k).t()
        return lambda: torch.matmul(x, w)
    b, h, lq, lk, d = op.dims
    q, k, v = rand(b, h, lq, d), rand(b, h, lk, d), rand(b, h, lk, d)
    return lambda: F.scaled_dot_product_attention(q, k, v)


class FloorProbe:
    """Measures the floor on demand, with inputs allocated once.

    Use it as ``generate``'s callback: it runs right after each block, so block and floor are
    measured under the same machine load, block by block (``floors[block]``, seconds). Each op
    is timed ``repeats`` times and its median kept.
    """

    def __init__(self, shape: BlockShape, dtype=torch.float32, device="cpu", repeats: int = 3):
        self.shape, self.device, self.repeats = shape, device, repeats
        self.ops = layer_ops(shape)
        self.calls = [op_call(op, dtype, device) for op in self.ops]
        for fn in self.calls:
            fn()   # warm-up: first calls pick kernels and allocate
        self.floors: dict[int, float] = {}

    def __call__(self, update) -> None:
        self.floors[update.block] = self.measure()["floor_s"]

    def op_seconds(self) -> list[float]:
        out = []
        for fn in self.calls:
            times = []
            for _ in range(self.repeats):
                _sync(self.device)
                t0 = time.perf_counter()
                fn()
                _sync(self.device)
                times.append(time.perf_counter() - t0)
            out.append(statistics.median(times))
        return out

    def measure(self) -> dict:
        """The floor of one block in seconds, with the rates it used (GFLOPS by op and by kind)."""
        s, secs = self.shape, self.op_seconds()
        seconds = {"matmul": 0.0, "sdpa": 0.0}
        ops, per_forward = [], 0.0
        for op, t in zip(self.ops, secs):
            calls = op.per_layer * s.cfg.num_layers
            per_forward += t * calls
            seconds[op.kind] += t * calls * s.forwards
            ops.append({"name": op.name, "dims": op.dims, "s": t, "gflops": op.flops / t / 1e9})
        flops = block_flops(s)
        # what the context pass needs: K/V of every layer = all layers but the last, plus its k, v projections
        essential = per_forward * s.forwards - per_forward / s.cfg.num_layers + 2 * secs[0]
        return {"floor_s": seconds["matmul"] + seconds["sdpa"], "essential_floor_s": essential,
                "matmul_s": seconds["matmul"], "sdpa_s": seconds["sdpa"],
                "matmul_gflops": flops["matmul"] / seconds["matmul"] / 1e9,
                "sdpa_gflops": flops["sdpa"] / seconds["sdpa"] / 1e9, "flops": flops, "ops": ops}


def measure_floor(s: BlockShape, dtype=torch.float32, device="cpu", repeats: int = 20) -> dict:
    """One careful floor measurement (``repeats`` calls per op, medians)."""
    return FloorProbe(s, dtype, device, repeats).measure()


def medium_shape(cfg: WanConfig = MEDIUM, hw: tuple[int, int] = MEDIUM_HW) -> BlockShape:
    p = cfg.patch_size
    return BlockShape(cfg, (hw[0] // p[1]) * (hw[1] // p[2]))


def random_model(cfg: WanConfig = MEDIUM, seed: int = 0, dtype=torch.float32, device="cpu") -> WanTransformer:
    """A backbone with seeded random weights (N(0, 0.02); 0.02·N(0, 1) biases, 1 + N(0, 0.02) norm scales)."""
    state = random_state_dict(cfg, seed)
    with torch.device("meta"):
        model = WanTransformer(cfg)
    model.load_state_dict(state, assign=True)
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)


def random_state_dict(cfg: WanConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """Bare Wan names → seeded random tensors: one weight file for every implementation compared."""
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in WanTransformer(cfg).state_dict().items()}
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in sorted(shapes.items()):
        t = torch.randn(shape, generator=g) * 0.02
        if name.endswith(("norm_q.weight", "norm_k.weight", "norm3.weight")):
            t += 1.0
        out[name] = t
    return out


PROMPT_ROWS = 24


def prompt(cfg: WanConfig = MEDIUM, rows: int = PROMPT_ROWS, seed: int = 1) -> torch.Tensor:
    """[1, 512, text_dim] prompt embedding, rows ≥ ``rows`` zero (as a text encoder pads)."""
    emb = torch.zeros(1, cfg.text_len, cfg.text_dim)
    emb[:, :rows] = torch.randn(1, rows, cfg.text_dim, generator=torch.Generator().manual_seed(seed))
    return emb


def write_result(name: str, report: dict) -> Path:
    """benchmarks/results/<name>.json (the folder is made if needed); prints and returns the path."""
    import json
    path = ROOT / "benchmarks" / "results" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1, default=str))
    print(f"wrote {path}")
    return path


def steady_blocks(timings: list[dict], frames_per_block: int = 3) -> list[dict]:
    """The per-block timings of blocks that start at STEADY_FROM_FRAME or later (full context)."""
    return [t for t in timings if t["block"] * frames_per_block >= STEADY_FROM_FRAME]


def context_pass_writes_only() -> str:
    """Make the AR loop's context pass call ``model.write_cache`` (K/V only) if this checkout's pipeline
    does not yet, and say which pass the figures measure. A checkout without ``write_cache`` runs as is."""
    import inspect

    from core.sampling import loop as pipeline
    if not hasattr(WanTransformer, "write_cache"):
        return "full forward (this core/ has no write_cache)"
    if "write_cache" in inspect.getsource(pipeline._BlockLoop.context_pass):
        return "write_cache (pipeline)"

    def context_pass(self, x0):
        self.model.write_cache(x0.permute(0, 2, 1, 3, 4), self._timestep(self.cfg.context_noise), self.text, self.cache)

    pipeline._BlockLoop.context_pass = context_pass
    return "write_cache (patched in by the benchmark: pipeline.py does not call it yet)"


def run_regime(model: WanTransformer, regime: str, probe: FloorProbe | None = None, frames: int = MEDIUM_FRAMES,
               hw: tuple[int, int] = MEDIUM_HW) -> dict:
    """One ``generate`` run ("native" or "retrieval", default settings otherwise) → its steady blocks'
    ms and, with a probe, each block's ratio to the floor measured right after it (medians + all)."""
    from core.sampling.loop import generate

    cfg = sampling_config() if regime == "native" else sampling_config(strategy="rag")
    res = generate(model, prompt(model.cfg), frames, hw, 0, cfg, timings=True, callback=probe)
    blocks = steady_blocks(res.timings, cfg.frames_per_block)
    out = {"regime": regime, "block_ms": [1e3 * t["total_s"] for t in blocks]}
    out["ms"] = statistics.median(out["block_ms"])
    if probe is not None:
        out["floor_ms"] = [1e3 * probe.floors[t["block"]] for t in blocks]
        out["ratios"] = [t["total_s"] / probe.floors[t["block"]] for t in blocks]
        out["ratio"] = statistics.median(out["ratios"])
    return out


def spread(values: list[float]) -> str:
    """'median [min–max]' of a list, the noise statement every benchmark prints."""
    return f"{statistics.median(values):.2f} [{min(values):.2f}–{max(values):.2f}]"


def main() -> int:
    import argparse
    import os

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=2, help="interleaved native/retrieval runs each")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    s = medium_shape()
    f = measure_floor(s)
    print(f"medium: dim {s.cfg.dim}, ffn {s.cfg.ffn_dim}, {s.cfg.num_layers} layers, {s.cfg.num_heads} heads, "
          f"{s.tokens} tokens/frame, context {s.context_frames} frames, {torch.get_num_threads()} threads")
    for op in f["ops"]:
        print(f"  {op['name']:20} {str(op['dims']):28} {op['s'] * 1e3:8.3f} ms  {op['gflops']:7.1f} GFLOPS")
    print(f"floor {f['floor_s'] * 1e3:.1f} ms/block (matmul {f['matmul_s'] * 1e3:.1f} ms at {f['matmul_gflops']:.0f} "
          f"GFLOPS, SDPA {f['sdpa_s'] * 1e3:.1f} ms at {f['sdpa_gflops']:.0f} GFLOPS); "
          f"essential (context pass writes K/V only) {f['essential_floor_s'] * 1e3:.1f} ms")
    print(f"context pass: {context_pass_writes_only()}; core from {Path(sys.modules['core'].__file__).parent}")
    model, probe = random_model(), FloorProbe(s)
    # the same block with the prompt's padding merged (core/model/transformer.py merge_padding): cross-attention over
    # the prompt's rows + 1 instead of 512 — what this engine computes; a floor of that smaller math
    merged = replace(s, text_rows=PROMPT_ROWS + 1)
    merged_floor = [measure_floor(merged)["floor_s"]]
    runs = {"native": [], "retrieval": []}
    load = [os.getloadavg()[0]]
    for _ in range(args.runs):          # interleaved, so a change of machine load hits both regimes
        for regime, acc in runs.items():
            acc.append(run_regime(model, regime, probe))
            load.append(os.getloadavg()[0])
    merged_floor.append(measure_floor(merged)["floor_s"])
    mf = 1e3 * statistics.median(merged_floor)
    for regime, acc in runs.items():
        ratios = [r for run in acc for r in run["ratios"]]
        ms = [m for run in acc for m in run["block_ms"]]
        floors = [m for run in acc for m in run["floor_ms"]]
        print(f"{regime:10} ms/block {spread(ms)}  floor ms {spread(floors)}  ratio to floor {spread(ratios)} "
              f"(median [min–max] over {len(ratios)} blocks); to the merged-padding floor ({mf:.1f} ms): "
              f"{statistics.median(ms) / mf:.2f}")
    print(f"load average (1 min) during the runs: {spread(load)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
