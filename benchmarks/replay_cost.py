"""What starting from given latents costs: seconds per replayed block vs per generated block (medium size).

    python benchmarks/replay_cost.py [--rounds 2] [--threads 2]

A replayed block (resume, extend, a clip start) runs retrieval, descriptors and the context pass over
the given latents — no denoising steps — so it should cost about one forward of the five a generated
block costs. Per regime and round: a 60-frame run (every block generated), then the same run resumed
from its first 57 frames (19 blocks replayed, 1 generated). Compared block by block over blocks 10–18
(full context in both regimes), in the same process, regimes and runs interleaved. Writes
benchmarks/results/replay_cost.json.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from floor import MEDIUM, MEDIUM_HW, MEDIUM_FRAMES, prompt, random_model, write_result  # noqa: E402

import torch  # noqa: E402

from core.sampling.config import SamplingConfig  # noqa: E402
from core.sampling.loop import generate  # noqa: E402
from core.app.plan import sampling_config

BLOCKS = range(10, 19)


def block_seconds(model, cfg: SamplingConfig, prefix=None) -> tuple[dict[int, float], torch.Tensor]:
    res = generate(model, prompt(), MEDIUM_FRAMES, MEDIUM_HW, 0, cfg, prefix=prefix)
    return {t["block"]: t["total_s"] for t in res.timings}, res.latents


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = random_model(MEDIUM)
    regimes = {"native": sampling_config(), "retrieval": sampling_config(strategy="rag")}
    ratios = {r: [] for r in regimes}
    ms = {r: {"generated": [], "replayed": []} for r in regimes}
    load = [os.getloadavg()[0]]
    for _ in range(args.rounds):
        for name, cfg in regimes.items():
            gen, latents = block_seconds(model, cfg)
            rep, again = block_seconds(model, cfg, prefix=latents[:, :, :MEDIUM_FRAMES - 3])
            assert torch.equal(again, latents), "a resumed run must equal the uninterrupted one"
            for b in BLOCKS:
                ratios[name].append(rep[b] / gen[b])
                ms[name]["generated"].append(1e3 * gen[b])
                ms[name]["replayed"].append(1e3 * rep[b])
            load.append(os.getloadavg()[0])
    report = {"blocks": list(BLOCKS), "threads": args.threads, "load": load, "regimes": {}}
    for name in regimes:
        g, r, q = (statistics.median(x) for x in (ms[name]["generated"], ms[name]["replayed"], ratios[name]))
        report["regimes"][name] = {"generated_ms": g, "replayed_ms": r, "replayed_over_generated": q,
                                   "ratios": ratios[name]}
        print(f"{name:10} generated {g:7.1f} ms/block  replayed {r:6.1f} ms/block  replayed/generated {q:.3f} "
              f"[{min(ratios[name]):.3f}–{max(ratios[name]):.3f}] (medians over {len(ratios[name])} blocks)")
    print(f"load average (1 min): {statistics.median(load):.2f}")
    write_result("replay_cost", report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
