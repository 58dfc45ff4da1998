"""The Wan2.1 text-to-video family: Self-Forcing, Causal-Forcing, LongLive and plain Wan2.1 T2V transformers.

All four share one architecture (``model.WanTransformer``); only the file layout and the file name tell
them apart. Neighbouring Wan models that share the names are refused by name: image-to-video (image
embedder, 36 input channels), VACE (control blocks) and Wan2.2 TI2V (48-channel Wan2.2 latents).
Wan2.1 attention heads are 128 wide (1.3B: dim 1536 → 12 heads; 14B: dim 5120 → 40 heads).
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from ..model import WanConfig, WanTransformer
from .family import BackboneFamily, Refusal, State
from .reader import CheckpointError

LATENT_CHANNELS = 16        # Wan2.1 VAE latents
HEAD_DIM = 128
_BLOCK = re.compile(r"blocks\.(\d+)\.")
PICK = ("pick a Self-Forcing / Causal-Forcing / LongLive checkpoint or a Wan2.1 T2V transformer file "
        "(ComfyUI: models/diffusion_models/)")


@dataclass(frozen=True)
class WanSizes:
    """Everything about a Wan2.1 T2V transformer that its weight shapes determine (all but the head count)."""
    dim: int
    ffn_dim: int
    num_layers: int
    text_dim: int
    freq_dim: int
    in_dim: int = LATENT_CHANNELS
    out_dim: int = LATENT_CHANNELS
    patch_size: tuple[int, int, int] = (1, 2, 2)


def describe(s) -> str:
    """A WanSizes or WanConfig in one line, for errors."""
    return f"dim {s.dim}, {s.num_layers} layers, ffn {s.ffn_dim}, text_dim {s.text_dim}"


def expected_shapes(s) -> dict[str, tuple[int, ...]]:
    """Every tensor name of a Wan2.1 T2V transformer of sizes ``s`` (a WanSizes or WanConfig) and its shape.
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


def _in_channels(state: State) -> int | None:
    pe = state.get("patch_embedding.weight")
    return pe.shape[1] if pe is not None and pe.dim() == 5 else None


REFUSALS = (
    Refusal(lambda sd: any(k.startswith("img_emb.") or ".k_img." in k for k in sd) or _in_channels(sd) == 36,
            lambda sd: f"is a Wan image-to-video model (img_emb.* keys / {_in_channels(sd)} input channels)"),
    Refusal(lambda sd: any(k.startswith("vace_") for k in sd),
            lambda sd: "is a Wan VACE (control) model (vace_* keys)"),
    Refusal(lambda sd: _in_channels(sd) == 48,
            lambda sd: "has 48 input channels: it is a Wan2.2 TI2V model working in the Wan2.2 VAE's latent space "
                       f"(this pack uses {LATENT_CHANNELS}-channel Wan2.1 latents)"),
)


def recognise(state: State) -> bool:
    return any(re.match(r"blocks\.\d+\.self_attn\.q\.weight$", k) for k in state)


def read_sizes(state: State, path: Path) -> WanSizes:
    """Sizes from weight shapes (bare Wan names; meta tensors are fine). Raises CheckpointError for
    incomplete files and for latents other than Wan2.1's 16 channels."""
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
                              "Conv3d weight [dim, 16, 1, 2, 2] of a Wan2.1 T2V transformer. Fix: " + PICK)
    ffn = next((state[f"blocks.{i}.ffn.0.weight"] for i in layers if f"blocks.{i}.ffn.0.weight" in state), None)
    if ffn is None:
        raise CheckpointError(f"backbone '{path}' has no blocks.N.ffn.0.weight; the file is incomplete — download "
                              "it again")
    patch = tuple(pe.shape[2:])
    sizes = WanSizes(dim=pe.shape[0], ffn_dim=ffn.shape[0], num_layers=len(layers),
                     text_dim=state["text_embedding.0.weight"].shape[1],
                     freq_dim=state["time_embedding.0.weight"].shape[1], in_dim=pe.shape[1],
                     out_dim=state["head.head.weight"].shape[0] // math.prod(patch), patch_size=patch)
    if sizes.in_dim != LATENT_CHANNELS or sizes.out_dim != LATENT_CHANNELS:
        raise CheckpointError(f"backbone '{path}' has {sizes.in_dim} input / {sizes.out_dim} output channels; "
                              f"expected {LATENT_CHANNELS} (Wan2.1 latents); " + PICK)
    return sizes


# config.json / metadata names (Wan's own and diffusers') → WanSizes field
_STATED = {"num_layers": "num_layers", "dim": "dim", "ffn_dim": "ffn_dim", "text_dim": "text_dim",
           "freq_dim": "freq_dim", "out_dim": "out_dim", "out_channels": "out_dim"}


def check_file_config(config: dict, sizes: WanSizes, path: Path, source: str) -> None:
    """A config stored with the weights must describe a Wan2.1 T2V model of the weights' sizes."""
    task = config.get("model_type")
    in_dim = config.get("in_channels", config.get("in_dim", LATENT_CHANNELS))
    if task not in (None, "t2v") or config.get("image_dim") or config.get("added_kv_proj_dim") \
            or in_dim != LATENT_CHANNELS:
        raise CheckpointError(f"backbone '{path}': its {source} describes a '{task or 'non-T2V'}' model "
                              f"(in_channels {in_dim}); only Wan2.1 text-to-video transformers are supported; " + PICK)
    for key, field in _STATED.items():
        stated, actual = config.get(key), getattr(sizes, field)
        if isinstance(stated, int) and stated != actual:
            raise CheckpointError(f"backbone '{path}': its {source} says {key} {stated} but the weights have "
                                  f"{actual}; shards are missing or the config belongs to another model — "
                                  "download the complete model again")


WAN21_T2V = BackboneFamily(
    name="Wan2.1 text-to-video",
    expected="a Wan2.1 text-to-video transformer (keys patch_embedding.weight, blocks.0.self_attn.q.weight, "
             "head.head.weight)",
    pick=PICK,
    recognise=recognise,
    refusals=REFUSALS,
    read_sizes=read_sizes,
    shapes=expected_shapes,
    describe=describe,
    check_file_config=check_file_config,
    head_dim=HEAD_DIM,
    make_config=lambda sizes, heads: WanConfig(**asdict(sizes), num_heads=heads),
    build=WanTransformer,
    presets=("Self-Forcing", "Causal-Forcing", "LongLive", "Wan2.1"),
    layout_presets={"longlive": "LongLive", "self_forcing": "Self-Forcing"},
    name_hints=(("self_forcing", "Self-Forcing"), ("selfforcing", "Self-Forcing"),
                ("causal_forcing", "Causal-Forcing"), ("causalforcing", "Causal-Forcing"), ("longlive", "LongLive")),
    layout_defaults={"causal_forcing": "Causal-Forcing"},
    default_preset="Wan2.1",
)
