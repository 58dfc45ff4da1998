"""The memory settings benchmarks/vram.py and benchmarks/gpu_check.py measure: name → (MemorySettings, weights),
and the goals they are held to (peak device GiB at the family's published size)."""
from __future__ import annotations

import copy
import dataclasses

import torch

from core.model.fp8_linear import to_fp8

from core.sampling.memory import EXACT, MemorySettings

VARIANTS = {
    "exact": (EXACT, "native"),                                             # what the published codes do
    "shared": (MemorySettings("shared", "exact", 0), "native"),             # lossless
    "fp8 weights": (MemorySettings("shared", "exact", 0), "fp8"),
    "fp8 KV": (MemorySettings("shared", "fp8", 0), "native"),
    "fp8 weights + fp8 KV": (MemorySettings("shared", "fp8", 0), "fp8"),
    # block swap (lossless, slower): what it saves on top
    "shared, swap 8": (MemorySettings("shared", "exact", 8), "native"),
    "shared, swap 20": (MemorySettings("shared", "exact", 20), "native"),
    "fp8 weights + fp8 KV, swap 30": (MemorySettings("shared", "fp8", 30), "fp8"),
    # a sampling setting, not a memory one: LongLive 2.0's guidance keeps a second KV cache for the negative prompt
    "exact, guidance 3": (EXACT, "native"),
}
GUIDANCE = {"exact, guidance 3": 3.0}     # variant → guidance_scale (refused with retrieval: not run with rag)

FAMILY = {"wan21": "Wan2.1 text-to-video", "wan22": "Wan2.2 TI2V-5B"}
GOALS = {   # name: (family, strategy, variant, GiB)
    "LongLive 2.0 + retrieval, bf16, lossless (shared context)": (FAMILY["wan22"], "rag", "shared", 22),
    "LongLive 2.0 + retrieval, fp8 weights + fp8 KV": (FAMILY["wan22"], "rag", "fp8 weights + fp8 KV", 14),
    "LongLive 2.0 native, fp8 weights + fp8 KV": (FAMILY["wan22"], "native", "fp8 weights + fp8 KV", 11),
    "Wan 1.3B + retrieval, bf16, lossless (shared context)": (FAMILY["wan21"], "rag", "shared", 8),
    "Wan 1.3B + retrieval, fp8 weights + fp8 KV + every block swapped": (FAMILY["wan21"], "rag",
                                                                          "fp8 weights + fp8 KV, swap 30", 4),
}


def run_config(cfg, variant: str):
    """The run's config under ``variant`` (its guidance scale, for the guidance rows)."""
    return dataclasses.replace(cfg, guidance_scale=GUIDANCE[variant]) if variant in GUIDANCE else cfg


def runs(strategy: str, variant: str) -> bool:
    """Whether ``variant`` applies to ``strategy`` (guidance has no history pool for retrieval)."""
    return variant not in GUIDANCE or strategy != "rag"


def prepare(model: torch.nn.Module, weights: str, dtype: torch.dtype) -> torch.nn.Module:
    """A copy of the meta model in ``dtype`` with the weights as ``weights`` keeps them on the device."""
    model = copy.deepcopy(model).to(dtype)
    return to_fp8(model) if weights == "fp8" else model
