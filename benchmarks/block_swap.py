"""Block swap (core/model/block_swap.py): time per block with and without swapped blocks, and what a copy costs on CUDA.

    python benchmarks/block_swap.py                  # medium size: swap 0 / 2 / 4 of 4 blocks
    python benchmarks/block_swap.py --rounds 0       # the forwards only (no whole runs)
    python benchmarks/block_swap.py --bandwidth 12   # PCIe 4.0 x8 (a laptop or 4060-class card)

Measured here, at the medium size of benchmarks/floor.py (4 layers of 512, 4 heads of 128, 16x24 latents = 96
tokens per frame, random weights, float32), each swap count interleaved with the others so a change of machine
load hits all: (1) one backbone forward of a 3-frame block (``--forwards`` of them): its median time, and the
extra time per swapped block ((forward time − no-swap forward time) / swapped blocks) with the copy rate that
implies; (2) whole rag runs of ``--frames`` frames (``--rounds`` each): the median AR-block time from frame 30
on. On a CPU the "device" is host memory, so the extra is the swap's bookkeeping plus one memcpy of the block's
weights per forward. Outputs and latents of every count must be bit-identical (checked).

Expected on CUDA (not measured here: no GPU): each swapped block is copied host→device once per forward, so
its cost per forward is its bytes / the PCIe bandwidth, hidden when it is at most the time one block computes.
Block bytes are exact (``swap_bytes`` on the released checkpoint's modules on the meta device, bf16); the block
compute time is an estimate (its FLOPs at the published size, benchmarks/floor.py's count, over an assumed
sustained rate: 400 TFLOPS for an H100-class card, 40 for an 8-16 GB consumer card): the repo states no measured H100 block time.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from floor import MEDIUM, MEDIUM_FRAMES, MEDIUM_HW, STEADY_FROM_FRAME, BlockShape, layer_ops  # noqa: E402

from core.app.plan import strategy_config  # noqa: E402
from core.app.tiny import tiny_model  # noqa: E402
from core.families.registry import FAMILIES  # noqa: E402
from core.model.block_swap import swap_blocks, swap_bytes, unswap_blocks  # noqa: E402
from core.sampling.loop import generate  # noqa: E402

RATES = (("H100-class", 400.0), ("8-16 GB consumer card", 40.0))   # assumed sustained bf16 rates


def forward_times(args) -> None:
    """One backbone forward of a block (3 frames attending to themselves), swap counts interleaved forward by forward."""
    counts = (0, MEDIUM.num_layers // 2, MEDIUM.num_layers)
    models = {n: tiny_model(0, MEDIUM) for n in counts}
    swaps = {n: swap_blocks(m, n, "cpu") for n, m in models.items()}
    g = torch.Generator().manual_seed(1)
    embeds = torch.randn(1, 12, MEDIUM.text_dim, generator=g)
    x, t = torch.randn(1, MEDIUM.in_dim, 3, *MEDIUM_HW, generator=g), torch.full((1, 3), 500.0)
    text = {n: m.encode_text(embeds) for n, m in models.items()}
    times: dict[int, list[float]] = {n: [] for n in counts}
    out = {}
    for r in range(args.forwards + 1):
        for n in counts if r % 2 == 0 else counts[::-1]:
            start = time.perf_counter()
            out[n] = models[n](x, t, text[n])
            if r:                                   # the first round warms up
                times[n].append(time.perf_counter() - start)
    assert all(torch.equal(out[0], o) for o in out.values()), "a swap changed a forward's output"
    assert all(s.peak <= 2 for s in swaps.values())
    block = swap_bytes(models[0], 1).block
    med = {n: statistics.median(v) for n, v in times.items()}
    print(f"measured, one forward of 3 frames ({MEDIUM.num_layers} layers of {MEDIUM.dim}, 96 tokens/frame, float32, "
          f"median of {args.forwards}; torch {torch.__version__}, {torch.get_num_threads()} threads): "
          f"one block's weights {block / 2**20:.2f} MiB, {1000 * med[0] / MEDIUM.num_layers:.2f} ms per block unswapped")
    for n in counts:
        extra = (med[n] - med[0]) / n if n else 0.0
        rate = f" ({block / extra / 1e9:.2f} GB/s)" if extra > 0 else ""
        print(f"  swap {n} of {MEDIUM.num_layers}: {1000 * med[n]:7.2f} ms per forward, {med[n] / med[0]:.3f}x no swap;"
              f" per swapped block {1000 * extra:+.2f} ms{rate}")
    print("  outputs bit-identical for every count")


def run(model, embeds, n: int, frames: int):
    swap = swap_blocks(model, n, "cpu")
    try:
        res = generate(model, embeds, frames, MEDIUM_HW, 5, strategy_config("rag"), timings=True)
    finally:
        unswap_blocks(model)
    assert swap.peak <= 2
    times = [t["total_s"] for t in res.timings if t["block"] * 3 >= STEADY_FROM_FRAME]
    return res.latents, statistics.median(times)


def block_times(args) -> None:
    """Whole rag runs; the median AR-block time from frame 30 on (4 denoising forwards + the context pass)."""
    model = tiny_model(0, MEDIUM)
    embeds = torch.randn(1, 12, MEDIUM.text_dim, generator=torch.Generator().manual_seed(1))
    counts = (0, MEDIUM.num_layers // 2, MEDIUM.num_layers)
    times: dict[int, list[float]] = {n: [] for n in counts}
    latents = {}
    for r in range(args.rounds):
        for n in counts if r % 2 == 0 else counts[::-1]:
            lat, t = run(model, embeds, n, args.frames)
            times[n].append(t)
            latents.setdefault(n, lat)
    assert all(torch.equal(latents[0], lat) for lat in latents.values()), "a swap changed the latents"
    med = {n: statistics.median(v) for n, v in times.items()}
    print(f"measured, whole runs: rag, {args.frames} frames, {args.rounds} rounds each")
    for n in counts:
        print(f"  swap {n} of {MEDIUM.num_layers}: median AR block {1000 * med[n]:7.1f} ms "
              f"({med[n] / med[0]:.3f}x no swap; runs {', '.join(f'{1000 * t:.0f}' for t in times[n])})")
    print("  latents bit-identical for every count")


def expected(args) -> None:
    print(f"expected on CUDA: copy at {args.bandwidth:g} GB/s vs one block's compute at an assumed sustained bf16 "
          f"rate (an estimate: the repo states no measured H100 block time)")
    for family in FAMILIES:
        sizes = family.released
        with torch.device("meta"):
            model = family.build(family.make_config(sizes, sizes.dim // family.head_dim))
        c, d = model.cfg, family.defaults
        tokens = (d.latent_hw[0] // c.patch_size[1]) * (d.latent_hw[1] // c.patch_size[2])
        shape = BlockShape(c, tokens, d.frames_per_block, d.window, forwards=1)
        flops = sum(op.flops * op.per_layer for op in layer_ops(shape))
        sb = swap_bytes(model, c.num_layers - 2, torch.bfloat16)
        copy_ms = sb.block / (args.bandwidth * 1e9) * 1e3
        print(f"  {family.name} ({c.num_layers} blocks of dim {c.dim}, {d.frames_per_block} frames x {tokens} tokens,"
              f" window {d.window}): block {sb.block / 2**20:.0f} MiB -> copy {copy_ms:.1f} ms per forward; "
              f"{flops / 1e9:.0f} GFLOP per block-forward; swapping {sb.blocks} of {c.num_layers} keeps "
              f"{sb.host / 2**30:.2f} GiB in pinned RAM, saves {sb.saved / 2**30:.2f} GiB of {sb.total / 2**30:.2f} GiB")
        for label, tflops in RATES:
            compute_ms = flops / (tflops * 1e12) * 1e3
            verdict = ("hidden" if copy_ms <= compute_ms else
                       f"not hidden: +{copy_ms - compute_ms:.1f} ms per swapped block-forward")
            print(f"    {label} at {tflops:g} TFLOPS: compute {compute_ms:.1f} ms -> {verdict}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=MEDIUM_FRAMES)
    ap.add_argument("--forwards", type=int, default=20, help="timed forwards per swap count")
    ap.add_argument("--rounds", type=int, default=2, help="whole runs per swap count (0: none)")
    ap.add_argument("--bandwidth", type=float, default=25.0, help="host→device GB/s (PCIe 4.0 x16 ≈ 25)")
    ap.add_argument("--expected-only", action="store_true", help="only the CUDA figures (no run)")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    if not args.expected_only:
        forward_times(args)
        if args.rounds:
            block_times(args)
    expected(args)


if __name__ == "__main__":
    main()
