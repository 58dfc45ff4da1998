"""Wan tensor names: every naming a Wan2.1 transformer is saved under → the bare names ``WanTransformer`` uses.

Key renames live here, not in the model: training wrappers (FSDP, activation checkpointing,
``torch.compile``) are removed anywhere in a name, shared prefixes (``model.``, ComfyUI's
``model.diffusion_model.``, peft's ``base_model.model.``, ...) are stripped, diffusers
``WanTransformer3DModel`` names are mapped back to Wan's, and ComfyUI's fp8 layouts ("scaled fp8",
``comfy_quant``) are taken apart into fp8 weights and their scales (``split_fp8_scales``), which the loader
applies (de-quantising) or keeps (fp8 weights on the device).
"""
from __future__ import annotations

import functools
import re
from pathlib import Path

from ..files.safe_reader import CheckpointError

_WRAPPERS = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")
_PREFIXES = ("model.diffusion_model.", "diffusion_model.", "base_model.model.", "model.", "module.", "transformer.")
_COMFY_UNET = "model.diffusion_model."

# diffusers WanTransformer3DModel → original Wan names. diffusers swaps norm2/norm3: its affine
# cross-attention norm is `norm2` (Wan `norm3`); the two non-affine norms have no weights.
_DIFFUSERS_TO_WAN = [(re.compile(a), b) for a, b in (
    (r"^condition_embedder\.time_embedder\.linear_1\.", "time_embedding.0."),
    (r"^condition_embedder\.time_embedder\.linear_2\.", "time_embedding.2."),
    (r"^condition_embedder\.text_embedder\.linear_1\.", "text_embedding.0."),
    (r"^condition_embedder\.text_embedder\.linear_2\.", "text_embedding.2."),
    (r"^condition_embedder\.time_proj\.", "time_projection.1."),
    (r"^condition_embedder\.image_embedder\.norm1\.", "img_emb.proj.0."),
    (r"^condition_embedder\.image_embedder\.ff\.net\.0\.proj\.", "img_emb.proj.1."),
    (r"^condition_embedder\.image_embedder\.ff\.net\.2\.", "img_emb.proj.3."),
    (r"^condition_embedder\.image_embedder\.norm2\.", "img_emb.proj.4."),
    (r"^condition_embedder\.image_embedder\.pos_embed$", "img_emb.emb_pos"),
    (r"^scale_shift_table$", "head.modulation"),
    (r"^proj_out\.", "head.head."),
    (r"^(blocks\.\d+)\.scale_shift_table$", r"\1.modulation"),
    (r"^(blocks\.\d+)\.attn1\.", r"\1.self_attn."),
    (r"^(blocks\.\d+)\.attn2\.", r"\1.cross_attn."),
    (r"^(blocks\.\d+)\.norm2\.", r"\1.norm3."),
    (r"^(blocks\.\d+)\.ffn\.net\.0\.proj\.", r"\1.ffn.0."),
    (r"^(blocks\.\d+)\.ffn\.net\.2\.", r"\1.ffn.2."),
    (r"\.to_q\.", ".q."), (r"\.to_k\.", ".k."), (r"\.to_v\.", ".v."), (r"\.to_out\.0\.", ".o."),
    (r"\.add_k_proj\.", ".k_img."), (r"\.add_v_proj\.", ".v_img."), (r"\.norm_added_k\.", ".norm_k_img."),
)]


def diffusers_to_wan(key: str) -> str:
    """One diffusers ``WanTransformer3DModel`` key → its original Wan name (unchanged if not diffusers)."""
    for pattern, repl in _DIFFUSERS_TO_WAN:
        key = pattern.sub(repl, key)
    return key


def _is_diffusers(keys) -> bool:
    return any(k.startswith("condition_embedder.") or ".attn1." in k or k == "scale_shift_table" for k in keys)


def strip_common_prefixes(keys: list[str]) -> dict[str, str]:
    """old → new: wrapper names removed anywhere; a prefix removed only when every key has it."""
    new = {k: functools.reduce(lambda s, w: s.replace(w, ""), _WRAPPERS, k) for k in keys}
    changed = True
    while changed and new:
        changed = False
        for prefix in _PREFIXES:
            if all(v.startswith(prefix) for v in new.values()):
                new = {k: v[len(prefix):] for k, v in new.items()}
                changed = True
    return new


