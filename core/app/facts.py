"""The numbers users read, asked of their owners: every family's published settings, every strategy's defaults,
video lengths, and the memory a run takes (core/sampling/budget.py, the history pool's own accounting).

Plain data only; ``fact_text.py`` turns it into the sentences and tables of tooltips, help pages, workflow
notes and the README, so a number changes in one place and every text follows (``python locales/build.py``,
``python workflows/build.py``; tests/test_facts.py fails while a committed text disagrees).
"""
from __future__ import annotations

import copy

import math
from dataclasses import dataclass

import torch

from ..context.strategies import NAMES as STRATEGIES
from ..families import registry
from ..retrieval.config import POOL_STORAGES, RetrievalConfig
from ..retrieval.pool import frame_bytes
from ..sampling.budget import DeviceBytes, device_bytes
from ..sampling.memory import EXACT, MemorySettings
from ..model.fp8_linear import to_fp8
from ..sampling.defaults import FamilyDefaults
from ..sampling.request import SamplingRequest, resolve
from .default_family import default_family

# How the texts name a family: (key for generated-block markers, label). A family missing here is named by
# its registry name.
NAMES = {"Wan2.1 text-to-video": ("wan21", "Wan 1.3B"), "Wan2.2 TI2V-5B": ("longlive2", "LongLive 2.0")}
DURATIONS = (30, 60, 120)                   # the video lengths (s) the texts quote
DTYPE = torch.bfloat16                      # what the memory figures assume (the GPU default)
RETRIEVAL = RetrievalConfig()               # the published retrieval settings (K, R)


def families() -> tuple:
    """The registered backbone families, in registry order (read at each call: a family registered later counts)."""
    return tuple(registry.FAMILIES)


def key(family) -> str:
    return NAMES.get(family.name, (family.name.lower().replace(" ", "-"), None))[0]


def label(family) -> str:
    return NAMES.get(family.name, (None, family.name))[1]


def family_by_key(name: str):
    found = [f for f in families() if key(f) == name]
    if not found:
        raise KeyError(f"no backbone family '{name}' among {[key(f) for f in families()]}")
    return found[0]


def strategy_defaults(name: str, family) -> dict:
    """What strategy ``name`` runs with on ``family`` unless told otherwise: window, sink, top_k, switch, options
    and what was scaled to the family's blocks — exactly what a run resolves (core/sampling/request.py)."""
    cfg = _config(family, name)
    return {"window": cfg.window, "sink": cfg.sink, "top_k": cfg.retrieval.top_k if cfg.retrieval else 0,
            "switch": cfg.switch.mode, "options": dict(cfg.strategy_options), "scaled": cfg.scaled}


def strategy_runs(name: str, family) -> bool:
    """Whether ``name`` with its defaults fits ``family``'s blocks (its own check passes)."""
    try:
        _config(family, name)
    except ValueError:
        return False
    return True


def _config(family, strategy: str):
    return resolve(SamplingRequest(strategy=strategy, retrieval=RETRIEVAL if strategy == "rag" else None),
                   family.defaults)


# ------------------------------------------------------------------------------------------ time
def time_stride(defaults: FamilyDefaults) -> int:
    """Video frames per latent frame after the first (the VAE's time compression)."""
    return defaults.latent.time_stride


def block_video_frames(defaults: FamilyDefaults) -> int:
    """Video frames one block of latent frames adds."""
    return time_stride(defaults) * defaults.frames_per_block


def block_seconds(defaults: FamilyDefaults) -> float:
    return block_video_frames(defaults) / defaults.latent.fps


def latent_frames_for(defaults: FamilyDefaults, seconds: float) -> int:
    """Latent frames of a video of at least ``seconds``, in whole blocks (what the CLI's --seconds makes)."""
    return defaults.latent.latent_frames_for_seconds(seconds, defaults.frames_per_block)


def length_for(defaults: FamilyDefaults, seconds: float) -> int:
    """The sampler's ``length`` (video frames) for a video of at least ``seconds`` that needs no rounding."""
    return defaults.latent.latent_to_video_frames(latent_frames_for(defaults, seconds))


def size_px(defaults: FamilyDefaults) -> tuple[int, int]:
    """The published video size, (width, height) in pixels."""
    h, w = defaults.latent_hw
    return w * defaults.latent.stride, h * defaults.latent.stride


