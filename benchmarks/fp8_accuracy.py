"""How far a quantised option moves a run's final latents, next to the bf16-vs-fp32 yardstick of the same case.

    python benchmarks/fp8_accuracy.py                                   # every variant, both cases
    python benchmarks/fp8_accuracy.py --variant fp8-weights --case golden

Cases: "golden" (tests/data/golden: the tiny backbone, its prompt and retrieval encoder, 48 frames, rag; built
by benchmarks/pool_accuracy.py) and "medium" (benchmarks/context_buffers.py: random weights, 4 layers of 512,
60 frames of 16×24 latents, rag). For each variant: the relative L2 error of the final latents against the
float32 exact run of the same case, and its ratio to the yardstick (the "bf16" variant: the same run with the
model in bfloat16).

Measured (CPU, torch 2.13): golden — bf16 6.37e-3; fp8-weights 1.10e-2 (1.72x); fp8-weights-bf16 1.30e-2 (2.04x).
medium — bf16 7.30e-3; fp8-weights 2.04e-2 (2.79x); fp8-weights-bf16 2.18e-2 (2.99x).

A variant is an entry of ``VARIANTS``: how it changes the float32 model (given a private copy) and the run's
config. Another quantised option adds one line there (e.g. an fp8 KV cache: ``config=lambda c: ...``).
"""
from __future__ import annotations

import argparse
import copy
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))     # the benchmarks whose cases are reused

from core.app.plan import strategy_config  # noqa: E402
from core.model.fp8_linear import to_fp8  # noqa: E402
from core.sampling.config import SamplingConfig  # noqa: E402
from core.sampling.loop import generate  # noqa: E402
from core.sampling.memory import EXACT, MemorySettings  # noqa: E402
from core.retrieval.pool import HistoryPool  # noqa: E402
from context_buffers import MEDIUM_RUN, medium_case  # noqa: E402
from pool_accuracy import golden_case, rel, with_storage  # noqa: E402


@dataclass(frozen=True)
class Variant:
    doc: str
    model: Callable[[torch.nn.Module], torch.nn.Module] = lambda m: m          # gets a copy of the float32 model
    config: Callable[[SamplingConfig], SamplingConfig] = lambda c: c
    memory: MemorySettings = EXACT


VARIANTS: dict[str, Variant] = {
    "bf16": Variant("the model in bfloat16 (the yardstick)", lambda m: m.to(torch.bfloat16)),
    "fp8-weights": Variant("block projections fp8 (per-row scales), compute float32", to_fp8),
    "fp8-weights-bf16": Variant("block projections fp8, the rest and the compute bfloat16",
                                lambda m: to_fp8(m).to(torch.bfloat16)),
    "fp8-kv-cache": Variant("the KV cache and the retrieved frames fp8 (a scale per token and head)",
                            memory=MemorySettings("shared", "fp8", 0)),
    "pool-kv-fp8": Variant("the history pool stored fp8 (a scale per token and head)",
                           config=lambda c: replace(c, retrieval=replace(c.retrieval, pool=replace(
                               c.retrieval.pool, storage="kv-fp8")))),
}
YARDSTICK = "bf16"


@dataclass
class Case:
    model: torch.nn.Module          # float32
    embeds: torch.Tensor
    frames: int
    latent_hw: tuple[int, int]
    seed: int
    config: SamplingConfig
    encoder: object = None

    def run(self, variant: Variant | None = None) -> tuple[torch.Tensor, list]:
        """Final latents of the exact run (``variant`` None) or of ``variant``, and what each block retrieved:
        [(pool indices, K, V)] as the history pool's gather returned them (float32)."""
        model, cfg, memory = self.model, self.config, EXACT
        if variant is not None:
            model, cfg = variant.model(copy.deepcopy(self.model)), variant.config(self.config)
            memory = variant.memory
        seen, gather = [], HistoryPool.gather

        def recording(pool, indices, *args, **kw):
            k, v = gather(pool, indices, *args, **kw)
            if isinstance(k, torch.Tensor):
                seen.append((indices.tolist(), k.float().clone(), v.float().clone()))
            else:   # read a layer at a time (shared context buffers): the layers as the cache takes them
                seen.append((indices.tolist(), torch.stack([k[i].float() for i in range(len(k))]),
                             torch.stack([v[i].float() for i in range(len(v))])))
            return k, v
        HistoryPool.gather = recording
        try:
            with torch.no_grad():
                latents = generate(model, self.embeds, self.frames, self.latent_hw, self.seed, cfg,
                                   encoder=self.encoder, memory=memory).latents
        finally:
            HistoryPool.gather = gather
        return latents, seen


def golden() -> Case:
    model, embeds, encoder = golden_case()
    return Case(model, embeds, 48, (8, 12), 42, with_storage("kv"), encoder)


def medium() -> Case:
    model, embeds = medium_case()
    return Case(model, embeds, 60, MEDIUM_RUN["latent_hw"], MEDIUM_RUN["seed"], strategy_config("rag"))


CASES: dict[str, Callable[[], Case]] = {"golden": golden, "medium": medium}


def errors(case: Case, names) -> dict[str, tuple[float, float | None]]:
    """(final latents, retrieved K/V): relative L2 errors of each variant against the exact run (float32), the K/V
    over every block whose retrieval picked the same frames as the exact run's (None when none did)."""
    exact, exact_kv = case.run()
    out = {}
    for name in names:
        latents, kv = case.run(VARIANTS[name])
        same = [(a, b) for a, b in zip(kv, exact_kv) if a[0] == b[0]]
        kv_err = None
        if same:
            got = torch.cat([torch.cat([a[1].flatten(), a[2].flatten()]) for a, _ in same])
            ref = torch.cat([torch.cat([b[1].flatten(), b[2].flatten()]) for _, b in same])
            kv_err = rel(got, ref)
        out[name] = (rel(latents, exact), kv_err)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", action="append", choices=sorted(VARIANTS), help="repeatable; default: all")
    ap.add_argument("--case", action="append", choices=sorted(CASES), help="repeatable; default: all")
    args = ap.parse_args()
    names = [YARDSTICK] + [v for v in (args.variant or VARIANTS) if v != YARDSTICK]
    for case_name in args.case or CASES:
        err = errors(CASES[case_name](), names)
        print(f"\n== {case_name} case: relative L2 error against the float32 exact run ==")
        y = err[YARDSTICK]
        for name in names:
            (lat, kv), doc = err[name], VARIANTS[name].doc
            kv_text = "—" if kv is None else f"{kv:.3e} ({kv / y[1]:.2f}x)"
            print(f"  {name:18s} latents {lat:.3e} ({lat / y[0]:.2f}x the bf16 yardstick)   retrieved K/V {kv_text}  "
                  f"{doc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
