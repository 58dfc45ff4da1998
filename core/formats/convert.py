"""Released checkpoints → safetensors that ComfyUI's own loaders read (``python -m core convert``).

Every file Load Backbone reads (Self-Forcing / Causal-Forcing ``.pt``, LongLive's base + ``longlive_lora.pt``,
LongLive 2.0's ``model_bf16.pt`` or ``generator_checkpoint.pt`` + LoRA, Wan safetensors / folders / diffusers) is
read by the one loader (core/formats/loader.py ``read_backbone``: names, family, key set and LoRA merge checked
there) and written as:

- a backbone for Load Diffusion Model (UNETLoader): the bare Wan names ComfyUI detects a Wan2.1 T2V / Wan2.2
  TI2V model by (``head.modulation``, ``blocks.N.…``; ComfyUI counts heads as dim / 128), either
  ``dtype="bf16"``, or ``dtype="fp8"``: ComfyUI's "scaled fp8" — every 2-d (Linear) weight as float8 e4m3fn
  with a float32 per-tensor ``<layer>.scale_weight`` (weight ≈ fp8 · scale, scale = amax / 448) and
  ``scale_input`` 1, the rest bf16, and the empty ``scaled_fp8`` marker tensor, as ComfyUI saves it (ComfyUI then
  uses fp8 matrix products where the GPU has them). This is the layout both ComfyUI 0.3.48 (its ``scaled_fp8_ops``:
  scalar scales, every Linear fp8) and 0.8.0 (``convert_old_quants`` turns it into per-layer ``comfy_quant``
  records) load; the newer ``comfy_quant`` layout is not read by 0.3.48, and neither reads per-row scales.
- a LoRA for LoraLoaderModelOnly (``lora_out``): ``diffusion_model.<layer>.lora_down.weight`` [r, in],
  ``.lora_up.weight`` [out, r] and ``.alpha`` (ComfyUI scales by alpha / r, as the released file's own alpha),
  the factors in their released dtype; the key names both versions map for a Wan model (``model_lora_keys_unet``).

Each file carries the family's settings in its safetensors metadata under ``SETTINGS_KEY`` (JSON: family,
preset, source, the published run settings Load Backbone shows), plus ``config`` (the architecture with its
head count, which Load Backbone reads). ``read_settings(metadata)`` gives them back. Files are written
atomically (core/files/atomic.py) and never over an existing file unless ``overwrite``; an input is never an
output.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..families.family import BackboneFamily
from ..families.registry import FAMILIES
from ..files.atomic import check_output_file, save_tensors
from ..files.safe_reader import read_weights
from ..model.fp8_linear import FP8, FP8_MAX
from .loader import CheckpointInfo, WHERE, detect_preset, infer_config, read_backbone
from .lora import match_lora, read_lora
from .stored_settings import SETTINGS_KEY, StoredSettings, read_settings

VERSION = 1
DTYPES = ("bf16", "fp8")
SUFFIXES = (".safetensors", ".sft")
COMFY_HEAD = 128                     # ComfyUI's Wan detection: num_heads = dim // 128


@dataclass(frozen=True)
class Converted:
    """What ``convert_checkpoint`` wrote: the files, what they hold and, for fp8, the largest relative error
    ‖W − Ŵ‖ / ‖W‖ of any quantised weight (``fp8_error``) and over all of them together (``fp8_error_total``)."""
    backbone: Path
    lora: Path | None
    family: str
    preset: str                 # the backbone file's (as Load Backbone names the source without the LoRA file)
    lora_preset: str | None     # what the backbone is with the LoRA file (e.g. "LongLive")
    dtype: str
    tensors: int
    bytes: int
    lora_layers: int
    fp8_error: float | None
    fp8_error_total: float | None
    notes: tuple[str, ...]


# ------------------------------------------------------------------------------------- metadata
def read_file_settings(path: str | Path) -> StoredSettings | None:
    """``read_settings`` of a safetensors file's header (no tensor is read); None for other files."""
    weights = read_weights(Path(path), "converted file", shapes_only=True, hint=WHERE)
    return read_settings(weights.metadata)


def family_settings(family: BackboneFamily, preset: str | None = None) -> dict:
    """The published run settings of the family's ``preset`` (its variant's, e.g. a frame-wise Causal Forcing++;
    else the family's: what Load Backbone shows) as plain JSON values."""
    d = family.defaults_for(preset)
    return {"frames_per_block": d.frames_per_block, "window": d.window, "sink": d.sink, "sampler": d.sampler,
            "steps": list(d.steps), "sampling_steps": d.sampling_steps, "shift": d.shift, "switch": d.switch,
            "shot_rope_offset": d.shots.rope_offset, "multi_shot_sink": d.shots.sink, "start_block": d.start_block,
            "latent_hw": list(d.latent_hw), "latent": d.latent.name, "fps": d.latent.fps}


