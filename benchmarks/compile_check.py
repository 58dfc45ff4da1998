"""Does ``model.compile_blocks()`` (torch.compile of each layer's cache-free halves) pay on this machine?

    python benchmarks/compile_check.py [--rounds 2] [--threads 2] [--device cpu]

Medium size, both regimes, eager and compiled models interleaved in one process (the compiled
one warmed up first, its compile time reported separately); per block after the cache is full,
each block's ratio to the floor measured right after it. Also the relative difference of the
compiled run's latents to the eager run's (same seed). Writes benchmarks/results/compile_check.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from floor import (MEDIUM, MEDIUM_HW, ROOT, FloorProbe, context_pass_writes_only, medium_shape, prompt,  # noqa: E402
                   random_model, run_regime, spread)

import torch  # noqa: E402

from core.config import SamplingConfig  # noqa: E402
from core.pipeline import generate  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    context_pass = context_pass_writes_only()
    eager = random_model(MEDIUM, device=args.device)
    compiled = random_model(MEDIUM, device=args.device).compile_blocks()
    t0 = time.perf_counter()
    warm = generate(compiled, prompt(), 12, MEDIUM_HW, 0, SamplingConfig())   # both regimes' shapes
    generate(compiled, prompt(), 12, MEDIUM_HW, 0, SamplingConfig(retrieval=None))
    compile_s = time.perf_counter() - t0
    ref = generate(eager, prompt(), 12, MEDIUM_HW, 0, SamplingConfig())
    diff = ((warm.latents - ref.latents).norm() / ref.latents.norm()).item()
    print(f"context pass: {context_pass}; compile + first runs {compile_s:.0f} s; "
          f"compiled vs eager latents rel diff {diff:.1e}")
    probe = FloorProbe(medium_shape(), device=args.device)
    runs = {(regime, kind): [] for regime in ("native", "retrieval") for kind in ("eager", "compiled")}
    load = [os.getloadavg()[0]]
    for rnd in range(args.rounds):
        for regime in ("native", "retrieval"):
            kinds = ("eager", "compiled") if rnd % 2 == 0 else ("compiled", "eager")
            for kind in kinds:
                model = eager if kind == "eager" else compiled
                runs[regime, kind].append(run_regime(model, regime, probe))
                load.append(os.getloadavg()[0])
    report = {"compile_s": compile_s, "rel_diff": diff, "threads": args.threads, "load": load, "regimes": {}}
    for regime in ("native", "retrieval"):
        e = [r for run in runs[regime, "eager"] for r in run["ratios"]]
        c = [r for run in runs[regime, "compiled"] for r in run["ratios"]]
        gain = [a / b for a, b in zip(e, c)]
        report["regimes"][regime] = {"eager_ratio": e, "compiled_ratio": c, "gain": gain}
        print(f"{regime:10} ratio to floor: eager {spread(e)}  compiled {spread(c)}  eager/compiled {spread(gain)}")
    print(f"load average (1 min) during the runs: {spread(load)}")
    path = ROOT / "benchmarks" / "results" / "compile_check.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
