"""Does ``model.compile_blocks()`` (torch.compile of each layer's cache-free halves) pay on this machine?

    python benchmarks/compile_check.py [--rounds 3] [--threads 2] [--device cpu]

Medium size, both regimes; the eager model and each compiled variant (``--variants``: torch.compile
keyword arguments as JSON; default: torch.compile's defaults, and inductor's weight freezing) run
interleaved in one process, the order rotating every round. Compiled models are warmed up first
(compile time reported). Per block after the cache is full, each block's ratio to the floor
measured right after it; the relative difference of each variant's latents to eager's (same seed).
Writes benchmarks/results/compile_check.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from floor import (MEDIUM, MEDIUM_HW, FloorProbe, context_pass_writes_only, medium_shape, prompt,  # noqa: E402
                   random_model, run_regime, spread, write_result)

import torch  # noqa: E402

from core.sampling.config import SamplingConfig  # noqa: E402
from core.sampling.loop import generate  # noqa: E402
from core.app.plan import sampling_config

VARIANTS = {"default": {}, "freezing": {"options": {"freezing": True}}}


def build(variants: dict, device: str) -> tuple[dict, dict]:
    """name → model (eager first), and each compiled one's warm-up seconds and latents difference to eager."""
    models = {"eager": random_model(MEDIUM, device=device)}
    ref = generate(models["eager"], prompt(), 12, MEDIUM_HW, 0, sampling_config(strategy="rag")).latents
    info = {}
    for name, kwargs in variants.items():
        models[name] = random_model(MEDIUM, device=device).compile_blocks(**kwargs)
        t0 = time.perf_counter()
        out = generate(models[name], prompt(), 12, MEDIUM_HW, 0, sampling_config(strategy="rag")).latents   # both regimes' shapes
        generate(models[name], prompt(), 12, MEDIUM_HW, 0, sampling_config())
        info[name] = {"kwargs": kwargs, "compile_s": time.perf_counter() - t0,
                      "rel_diff": ((out - ref).norm() / ref.norm()).item()}
        print(f"{name:10} torch.compile(**{json.dumps(kwargs)}): warm-up {info[name]['compile_s']:.0f} s, "
              f"latents vs eager rel diff {info[name]['rel_diff']:.1e}", flush=True)
    return models, info


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--variants", default=json.dumps(VARIANTS), help="JSON: name → torch.compile kwargs")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"context pass: {context_pass_writes_only()}; {args.threads} threads")
    models, info = build(json.loads(args.variants), args.device)
    probe = FloorProbe(medium_shape(), device=args.device)
    names = list(models)
    ratios = {(regime, n): [] for regime in ("native", "retrieval") for n in names}
    load = [os.getloadavg()[0]]
    for rnd in range(args.rounds):
        order = names[rnd % len(names):] + names[:rnd % len(names)]   # rotate who goes first
        for regime in ("native", "retrieval"):
            for n in order:
                ratios[regime, n] += run_regime(models[n], regime, probe)["ratios"]
                load.append(os.getloadavg()[0])
    report = {"variants": info, "threads": args.threads, "load": load, "ratios": {}}
    for regime in ("native", "retrieval"):
        line = []
        for n in names:
            r = ratios[regime, n]
            report["ratios"][f"{regime}/{n}"] = r
            gain = [e / c for e, c in zip(ratios[regime, "eager"], r)]
            line.append(f"{n} {spread(r)}" + ("" if n == "eager" else f" (eager/{n} {spread(gain)})"))
        print(f"{regime:10} ratio to floor: " + "; ".join(line))
    print(f"load average (1 min) during the runs: {spread(load)}")
    write_result("compile_check", report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