def _metadata(kind: str, family: BackboneFamily, preset: str, source: dict, extra: dict) -> dict[str, str]:
    record = {"version": VERSION, "kind": kind, "family": family.name, "preset": preset, "source": source,
              "settings": family_settings(family, preset)}
    return {SETTINGS_KEY: json.dumps(record), **{k: json.dumps(v) for k, v in extra.items()}}


# ------------------------------------------------------------------------------------- tensors
def quantise_tensor(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """weight (any float dtype, any shape) → (e4m3fn, float32 scale []) with weight ≈ q · scale, scale =
    amax / 448 (ComfyUI's own choice); |w − q·scale| ≤ max(|w| / 16, scale / 1024). An all-zero weight: scale 1."""
    if weight.is_meta:                                     # shapes and bytes only
        return torch.empty(weight.shape, dtype=FP8, device="meta"), torch.empty((), device="meta")
    w = weight.float()
    amax = w.abs().amax() if w.numel() else torch.zeros(())
    scale = amax / FP8_MAX if amax > 0 else torch.ones(())
    return (w / scale).clamp_(-FP8_MAX, FP8_MAX).to(FP8), scale.reshape(()).to(torch.float32)


def check_dtype(dtype: str) -> None:
    if dtype not in DTYPES:
        raise ValueError(f"dtype '{dtype}' is not one of {', '.join(DTYPES)}; choose bf16 (exact for a bf16 "
                         "checkpoint) or fp8 (ComfyUI's scaled fp8, half the bytes)")


def comfy_backbone(state: dict[str, torch.Tensor], dtype: str) -> tuple[dict, list[tuple[float, float]]]:
    """Bare-named weights (de-quantised) → ComfyUI's diffusion-model tensors in ``dtype`` ("bf16" | "fp8",
    see the module docstring), and per quantised weight (‖W − Ŵ‖², ‖W‖²) for the error report."""
    check_dtype(dtype)
    out, errors = {}, []
    for key, w in state.items():
        if dtype == "fp8" and w.dim() == 2 and w.is_floating_point():
            q, scale = quantise_tensor(w)
            layer = key[: -len("weight")]
            out[key], out[layer + "scale_weight"], out[layer + "scale_input"] = q, scale, torch.ones(())
            if not w.is_meta:
                wf = w.float()
                errors.append((float((q.float() * scale - wf).square().sum()), float(wf.square().sum())))
        else:
            out[key] = w.to(torch.bfloat16)
    if dtype == "fp8":
        out["scaled_fp8"] = torch.empty(0, dtype=FP8)     # the marker ComfyUI writes: fp8 scaled, no full-precision mm
    return out, errors


def comfy_lora(pairs: dict) -> dict[str, torch.Tensor]:
    """``match_lora``'s backbone weight key → (A [r, in], B [out, r], alpha / r) → ComfyUI LoRA tensors."""
    out = {}
    for target, (a, b, scale) in pairs.items():
        module = "diffusion_model." + target[: -len(".weight")]
        out[f"{module}.lora_down.weight"] = a.contiguous()
        out[f"{module}.lora_up.weight"] = b.contiguous()
        out[f"{module}.alpha"] = torch.tensor(float(scale) * a.shape[0], dtype=torch.float32)
    return out


# ------------------------------------------------------------------------------------- paths
def slug(preset: str) -> str:
    """'LongLive 2.0' → 'longlive_2.0': a file-name stem Load Backbone's name hints recognise again."""
    return preset.lower().replace(" ", "_").replace("-", "_")


def output_path(given: str | Path, default_name: str, what: str) -> Path:
    """``given`` itself, or ``default_name`` inside it when it is a folder (an existing one, or ending in '/')."""
    text = str(given)
    path = Path(given)
    if path.is_dir() or text.endswith(("/", os.sep)):
        path = path / default_name
    if path.suffix not in SUFFIXES:
        raise ValueError(f"{what} '{path}' does not end in .safetensors; ComfyUI's loaders list .safetensors files "
                         f"— name it e.g. '{path.with_suffix('.safetensors').name}'")
    return path


def check_outputs(outputs: dict[str, Path | None], inputs: dict[str, Path | None], overwrite: bool) -> None:
    """Refuse, before anything is read: an output that is an input, two outputs that are one file, an existing
    output without ``overwrite``, an output folder that cannot be written."""
    outs = [(w, p) for w, p in outputs.items() if p is not None]
    ins = [(w, Path(p)) for w, p in inputs.items() if p is not None]
    for i, (what, path) in enumerate(outs):
        for other, earlier in outs[:i]:
            if path.resolve() == earlier.resolve():
                raise ValueError(f"{what} '{path}' is the same file as {other}; give each output its own name")
        for other, given in ins:
            if path.resolve() == given.resolve() or (path.exists() and given.exists() and os.path.samefile(path, given)):
                raise ValueError(f"{what} '{path}' is the input {other} '{given}'; converting would replace the "
                                 "released file — write the converted file under another name")
        if path.exists() and not overwrite:
            raise ValueError(f"{what} '{path}' already exists; pass --overwrite to replace it, or choose another "
                             "name")
        check_output_file(path, what)


# ------------------------------------------------------------------------------------- the conversion
def convert_checkpoint(source: str | Path, out: str | Path, *, dtype: str = "bf16", lora: str | Path | None = None,
                       lora_strength: float = 1.0, lora_out: str | Path | None = None, use_ema: bool = True,
                       num_heads: int | None = None, overwrite: bool = False) -> Converted:
    """Write ``source`` (any backbone file Load Backbone reads) as a ComfyUI diffusion model at ``out`` (a file,
    or a folder: ``<preset>_<dtype>.safetensors`` inside). ``lora``: merged at ``lora_strength`` into it, or,
    with ``lora_out``, written there as a ComfyUI LoRA (the backbone file is then the base, unmerged).
    Raises CheckpointError / ValueError (one line) before writing anything when an input or output is wrong."""
    check_dtype(dtype)
    if lora_out is not None and lora is None:
        raise ValueError("a LoRA output was given without a LoRA; pass the LoRA to convert (--lora FILE), or drop "
                         "--lora-out")
    separate = lora_out is not None
    if separate and lora_strength != 1.0:
        raise ValueError(f"--lora-strength {lora_strength:g} is for a merged LoRA; a LoRA file written with --lora-out "
                         "keeps the released factors: set the strength in LoraLoaderModelOnly instead")
    preset = detect_preset(source, lora)                  # with the LoRA; names and shapes only: file names
    stem = f"{slug(preset)}{'_base' if separate else ''}_{'fp8_scaled' if dtype == 'fp8' else 'bf16'}"
    out = output_path(out, stem + ".safetensors", "output")
    lora_path = output_path(lora_out, f"{slug(preset)}_lora.safetensors", "LoRA output") if separate else None
    check_outputs({"output": out, "LoRA output": lora_path}, {"backbone": Path(source), "LoRA": lora}, overwrite)
    state, info = read_backbone(source, lora=None if separate else lora, lora_strength=lora_strength,
                                use_ema=use_ema)
    family = FAMILIES.named(info.family)
    pairs = _lora_pairs(lora, state, family, info) if separate else {}
    cfg = infer_config(state, num_heads if num_heads is not None else info.num_heads, path=source)
    tensors, errors = comfy_backbone(state, dtype)
    del state
    save_tensors(out, tensors, _metadata("backbone", family, info.preset, _source(info, separate, lora), {
        "config": asdict(cfg)}))
    if separate:
        save_tensors(lora_path, comfy_lora(pairs), _metadata("lora", family, preset, {
            "file": Path(lora).name, "rank": _rank(pairs), "base": out.name}, {}))
    return Converted(out, lora_path, family.name, info.preset, preset if separate else None, dtype, len(tensors),
                     sum(t.numel() * t.element_size() for t in tensors.values()), len(pairs) or info.lora_layers,
                     *_relative(errors), _notes(cfg))


def _relative(errors: list[tuple[float, float]]) -> tuple[float | None, float | None]:
    """(the worst weight's, all weights') relative error from (‖W − Ŵ‖², ‖W‖²) per weight; None without any."""
    worst = max(((d / n) ** 0.5 for d, n in errors if n > 0), default=None)
    norm = sum(n for _, n in errors)
    return worst, (sum(d for d, _ in errors) / norm) ** 0.5 if norm > 0 else None


def _lora_pairs(lora, state: dict, family: BackboneFamily, info: CheckpointInfo) -> dict:
    """The LoRA's factors matched to the backbone's weights (shapes checked: the same errors as a merge)."""
    factors, alpha = read_lora(lora)
    sizes = family.read_sizes(state, Path(info.path))
    return match_lora(factors, state, lora, alpha, backbone=f"a {family.name} backbone, {family.describe(sizes)}",
                      released=family.lora_file)


def _rank(pairs: dict) -> int:
    return max((a.shape[0] for a, _, _ in pairs.values()), default=0)


def _source(info: CheckpointInfo, separate: bool, lora) -> dict:
    source = {"file": Path(info.path).name, "format": info.format, "key": info.source_key}
    if lora is not None:
        source.update(lora=Path(lora).name, lora_merged=not separate,
                      lora_strength=info.lora_strength if not separate else None)
    return source


def _notes(cfg) -> tuple[str, ...]:
    if cfg.dim % COMFY_HEAD == 0 and cfg.dim // COMFY_HEAD == cfg.num_heads:
        return ()
    return (f"this model has {cfg.num_heads} heads of {cfg.dim // cfg.num_heads}, but ComfyUI's Load Diffusion "
            f"Model reads a Wan model's heads as {COMFY_HEAD} wide ({cfg.dim // COMFY_HEAD} for dim {cfg.dim}): it "
            "would run it wrongly; load this file with Load Backbone (which reads the head count from the file)",)


__all__ = ["COMFY_HEAD", "Converted", "DTYPES", "SETTINGS_KEY", "StoredSettings", "check_dtype", "comfy_backbone",
           "comfy_lora",
           "convert_checkpoint", "family_settings", "quantise_tensor", "read_file_settings", "read_settings"]