def rename_map(keys, path: str | Path = "<state dict>") -> tuple[dict[str, str], bool]:
    """(old → bare Wan name, was_diffusers) for the tensors to keep. Of a bundled ComfyUI checkpoint
    (diffusion model + VAE / text encoder) only the ``model.diffusion_model.*`` part is kept."""
    keys = list(keys)
    unet = [k for k in keys if k.startswith(_COMFY_UNET)]
    if unet and len(unet) < len(keys):
        keys = unet
    renamed = strip_common_prefixes(keys)
    diffusers = _is_diffusers(renamed.values())
    if diffusers:
        renamed = {k: diffusers_to_wan(v) for k, v in renamed.items()}
    seen: dict[str, str] = {}
    for old, new in renamed.items():
        if new in seen:
            raise CheckpointError(f"backbone '{path}': two tensors map to '{new}' (one is '{old}'); the file mixes "
                                  "two models or two naming schemes — re-export a single state dict")
        seen[new] = old
    return renamed, diffusers


def normalise_names(state: dict, path: str | Path = "<state dict>") -> tuple[dict, bool]:
    """Bare Wan names (see ``rename_map``). Returns (state, was_diffusers); values are the same tensor objects."""
    renamed, diffusers = rename_map(state, path)
    return {new: state[old] for old, new in renamed.items()}, diffusers


def split_fp8_scales(state: dict, path: str | Path) -> tuple[dict, dict]:
    """ComfyUI's fp8 layouts taken apart, nothing converted: (weights, scales). "fp8_scaled" files give each
    scaled weight a ``scale_weight`` (and a ``scaled_fp8`` marker), ``comfy_quant`` files a ``weight_scale``
    (plus ``input_scale`` and a per-layer ``comfy_quant`` record of the format). weights: the state without
    those entries (fp8 weights stay fp8); scales: weight key → float32 [1] or [rows] (weight ≈ weight · scale).
    NVFP4 (``weight_scale_2``) is refused."""
    if any(k.endswith(".weight_scale_2") for k in state):
        raise CheckpointError(f"backbone '{path}' holds NVFP4-quantised weights (.weight_scale_2 keys), which are not "
                              "supported; use the fp16, bf16 or fp8 file of the same model")
    suffix = ".scale_weight" if any(k.endswith(".scale_weight") for k in state) else \
        ".weight_scale" if any(k.endswith(".weight_scale") for k in state) else None
    if suffix is None:
        return {k: v for k, v in state.items() if not k.endswith(".comfy_quant")}, {}
    drop = (".scale_weight", ".scale_input", ".weight_scale", ".input_scale", ".comfy_quant")
    out = {k: v for k, v in state.items() if not (k.endswith(drop) or k.split(".")[-1] == "scaled_fp8")}
    scales = {}
    for key in [k for k in state if k.endswith(suffix)]:
        weight_key = key[: -len(suffix)] + ".weight"
        if weight_key not in out:
            raise CheckpointError(f"backbone '{path}': '{key}' scales a missing weight '{weight_key}'; the file is "
                                  "incomplete — download it again")
        rows, scale = out[weight_key].shape[0], state[key].float().reshape(-1)
        if scale.numel() not in (1, rows):
            raise CheckpointError(f"backbone '{path}': '{key}' has shape {list(state[key].shape)}; expected a scalar "
                                  f"or one scale per output row ({rows})")
        scales[weight_key] = scale
    return out, scales


def scaled(weight, scale):
    """weight · scale in float32 (scale: [1] or one value per output row of ``weight``)."""
    return weight.float() * scale.reshape(-1, *[1] * (weight.dim() - 1))


def apply_scales(state: dict, scales: dict) -> dict:
    """The state with every scaled weight multiplied by its scale (float32); the others unchanged."""
    return {k: scaled(v, scales[k]) if k in scales else v for k, v in state.items()}


def dequantize_scaled_fp8(state: dict, path: str | Path) -> dict:
    """ComfyUI's fp8 files → float32 weights: "fp8_scaled" (weight · ``scale_weight``) and the newer
    ``comfy_quant`` layout (float8 e4m3fn / e5m2 weight · ``weight_scale``; ``input_scale`` and the
    per-layer ``comfy_quant`` records dropped). NVFP4 (``weight_scale_2``) is refused. Plain fp8 / fp16 /
    bf16 states are returned unchanged (cast at load)."""
    return apply_scales(*split_fp8_scales(state, path))
