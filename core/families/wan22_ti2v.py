"""The Wan2.2 text-image-to-video 5B family: LongLive 2.0 and plain Wan2.2-TI2V-5B transformers.

Same modules and names as Wan2.1 (``wan_arch``), working in the Wan2.2 VAE's 48-channel latent space
(16× spatial compression, 24 fps). The 5B: dim 3072, ffn 14336, 30 layers, 24 heads of 128, text_dim
4096, freq_dim 256, patch 1×2×2. Files people have:

- LongLive 2.0 ``model_bf16.pt`` (merged) and ``generator_checkpoint.pt`` (base for
  ``lora_checkpoint.pt``, a peft LoRA of rank 128 under ``generator_lora``): a pickle
  ``{"generator": {"model.<Wan name>": …}, …}``;
- Wan-AI's ``Wan2.2-TI2V-5B`` (``diffusion_pytorch_model*.safetensors``, bare names) and its diffusers
  layout;
- ComfyUI's ``wan2.2_ti2v_5B_fp16.safetensors`` (bare names, optionally ``model.diffusion_model.``) and
  fp8 files (``float8_e4m3fn`` weights, plain, "scaled fp8" or ComfyUI's ``comfy_quant`` layout).

Published run settings (LongLive 2.0 ``configs/inference.yaml``): blocks of 8 latent frames, window 32,
sink 8, a fresh UniPC solver of 4 steps per block at shift 5, shot RoPE offset 8 and the multi-shot
sink; image-to-video holds the image's latent frame clean inside the first block; 704×1280 at 24 fps.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from ..sampling.defaults import FamilyDefaults
from ..sampling.config import ShotConfig
from ..latents.format import WAN22
from ..model.transformer import WanConfig, WanTransformer
from . import wan_arch
from .family import BackboneFamily, State
from .wan_arch import WanSizes, expected_shapes

HEAD_DIM = 128
PICK = ("pick a LongLive 2.0 checkpoint (model_bf16.pt, or generator_checkpoint.pt with lora_checkpoint.pt) or a "
        "Wan2.2-TI2V-5B transformer file (ComfyUI: models/diffusion_models/wan2.2_ti2v_5B_fp16.safetensors)")

DEFAULTS = FamilyDefaults(WAN22, frames_per_block=8, window=32, sink=8, sampler="unipc", steps=(), sampling_steps=4,
                          shift=5.0, shots=ShotConfig(rope_offset=8.0, sink=True), switch="none",
                          start_block="clamp", latent_hw=(44, 80),
                          negative_prompt=wan_arch.NEGATIVE_PROMPT)


def recognise(state: State) -> bool:
    return wan_arch.recognise(state) and wan_arch.in_channels(state) == WAN22.channels


def read_sizes(state: State, path: Path) -> WanSizes:
    """Sizes from weight shapes (bare Wan names; meta tensors are fine); 48 channels in and out."""
    return wan_arch.read_sizes(state, path, WAN22.channels, "Wan2.2 latents", PICK)


WAN22_TI2V = BackboneFamily(
    name="Wan2.2 TI2V-5B",
    expected="a Wan2.2-TI2V-5B transformer (keys patch_embedding.weight [3072, 48, 1, 2, 2], "
             "blocks.0.self_attn.q.weight, head.head.weight)",
    pick=PICK,
    recognise=recognise,
    refusals=(),
    read_sizes=read_sizes,
    shapes=expected_shapes,
    describe=wan_arch.describe,
    check_file_config=wan_arch.config_checker(WAN22.channels, ("t2v", "ti2v"), "Wan2.2 TI2V", PICK),
    head_dim=HEAD_DIM,
    make_config=lambda sizes, heads: WanConfig(**asdict(sizes), num_heads=heads),
    build=WanTransformer,
    defaults=DEFAULTS,
    lora_file="LongLive 2.0's lora_checkpoint.pt",
    presets=("LongLive 2.0", "Wan2.2-TI2V-5B"),
    layout_presets={"longlive": "LongLive 2.0"},
    name_hints=(("longlive", "LongLive 2.0"), ("model_bf16", "LongLive 2.0"), ("generator_checkpoint", "LongLive 2.0")),
    layout_defaults={"causal_forcing": "LongLive 2.0"},
    default_preset="Wan2.2-TI2V-5B",
    released=WanSizes(dim=3072, ffn_dim=14336, num_layers=30, text_dim=4096, freq_dim=256, in_dim=WAN22.channels,
                      out_dim=WAN22.channels, patch_size=(1, 2, 2)),                            # the 5B
)
