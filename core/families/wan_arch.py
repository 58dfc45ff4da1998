"""The Wan transformer's sizes and tensor names, shared by every Wan family (Wan2.1 T2V, Wan2.2 TI2V).

Wan2.1 T2V and Wan2.2 TI2V-5B have the same modules and names (``model.WanTransformer``); only the
sizes differ: dim, ffn, layers, text/frequency dims and the latent channels in and out (16: Wan2.1
VAE, 48: Wan2.2 VAE). Everything here reads shapes only, so meta tensors are fine.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .family import State
from ..files.safe_reader import CheckpointError

_BLOCK = re.compile(r"blocks\.(\d+)\.")
# Wan's published negative prompt (Wan2.1/2.2 ``sample_neg_prompt``; LongLive 2.0 puts it in every config it reads,
# utils/config.py DEFAULT_NEGATIVE_PROMPT): the default negative prompt of a guided run
NEGATIVE_PROMPT = ("色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，JPEG压缩残留，"
                   "丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，"
                   "静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走")


@dataclass(frozen=True)
class WanSizes:
    """Everything about a Wan transformer that its weight shapes determine (all but the head count)."""
    dim: int
    ffn_dim: int
    num_layers: int
    text_dim: int
    freq_dim: int
    in_dim: int                 # latent channels in and out: the family's latent format's
    out_dim: int
    patch_size: tuple[int, int, int]


def describe(s) -> str:
    """A WanSizes or WanConfig in one line, for errors."""
    return f"dim {s.dim}, {s.num_layers} layers, ffn {s.ffn_dim}, text_dim {s.text_dim}, {s.in_dim} latent channels"


def expected_shapes(s) -> dict[str, tuple[int, ...]]:
    """Every tensor name of a Wan transformer of sizes ``s`` (a WanSizes or WanConfig) and its shape.
    The head count is not needed: no weight shape depends on it."""
    d, f, p = s.dim, s.ffn_dim, tuple(s.patch_size)
    out = math.prod(p) * s.out_dim
    shapes = {"patch_embedding.weight": (d, s.in_dim, *p), "patch_embedding.bias": (d,),
              "text_embedding.0.weight": (d, s.text_dim), "text_embedding.2.weight": (d, d),
              "time_embedding.0.weight": (d, s.freq_dim), "time_embedding.2.weight": (d, d),
              "time_projection.1.weight": (6 * d, d), "time_projection.1.bias": (6 * d,),
              "head.head.weight": (out, d), "head.head.bias": (out,), "head.modulation": (1, 2, d)}
    shapes.update({f"{m}.bias": (d,) for m in ("text_embedding.0", "text_embedding.2", "time_embedding.0",
                                               "time_embedding.2")})
    for i in range(s.num_layers):
        b = f"blocks.{i}."
        for attn in ("self_attn", "cross_attn"):
            for lin in "qkvo":
                shapes.update({f"{b}{attn}.{lin}.weight": (d, d), f"{b}{attn}.{lin}.bias": (d,)})
            shapes.update({f"{b}{attn}.norm_q.weight": (d,), f"{b}{attn}.norm_k.weight": (d,)})
        shapes.update({f"{b}norm3.weight": (d,), f"{b}norm3.bias": (d,), f"{b}modulation": (1, 6, d),
                       f"{b}ffn.0.weight": (f, d), f"{b}ffn.0.bias": (f,), f"{b}ffn.2.weight": (d, f),
                       f"{b}ffn.2.bias": (d,)})
    return shapes


def recognise(state: State) -> bool:
    """Wan transformer names (any family)."""
    return any(re.match(r"blocks\.\d+\.self_attn\.q\.weight$", k) for k in state)


def in_channels(state: State) -> int | None:
    pe = state.get("patch_embedding.weight")
    return pe.shape[1] if pe is not None and pe.dim() == 5 else None


def width(state: State) -> int | None:
    pe = state.get("patch_embedding.weight")
    return pe.shape[0] if pe is not None else None


def layer_count(state: State) -> int:
    return len({int(m.group(1)) for k in state if (m := _BLOCK.match(k))})


def read_sizes(state: State, path: Path, channels: int, latents: str, pick: str) -> WanSizes:
    """Sizes from weight shapes (bare Wan names). Raises CheckpointError for incomplete files and for
    latents other than ``channels`` (``latents`` names them, e.g. "Wan2.1 latents")."""
    needed = ["patch_embedding.weight", "text_embedding.0.weight", "time_embedding.0.weight", "head.head.weight"]
    missing = [k for k in needed if k not in state]
    if missing:
        raise CheckpointError(f"backbone '{path}' is an incomplete Wan transformer: it lacks {missing}; the file is "
                              "truncated or was saved from a modified model — download it again")
    layers = sorted({int(m.group(1)) for k in state if (m := _BLOCK.match(k))})
    if layers != list(range(len(layers))):
        gaps = sorted(set(range(layers[-1] + 1)) - set(layers))
        raise CheckpointError(f"backbone '{path}' has transformer blocks 0..{layers[-1]} but blocks {gaps[:5]} are "
                              "missing entirely; the file is incomplete — download it again")
    pe = state["patch_embedding.weight"]
    if pe.dim() != 5:
        raise CheckpointError(f"backbone '{path}': patch_embedding.weight has shape {list(pe.shape)}; expected a "
                              f"Conv3d weight [dim, {channels}, 1, 2, 2] of a Wan transformer. Fix: " + pick)
    ffn = next((state[f"blocks.{i}.ffn.0.weight"] for i in layers if f"blocks.{i}.ffn.0.weight" in state), None)
    if ffn is None:
        raise CheckpointError(f"backbone '{path}' has no blocks.N.ffn.0.weight; the file is incomplete — download "
                              "it again")
    patch = tuple(pe.shape[2:])
    sizes = WanSizes(dim=pe.shape[0], ffn_dim=ffn.shape[0], num_layers=len(layers),
                     text_dim=state["text_embedding.0.weight"].shape[1],
                     freq_dim=state["time_embedding.0.weight"].shape[1], in_dim=pe.shape[1],
                     out_dim=state["head.head.weight"].shape[0] // math.prod(patch), patch_size=patch)
    if sizes.in_dim != channels or sizes.out_dim != channels:
        raise CheckpointError(f"backbone '{path}' has {sizes.in_dim} input / {sizes.out_dim} output channels; "
                              f"expected {channels} ({latents}); " + pick)
    return sizes


# config.json / metadata names (Wan's own and diffusers') → WanSizes field
_STATED = {"num_layers": "num_layers", "dim": "dim", "ffn_dim": "ffn_dim", "text_dim": "text_dim",
           "freq_dim": "freq_dim", "out_dim": "out_dim", "out_channels": "out_dim"}


def config_checker(channels: int, tasks: tuple, what: str, pick: str) -> Callable[[dict, WanSizes, Path, str], None]:
    """A family's ``check_file_config``: a config stored with the weights must describe a model of one of
    ``tasks`` (Wan's ``model_type``; None = not stated) with ``channels`` latent channels and the weights' sizes."""
    def check(config: dict, sizes: WanSizes, path: Path, source: str) -> None:
        task = config.get("model_type")
        in_dim = config.get("in_channels", config.get("in_dim", channels))
        if task not in (None, *tasks) or config.get("image_dim") or config.get("added_kv_proj_dim") \
                or in_dim != channels:
            raise CheckpointError(f"backbone '{path}': its {source} describes a '{task or 'other'}' model "
                                  f"(in_channels {in_dim}); only {what} transformers are supported here; " + pick)
        for key, field in _STATED.items():
            stated, actual = config.get(key), getattr(sizes, field)
            if isinstance(stated, int) and stated != actual:
                raise CheckpointError(f"backbone '{path}': its {source} says {key} {stated} but the weights have "
                                      f"{actual}; shards are missing or the config belongs to another model — "
                                      "download the complete model again")
    return check