def size_step(family) -> int:
    """Width and height are multiples of this: the VAE's stride × the transformer's patch."""
    patch = family.released.patch_size[2] if family.released is not None else 2
    return family.defaults.latent.stride * patch


# ------------------------------------------------------------------------------------------ memory
@dataclass(frozen=True)
class Released:
    """The sizes of a family's released checkpoint that memory depends on."""
    parameters: int
    layers: int
    heads: int
    head_dim: int
    tokens: int                 # per latent frame at the published size


_MODELS: dict = {}


def _model(family):
    """The released checkpoint's module on the meta device (no memory), built once per family."""
    sizes = family.released
    if (family.name, sizes) not in _MODELS:
        with torch.device("meta"):
            _MODELS[family.name, sizes] = family.build(family.make_config(sizes, sizes.dim // family.head_dim))
    return _MODELS[family.name, sizes]


def released(family) -> Released | None:
    """The released checkpoint's sizes, None when the family states none (e.g. a test family)."""
    if family.released is None or not family.head_dim:
        return None
    model = _model(family)
    c = model.cfg
    h, w = family.defaults.latent_hw
    return Released(sum(p.numel() for p in model.parameters()), c.num_layers, c.num_heads, c.dim // c.num_heads,
                    (h // c.patch_size[1]) * (w // c.patch_size[2]))


def device_memory(family, strategy: str = "native", memory: MemorySettings = EXACT,
                  weights: str = "native") -> DeviceBytes | None:
    """Device bytes of one run at the published size in bf16 (budget.py, the estimate benchmarks/vram.py checks
    against the real-size dry run) under ``memory`` and ``weights`` ("native" | "fp8"); None when the family states
    no released sizes or the strategy's defaults do not fit its blocks."""
    if released(family) is None or not strategy_runs(strategy, family):
        return None
    model = _model(family)
    if weights == "fp8":
        if (family.name, "fp8") not in _MODELS:
            _MODELS[family.name, "fp8"] = to_fp8(copy.deepcopy(model))
        model = _MODELS[family.name, "fp8"]
    return device_bytes(model, _config(family, strategy), family.defaults.latent_hw, 1, DTYPE, memory)


SHARED = MemorySettings("shared", "exact", 0)        # lossless: one context buffer for all layers
COMPACT = MemorySettings("shared", "fp8", 0)         # + the KV cache in fp8


def pool_frame(family, storage: str = "kv") -> int | None:
    """Bytes one latent frame costs the history pool at the published size in bf16 (the pool's own accounting)."""
    r = released(family)
    if r is None:
        return None
    k = [torch.empty(1, r.tokens, r.heads, r.head_dim, dtype=DTYPE, device="meta") for _ in range(r.layers)]
    latent = torch.empty(1, family.defaults.latent.channels, *family.defaults.latent_hw, dtype=DTYPE, device="meta")
    return frame_bytes(storage, k, k, latent)


def pooled_frames(defaults: FamilyDefaults, seconds: float) -> int:
    """Frames in the pool at the end of a video of ``seconds``: every latent frame but the window's."""
    return max(0, latent_frames_for(defaults, seconds) - defaults.window)


def pool_table(family) -> dict[str, list[int]] | None:
    """{storage: [bytes per frame, bytes after each of DURATIONS]}."""
    if released(family) is None:
        return None
    d = family.defaults
    return {s: [pool_frame(family, s)] + [pool_frame(family, s) * pooled_frames(d, t) for t in DURATIONS]
            for s in POOL_STORAGES}


def decoded_frame(defaults: FamilyDefaults) -> int:
    """Bytes of one decoded video frame in RAM (ComfyUI IMAGE: float32 RGB)."""
    w, h = size_px(defaults)
    return w * h * 3 * 4


__all__ = ["NAMES", "DURATIONS", "RETRIEVAL", "STRATEGIES", "families", "default_family", "key", "label",
           "family_by_key", "strategy_defaults", "strategy_runs", "time_stride", "block_video_frames", "block_seconds",
           "latent_frames_for", "length_for", "size_px", "size_step", "Released", "released", "device_memory",
           "pool_frame", "pooled_frames", "pool_table", "decoded_frame", "SHARED", "COMPACT"]
