"""Shared vs per-layer context buffers (core/context/kv_cache.py ``context``): time per block and bytes.

    python benchmarks/context_buffers.py                  # medium size, rag, 8 rounds
    python benchmarks/context_buffers.py --strategy infinity-rope --rounds 4

The medium size of benchmarks/floor.py (4 layers of 512, 4 heads of 128, 16x24 latents = 96 tokens per frame,
random weights, float32). One process; the two modes alternate run by run (A B B A …) so a change of machine
load hits both. Reported: the median block time from frame 30 on of each mode, their ratio, and the attention
cache's bytes (``GenerationResult.cache_bytes``), with what the same buffers cost at the real sizes.
The latents of the two modes must be bit-identical (checked).
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.app.plan import strategy_config  # noqa: E402
from core.app.tiny import tiny_model  # noqa: E402
from core.context.kv_cache import KVCache  # noqa: E402
from core.sampling.loop import generate  # noqa: E402

INIT = KVCache.__init__
MEDIUM_RUN = {"latent_hw": (16, 24), "seed": 5}     # and 60 frames, strategy "rag" by default


def medium_case():
    """(float32 backbone, prompt embeddings) of the medium size: random weights, 4 layers of 512 (4 heads)."""
    model = tiny_model(0, dim=512, layers=4, heads=4, text_dim=64)
    return model, torch.randn(1, 12, 64, generator=torch.Generator().manual_seed(1))


def medium_case():
    """The medium size's model (random weights, float32) and prompt embeddings."""
    model = tiny_model(0, dim=512, layers=4, heads=4, text_dim=64)
    return model, torch.randn(1, 12, 64, generator=torch.Generator().manual_seed(1))


def run(model, embeds, strategy: str, context: str, frames: int, **cache):
    """One medium-size run with the KV cache's ``context`` (and any other KVCache setting in ``cache``)."""
    def init(self, *args, **kw):
        INIT(self, *args, **{**kw, "context": context, **cache})
    KVCache.__init__ = init
    try:
        res = generate(model, embeds, frames, MEDIUM_RUN["latent_hw"], MEDIUM_RUN["seed"], strategy_config(strategy),
                       timings=True)
    finally:
        KVCache.__init__ = INIT
    times = [t["total_s"] for t in res.timings if t["block"] * 3 >= 30]
    return res, statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--strategy", default="rag")
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=8)
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    model, embeds = medium_case()
    times = {"per-layer": [], "shared": []}
    latents, cache = {}, {}
    for r in range(args.rounds):
        order = ("per-layer", "shared") if r % 2 == 0 else ("shared", "per-layer")
        for mode in order:
            res, t = run(model, embeds, args.strategy, mode, args.frames)
            times[mode].append(t)
            latents.setdefault(mode, res.latents)
            cache[mode] = res.cache_bytes
    assert torch.equal(latents["per-layer"], latents["shared"]), "the two modes must give the same latents"
    med = {m: statistics.median(v) for m, v in times.items()}
    print(f"{args.strategy}, 4 layers of 512, 96 tokens/frame, {args.frames} frames, {args.rounds} rounds each "
          f"(torch {torch.__version__}, {torch.get_num_threads()} threads)")
    for m in times:
        print(f"  {m:9s}: median block {1000 * med[m]:.1f} ms (runs {', '.join(f'{1000 * t:.0f}' for t in times[m])}), "
              f"attention cache {cache[m] / 2**20:.2f} MiB")
    print(f"  shared / per-layer time: {med['shared'] / med['per-layer']:.3f}; bytes saved "
          f"{(cache['per-layer'] - cache['shared']) / 2**20:.2f} MiB of {cache['per-layer'] / 2**20:.2f}")


if __name__ == "__main__":
    main()
