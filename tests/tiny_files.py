"""Tiny stand-ins of the real model files, written to disk in their real layouts and names.

The umT5 text encoder and the Wan2.1 VAE come from core's builder (``core/app/tiny_files.py``, shared with
``python -m core demo``); here: Wan's ``.pth`` layouts of them, the diffusers ``vae/`` folder of the Wan2.1 VAE
(its names mapped from Wan's module tree in ``wan_name``, so the loader's conversion is checked, not reused)
and a Wan2.2-style VAE.
"""
import re

import torch

from core.app.tiny_files import (BUCKETS, DIM, HEADS, LAYERS, VAE_BASE_DIM as BASE_DIM, VAE_Z_DIM, VOCAB,  # noqa: F401
                                 WORDS, umt5_state_dict, wan_vae_state_dict, write_tokenizer, write_umt5_diffusers)

_RESNET = {"norm1.gamma": "residual.0.gamma", "conv1.weight": "residual.2.weight", "conv1.bias": "residual.2.bias",
           "norm2.gamma": "residual.3.gamma", "conv2.weight": "residual.6.weight", "conv2.bias": "residual.6.bias",
           "conv_shortcut.weight": "shortcut.weight", "conv_shortcut.bias": "shortcut.bias"}


def wan_name(key: str) -> str:
    """diffusers AutoencoderKLWan name → the name in Wan's Wan2.1_VAE.pth (WanVAE_ module tree)."""
    if m := re.fullmatch(r"(post_quant_conv|quant_conv)\.(\w+)", key):
        return {"quant_conv": "conv1", "post_quant_conv": "conv2"}[m.group(1)] + "." + m.group(2)
    side, rest = key.split(".", 1)
    if m := re.fullmatch(r"mid_block\.resnets\.(\d)\.(.+)", rest):
        rest = f"middle.{2 * int(m.group(1))}.{_RESNET[m.group(2)]}"
    elif m := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", rest):
        rest = f"middle.1.{m.group(1)}"
    elif m := re.fullmatch(r"down_blocks\.(\d+)\.(.+)", rest):
        rest = f"downsamples.{m.group(1)}.{_RESNET.get(m.group(2), m.group(2))}"
    elif m := re.fullmatch(r"up_blocks\.(\d)\.resnets\.(\d)\.(.+)", rest):   # 3 resnets + 1 resample per level
        rest = f"upsamples.{4 * int(m.group(1)) + int(m.group(2))}.{_RESNET[m.group(3)]}"
    elif m := re.fullmatch(r"up_blocks\.(\d)\.upsamplers\.0\.(.+)", rest):
        rest = f"upsamples.{4 * int(m.group(1)) + 3}.{m.group(2)}"
    else:
        rest = {"conv_in.weight": "conv1.weight", "conv_in.bias": "conv1.bias", "norm_out.gamma": "head.0.gamma",
                "conv_out.weight": "head.2.weight", "conv_out.bias": "head.2.bias"}[rest]
    return f"{side}.{rest}"


def tiny_vae_model(wan_sd: dict[str, torch.Tensor]):
    """diffusers' AutoencoderKLWan holding ``wan_sd`` (Wan's names); every tensor must match its tree (strict)."""
    from diffusers import AutoencoderKLWan
    model = AutoencoderKLWan(base_dim=BASE_DIM, z_dim=VAE_Z_DIM).eval()
    names = {wan_name(k): k for k in model.state_dict()}
    model.load_state_dict({names[k]: v for k, v in wan_sd.items()}, strict=True)
    return model


def write_tiny_vae(root):
    """The tiny Wan2.1 VAE (core's ``wan_vae_state_dict``) saved as root/diffusers/vae/ and root/wan/Wan2.1_VAE.pth."""
    wan_sd = wan_vae_state_dict()
    model = tiny_vae_model(wan_sd)
    model.save_pretrained(str(root / "diffusers" / "vae"))
    (root / "wan").mkdir(exist_ok=True)
    torch.save(wan_sd, root / "wan" / "Wan2.1_VAE.pth")
    return model, wan_sd


def write_tiny_vae22(root):
    """A random tiny Wan2.2-style AutoencoderKLWan (residual, 2×2 patches) saved as root/vae22/ (diffusers)."""
    from diffusers import AutoencoderKLWan
    torch.manual_seed(0)
    model = AutoencoderKLWan(base_dim=16, decoder_base_dim=24, z_dim=48, is_residual=True, in_channels=12,
                             out_channels=12, patch_size=2, scale_factor_spatial=16,
                             temperal_downsample=[False, True, True]).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.2)
    model.save_pretrained(str(root / "vae22" / "vae"))
    return model
