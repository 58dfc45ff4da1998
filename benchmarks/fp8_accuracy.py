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
from dataclasses import dataclass
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
from context_buffers import MEDIUM_RUN, medium_case  # noqa: E402
from pool_accuracy import golden_case, rel, with_storage  # noqa: E402


@dataclass(frozen=True)
class Variant:
    doc: str
    model: Callable[[torch.nn.Module], torch.nn.Module] = lambda m: m          # gets a copy of the float32 model
    config: Callable[[SamplingConfig], SamplingConfig] = lambda c: c


VARIANTS: dict[str, Variant] = {
    "bf16": Variant("the model in bfloat16 (the yardstick)", lambda m: m.to(torch.bfloat16)),
    "fp8-weights": Variant("block projections fp8 (per-row scales), compute float32", to_fp8),
    "fp8-weights-bf16": Variant("block projections fp8, the rest and the compute bfloat16",
                                lambda m: to_fp8(m).to(torch.bfloat16)),
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

    def run(self, variant: Variant | None = None) -> torch.Tensor:
        """Final latents of the exact run (``variant`` None) or of ``variant``."""
        model, cfg = self.model, self.config
        if variant is not None:
            model, cfg = variant.model(copy.deepcopy(self.model)), variant.config(self.config)
        with torch.no_grad():
            return generate(model, self.embeds, self.frames, self.latent_hw, self.seed, cfg,
                            encoder=self.encoder).latents


def golden() -> Case:
    model, embeds, encoder = golden_case()
    return Case(model, embeds, 48, (8, 12), 42, with_storage("kv"), encoder)


def medium() -> Case:
    model, embeds = medium_case()
    return Case(model, embeds, 60, MEDIUM_RUN["latent_hw"], MEDIUM_RUN["seed"], strategy_config("rag"))


CASES: dict[str, Callable[[], Case]] = {"golden": golden, "medium": medium}


def errors(case: Case, names) -> dict[str, float]:
    """Relative L2 error of each variant's final latents against the exact run (float32 throughout)."""
    exact = case.run()
    return {name: rel(case.run(VARIANTS[name]), exact) for name in names}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", action="append", choices=sorted(VARIANTS), help="repeatable; default: all")
    ap.add_argument("--case", action="append", choices=sorted(CASES), help="repeatable; default: all")
    args = ap.parse_args()
    names = [YARDSTICK] + [v for v in (args.variant or VARIANTS) if v != YARDSTICK]
    for case_name in args.case or CASES:
        err = errors(CASES[case_name](), names)
        print(f"\n== {case_name} case: final latents, relative L2 error against float32 ==")
        for name in names:
            print(f"  {name:18s} {err[name]:.3e}  ({err[name] / err[YARDSTICK]:.2f}x the bf16 yardstick)  "
                  f"{VARIANTS[name].doc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
