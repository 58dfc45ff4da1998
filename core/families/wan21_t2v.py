"""The Wan2.1 text-to-video family: Self-Forcing, Causal-Forcing, LongLive and plain Wan2.1 T2V transformers, and the
frame-wise Causal Forcing / Causal Forcing++ variants (``framewise.py``: blocks of one frame, their own steps) and
the Rolling Forcing ones (``rolling_forcing.py``: Rolling Forcing's and Causal-Forcing's long-video checkpoints run
with the rolling sampler).

All share one architecture (``model.WanTransformer``, sizes and names in ``wan_arch``); only the
file layout and the file name tell them apart. Neighbouring Wan models that share the names are
refused by name: image-to-video (image embedder, 36 input channels), VACE (control blocks) and the
Wan2.2 A14B experts (recognised by their sizes plus their file or folder name: their architecture is
Wan2.1 14B's). Wan2.1 attention heads are 128 wide (1.3B: dim 1536 → 12 heads; 14B: dim 5120 → 40 heads).
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from ..sampling.config import ShotConfig
from ..sampling.defaults import FamilyDefaults
from ..latents.format import WAN21
from ..model.transformer import WanConfig, WanTransformer
from . import framewise, rolling_forcing, wan_arch
from .family import BackboneFamily, Refusal, State
from .wan_arch import WanSizes, expected_shapes  # noqa: F401  (re-exported: the family's sizes and key template)

HEAD_DIM = 128
PICK = ("pick a Self-Forcing / Causal-Forcing / LongLive checkpoint or a Wan2.1 T2V transformer file "
        "(ComfyUI: models/diffusion_models/)")
OTHER_FAMILIES = ("use an autoregressive backbone instead: Self-Forcing / Causal-Forcing / LongLive (Wan2.1 1.3B) "
                  "or LongLive 2.0 / Wan2.2-TI2V-5B (ComfyUI: models/diffusion_models/wan2.2_ti2v_5B_fp16.safetensors)")
# Wan2.2's 14B models are two experts (high noise, low noise) with Wan2.1 14B's architecture: the sizes alone
# cannot tell them from Wan2.1 14B, their names can (ComfyUI's wan2.2_t2v_high_noise_14B_fp16.safetensors,
# a diffusers folder with transformer/ and transformer_2/).
_A14B_NAMES = ("wan2.2", "wan2_2", "wan22", "a14b", "high_noise", "low_noise")


def _is_a14b(state: State, path: Path) -> bool:
    if wan_arch.width(state) != 5120 or wan_arch.layer_count(state) != 40:
        return False
    two_experts = path.is_dir() and (path / "transformer_2").is_dir()
    return two_experts or any(n in path.name.lower().replace("-", "_") for n in _A14B_NAMES)


def _task(state: State) -> str:
    if wan_arch.width(state) == 5120 and wan_arch.layer_count(state) == 40:
        return " (Wan2.1 I2V-14B or Wan2.2 I2V-A14B size)"
    return ""


REFUSALS = (
    Refusal(lambda sd, path: _is_a14b(sd, path) and wan_arch.in_channels(sd) in (16, 36),
            lambda sd: f"is a Wan2.2 A14B {'image' if wan_arch.in_channels(sd) == 36 else 'text'}-to-video expert "
                       "(dim 5120, 40 layers: one of the two 14B models Wan2.2 switches between during sampling, "
                       "not an autoregressive backbone)",
            fix=OTHER_FAMILIES),
    Refusal(lambda sd, path: any(k.startswith("img_emb.") or ".k_img." in k for k in sd)
            or wan_arch.in_channels(sd) == 36,
            lambda sd: f"is a Wan image-to-video model (img_emb.* keys / {wan_arch.in_channels(sd)} input channels"
                       f"{_task(sd)})",
            fix=PICK + "; for image-to-video use LongLive 2.0 (Wan2.2-TI2V-5B) with a start image"),
    Refusal(lambda sd, path: any(k.startswith("vace_") for k in sd),
            lambda sd: "is a Wan VACE (control) model (vace_* keys)"),
)


def recognise(state: State) -> bool:
    return wan_arch.recognise(state) and wan_arch.in_channels(state) in (None, WAN21.channels)


def read_sizes(state: State, path: Path) -> WanSizes:
    """Sizes from weight shapes (bare Wan names; meta tensors are fine). Raises CheckpointError for
    incomplete files and for latents other than Wan2.1's 16 channels."""
    return wan_arch.read_sizes(state, path, WAN21.channels, "Wan2.1 latents", PICK)


DEFAULTS = FamilyDefaults(WAN21, frames_per_block=3, window=12, sink=1, sampler="renoise", steps=(1000, 750, 500, 250),
                          sampling_steps=4, shift=5.0, shots=ShotConfig(), switch="recache", start_block="short",
                          latent_hw=(60, 104), negative_prompt=wan_arch.NEGATIVE_PROMPT)

WAN21_T2V = BackboneFamily(
    name="Wan2.1 text-to-video",
    expected="a Wan2.1 text-to-video transformer (keys patch_embedding.weight, blocks.0.self_attn.q.weight, "
             "head.head.weight)",
    pick=PICK,
    recognise=recognise,
    refusals=REFUSALS,
    read_sizes=read_sizes,
    shapes=expected_shapes,
    describe=wan_arch.describe,
    check_file_config=wan_arch.config_checker(WAN21.channels, ("t2v",), "Wan2.1 text-to-video", PICK),
    head_dim=HEAD_DIM,
    make_config=lambda sizes, heads: WanConfig(**asdict(sizes), num_heads=heads),
    build=WanTransformer,
    defaults=DEFAULTS,
    lora_file="LongLive's longlive_lora.pt",
    presets=("Self-Forcing", "Causal-Forcing", "LongLive", "Wan2.1", *framewise.PRESETS, *rolling_forcing.PRESETS),
    layout_presets={"longlive": "LongLive", "self_forcing": "Self-Forcing"},
    name_hints=(*framewise.NAME_HINTS, *rolling_forcing.NAME_HINTS,
                ("self_forcing", "Self-Forcing"), ("selfforcing", "Self-Forcing"),
                ("causal_forcing", "Causal-Forcing"), ("causalforcing", "Causal-Forcing"), ("longlive", "LongLive")),
    layout_defaults={"causal_forcing": "Causal-Forcing"},
    default_preset="Wan2.1",
    released=WanSizes(dim=1536, ffn_dim=8960, num_layers=30, text_dim=4096, freq_dim=256, in_dim=WAN21.channels,
                      out_dim=WAN21.channels, patch_size=(1, 2, 2)),   # the 1.3B
    # frame-wise Causal Forcing (++): blocks of one latent frame; Rolling Forcing: the rolling sampler
    variants={**framewise.variants(DEFAULTS), **rolling_forcing.variants(DEFAULTS)},
)
