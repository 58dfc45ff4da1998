"""Backbone checkpoints people have on disk → a ``WanTransformer`` (SPEC §8).

Formats: Self-Forcing (``generator_ema`` / ``generator``, ``model.`` prefix, FSDP wrapper names),
Causal-Forcing (``generator`` / ``model``), LongLive (a base like Causal-Forcing + a peft LoRA merged
at load), bare Wan names in safetensors (optionally ``model.diffusion_model.``-prefixed; fp16 /
bf16 / fp8 weights) and the diffusers layout (single file or folder). Key renames live here, not in
the model. Pickles are read with ``weights_only=True`` only. Everything is checked before any
weight is materialised, and every failure names the file, what was found and what was expected.
"""
from __future__ import annotations

import json
import math
import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .model import WanConfig, WanTransformer

PRESETS = {"self_forcing": "Self-Forcing", "causal_forcing": "Causal-Forcing", "longlive": "LongLive",
           "wan_safetensors": "Wan2.1", "diffusers": "Wan2.1 (diffusers)"}
EXPECTED = "a Wan2.1 text-to-video transformer (keys patch_embedding.*, blocks.N.self_attn.q.*, head.head.*)"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message says which file, what is wrong and the fix."""


@dataclass(frozen=True)
class CheckpointInfo:
    path: str
    format: str             # self_forcing | causal_forcing | longlive | wan_safetensors | diffusers
    preset: str             # human-readable backbone family shown in the UI
    source_key: str | None  # top-level key the weights came from (e.g. generator_ema)
    dtype: str              # dtype of the stored weights
    lora_path: str | None = None
    lora_strength: float = 0.0
    lora_layers: int = 0


@dataclass
class Backbone:
    model: WanTransformer
    config: WanConfig
    info: CheckpointInfo


# ---------------------------------------------------------------------------------------- reading
def _read(path: Path, what: str) -> dict:
    """Raw object of a .safetensors file, a diffusers folder or a torch pickle (weights only)."""
    if not path.exists():
        raise CheckpointError(f"{what} '{path}' does not exist; check the path (ComfyUI: put backbones in "
                              "models/diffusion_models/, LoRAs in models/loras/)")
    if path.is_dir():
        return _read_diffusers_folder(path, what)
    if path.stat().st_size == 0:
        raise CheckpointError(f"{what} '{path}' is empty (0 bytes); the download was interrupted — download it again")
    if path.suffix in (".safetensors", ".sft"):
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{what} '{path}' is not a readable safetensors file ({exc}); it is probably "
                                  "truncated — download it again") from exc
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=False)
    except pickle.UnpicklingError as exc:
        if "weights_only" in str(exc) or "Weights only" in str(exc):
            raise CheckpointError(
                f"{what} '{path}' contains Python objects that would need code execution to load; refusing "
                "(only weights_only pickles are read). Re-save its state dict with torch.save or convert it to "
                ".safetensors") from exc
        raise CheckpointError(f"{what} '{path}' is not a torch checkpoint ({exc}); expected a .pt/.pth state "
                              "dict or a .safetensors file") from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"{what} '{path}' could not be read ({exc}); the file is truncated or not a torch "
                              "checkpoint — download it again") from exc


def _read_diffusers_folder(path: Path, what: str) -> dict:
    folder = path / "transformer" if (path / "transformer").is_dir() else path
    index = sorted(folder.glob("*.safetensors.index.json"))
    if index:
        names = sorted(set(json.loads(index[0].read_text())["weight_map"].values()))
        files = [folder / n for n in names]
    else:
        files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{what} '{path}' is a folder without .safetensors weights; expected a diffusers "
                              "transformer folder (config.json + diffusion_pytorch_model*.safetensors)")
    state: dict = {}
    for f in files:
        if not f.exists():
            raise CheckpointError(f"{what} '{path}': shard '{f.name}' listed in the index is missing")
        state.update(_read(f, what))
    return state


def _is_state_dict(obj) -> bool:
    return isinstance(obj, dict) and len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


def _unwrap(obj, path: Path, use_ema: bool) -> tuple[dict, str, str | None]:
    """(state dict, format guess, top-level key) for the known training-checkpoint layouts."""
    if _is_state_dict(obj):
        return obj, ("wan_safetensors" if path.suffix in (".safetensors", ".sft") or path.is_dir() else
                     "causal_forcing"), None
    if not isinstance(obj, dict):
        raise CheckpointError(f"backbone '{path}' holds a {type(obj).__name__}, not a state dict; expected {EXPECTED}")
    order = ["generator_ema", "generator"] if use_ema else ["generator", "generator_ema"]
    for key in order + ["model", "state_dict", "module"]:
        if key in obj and _is_state_dict(obj[key]):
            fmt = "self_forcing" if "generator_ema" in obj else "causal_forcing"
            return obj[key], fmt, key
    raise CheckpointError(f"backbone '{path}' has top-level keys {sorted(map(str, obj))[:8]} but none holds weights; "
                          f"expected {EXPECTED}, possibly under 'generator_ema', 'generator' or 'model'")


_DIFFUSERS_RENAMES = [  # diffusers WanTransformer3DModel → original Wan names (inverse of diffusers' converter)
    ("condition_embedder.time_embedder.linear_1", "time_embedding.0"),
    ("condition_embedder.time_embedder.linear_2", "time_embedding.2"),
    ("condition_embedder.text_embedder.linear_1", "text_embedding.0"),
    ("condition_embedder.text_embedder.linear_2", "text_embedding.2"),
    ("condition_embedder.time_proj", "time_projection.1"),
    ("proj_out", "head.head"),
    (".attn1.", ".self_attn."), (".attn2.", ".cross_attn."),
    (".to_q.", ".q."), (".to_k.", ".k."), (".to_v.", ".v."), (".to_out.0.", ".o."),
    (".ffn.net.0.proj.", ".ffn.0."), (".ffn.net.2.", ".ffn.2."),
    (".norm2.", ".norm3."),   # diffusers' affine cross-attention norm is Wan's norm3
]


def _from_diffusers(state: dict) -> dict:
    out = {}
    for key, value in state.items():
        new = key
        if new == "scale_shift_table":
            new = "head.modulation"
        elif new.endswith(".scale_shift_table"):
            new = new[: -len("scale_shift_table")] + "modulation"
        for a, b in _DIFFUSERS_RENAMES:
            new = new.replace(a, b) if a.startswith(".") else (b + new[len(a):] if new.startswith(a) else new)
        out[new] = value
    return out


def normalise_names(state: dict) -> tuple[dict, bool]:
    """Bare Wan names: wrapper names removed, known prefixes stripped, diffusers names mapped.
    Returns (state, was_diffusers)."""
    out = {}
    for key, value in state.items():
        k = key.replace("_fsdp_wrapped_module.", "").replace("_checkpoint_wrapped_module.", "")
        k = k.replace("_orig_mod.", "")
        for prefix in ("model.diffusion_model.", "diffusion_model.", "model.", "module."):
            if k.startswith(prefix):
                k = k[len(prefix):]
                break
        out[k] = value
    diffusers = any(k.startswith("condition_embedder.") or ".attn1." in k for k in out)
    return (_from_diffusers(out) if diffusers else out), diffusers


def _preset_from_name(path: Path, fmt: str) -> str:
    name = path.name.lower().replace("-", "_")
    for hint, preset in (("self_forcing", "Self-Forcing"), ("causal_forcing", "Causal-Forcing"),
                         ("longlive", "LongLive")):
        if hint in name:
            return preset
    return PRESETS[fmt]


# ------------------------------------------------------------------------------------ architecture
def infer_config(state: dict, num_heads: int | None = None, path: str | Path = "<state dict>") -> WanConfig:
    """Architecture from weight shapes; num_heads = dim / 128 unless given."""
    if any(k.startswith("img_emb.") for k in state) or (
            "patch_embedding.weight" in state and state["patch_embedding.weight"].shape[1] == 36):
        raise CheckpointError(f"backbone '{path}' is a Wan image-to-video model (img_emb / 36 input channels); "
                              "only Wan2.1 text-to-video causal backbones (Self-Forcing, Causal-Forcing, LongLive) "
                              "are supported")
    needed = ["patch_embedding.weight", "text_embedding.0.weight", "time_embedding.0.weight",
              "blocks.0.ffn.0.weight", "head.head.weight"]
    missing = [k for k in needed if k not in state]
    if missing:
        sample = sorted(state)[:4]
        raise CheckpointError(f"backbone '{path}' is not {EXPECTED}: it lacks {missing[:3]} (found keys like "
                              f"{sample}); pick a Self-Forcing / Causal-Forcing / LongLive checkpoint or a Wan2.1 "
                              "T2V transformer file")
    pe = state["patch_embedding.weight"]
    if pe.dim() != 5:
        raise CheckpointError(f"backbone '{path}': patch_embedding.weight has shape {list(pe.shape)}; expected a "
                              "Conv3d weight [dim, 16, 1, 2, 2] of a Wan2.1 T2V transformer")
    dim, in_dim, patch = pe.shape[0], pe.shape[1], tuple(pe.shape[2:])
    layers = sorted({int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))})
    if layers != list(range(len(layers))):
        gaps = sorted(set(range(max(layers) + 1)) - set(layers))
        raise CheckpointError(f"backbone '{path}' has transformer blocks {layers[:3]}…{layers[-1:]} with blocks "
                              f"{gaps[:5]} missing; the file is incomplete — download it again")
    if num_heads is None:
        if dim % 128:
            raise CheckpointError(f"backbone '{path}' has dim {dim}, not a multiple of 128; give the number of "
                                  "attention heads explicitly (--num-heads / num_heads)")
        num_heads = dim // 128
    out_dim = state["head.head.weight"].shape[0] // math.prod(patch)
    try:
        return WanConfig(dim=dim, ffn_dim=state["blocks.0.ffn.0.weight"].shape[0], num_layers=len(layers),
                         num_heads=num_heads, freq_dim=state["time_embedding.0.weight"].shape[1],
                         text_dim=state["text_embedding.0.weight"].shape[1], in_dim=in_dim, out_dim=out_dim,
                         patch_size=patch)
    except ValueError as exc:
        raise CheckpointError(f"backbone '{path}': {exc}") from exc


def expected_shapes(cfg: WanConfig) -> dict[str, tuple[int, ...]]:
    """Key → shape of a Wan T2V transformer with this config (built on the meta device: no memory)."""
    with torch.device("meta"):
        model = WanTransformer(cfg)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def validate_backbone(state: dict, cfg: WanConfig, path: str | Path = "<state dict>") -> None:
    """The key set and shapes must be exactly those of ``cfg``'s transformer."""
    expected = expected_shapes(cfg)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(state[k].shape) != expected[k])
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")
        if wrong:
            parts.append("wrong shapes: " + ", ".join(f"{k} {list(state[k].shape)} vs {list(expected[k])}"
                                                      for k in wrong[:3]))
        raise CheckpointError(f"backbone '{path}' does not match a Wan2.1 T2V transformer with dim {cfg.dim}, "
                              f"{cfg.num_layers} layers: {'; '.join(parts)}. The file is incomplete or another "
                              "model; use an unmodified Self-Forcing / Causal-Forcing / LongLive / Wan2.1 T2V file")


# --------------------------------------------------------------------------------------------- LoRA
def read_lora(path: str | Path) -> tuple[dict, float | None]:
    """(peft-style tensors with wrapper prefixes removed, alpha if the file states one)."""
    return normalise_lora(_read(Path(path), "LoRA"), path)


def normalise_lora(obj, path: str | Path = "<LoRA>") -> tuple[dict, float | None]:
    """A loaded LoRA object (flat, or under generator_lora / lora / state_dict) → (tensors, alpha)."""
    alpha = None
    if isinstance(obj, dict) and not _is_state_dict(obj):
        for key in ("lora_alpha", "alpha"):
            if isinstance(obj.get(key), (int, float)):
                alpha = float(obj[key])
        for key in ("generator_lora", "lora", "state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict):
        raise CheckpointError(f"LoRA '{path}' holds a {type(obj).__name__}; expected a peft LoRA state dict")
    out = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            continue
        k = key.replace("_fsdp_wrapped_module.", "").replace(".default.", ".")
        for prefix in ("base_model.model.", "model.diffusion_model.", "model."):
            if k.startswith(prefix):
                k = k[len(prefix):]
                break
        if k.startswith("model."):
            k = k[len("model."):]
        out[k] = value
    return out, alpha


def match_lora(lora: dict, state: dict, path: str | Path, alpha: float | None = None
               ) -> dict[str, tuple[torch.Tensor, torch.Tensor, float]]:
    """Target weight key → (A [r, in], B [out, r], alpha/r). Works on meta tensors (no arithmetic)."""
    pairs = {}
    for key, a in lora.items():
        if ".lora_A." not in key and not key.endswith(".lora_A.weight"):
            continue
        module = key.split(".lora_A.")[0]
        b_key = key.replace(".lora_A.", ".lora_B.")
        if b_key not in lora:
            raise CheckpointError(f"LoRA '{path}': '{key}' has no matching lora_B tensor; the file is incomplete")
        a_alpha = lora.get(f"{module}.alpha")
        rank = a.shape[0]
        scale = (float(a_alpha) if a_alpha is not None else (alpha if alpha is not None else rank)) / rank
        pairs[f"{module}.weight"] = (a, lora[b_key], scale)
    if not pairs:
        raise CheckpointError(f"LoRA '{path}' has no lora_A/lora_B tensors (found e.g. {sorted(lora)[:3]}); "
                              "expected a peft LoRA such as LongLive's longlive_lora.pt")
    unmatched = sorted(k for k in pairs if k not in state)
    if len(unmatched) == len(pairs):
        raise CheckpointError(f"LoRA '{path}' matches no layer of the backbone (its targets look like "
                              f"{unmatched[:2]}, the backbone has e.g. 'blocks.0.self_attn.q.weight'); it belongs "
                              "to another model — use the LoRA released with this backbone")
    if unmatched:
        raise CheckpointError(f"LoRA '{path}': {len(unmatched)} of its {len(pairs)} targets are not in the "
                              f"backbone (e.g. {unmatched[:3]}); it belongs to a different architecture")
    for target, (a, b, _) in pairs.items():
        w = state[target].shape
        if a.dim() != 2 or b.dim() != 2 or (b.shape[0], a.shape[1]) != tuple(w) or a.shape[0] != b.shape[1]:
            raise CheckpointError(f"LoRA '{path}': {target} has A {list(a.shape)} and B {list(b.shape)}, which do "
                                  f"not fit the weight {list(w)}; the LoRA was trained for another model size")
    return pairs


def merge_lora(state: dict, pairs: dict, strength: float) -> None:
    """W += strength · (alpha/r) · B·A, in float32, stored back in W's dtype."""
    for target, (a, b, scale) in pairs.items():
        w = state[target]
        state[target] = (w.float() + (strength * scale) * (b.float() @ a.float())).to(w.dtype)


# ---------------------------------------------------------------------------------------- loading
def read_backbone(path: str | Path, *, lora: str | Path | None = None, lora_strength: float = 1.0,
                  use_ema: bool = True, num_heads: int | None = None) -> tuple[dict, WanConfig, CheckpointInfo]:
    """Weights with bare Wan names (stored dtype; LoRA merged), their config and where they came from.
    Raises CheckpointError before anything is built when the file is not a usable backbone."""
    path = Path(path)
    raw = _read(path, "backbone")
    state, fmt, source = _unwrap(raw, path, use_ema)
    state, diffusers = normalise_names(state)
    if diffusers:
        fmt = "diffusers"
    cfg = infer_config(state, num_heads, path)
    validate_backbone(state, cfg, path)
    n_lora = 0
    if lora is not None:
        lora_state, alpha = read_lora(lora)
        pairs = match_lora(lora_state, state, lora, alpha)
        merge_lora(state, pairs, lora_strength)
        n_lora = len(pairs)
        fmt = "longlive" if fmt in ("causal_forcing", "self_forcing") else fmt
    dtypes = sorted({str(v.dtype).replace("torch.", "") for v in state.values()})
    preset = "LongLive" if lora is not None else _preset_from_name(path, fmt) if fmt in (
        "wan_safetensors", "diffusers") else PRESETS[fmt]
    info = CheckpointInfo(str(path), fmt, preset, source, "/".join(dtypes),
                          str(lora) if lora is not None else None, lora_strength if lora is not None else 0.0, n_lora)
    return state, cfg, info


def load_backbone(path: str | Path, *, lora: str | Path | None = None, lora_strength: float = 1.0,
                  num_heads: int | None = None, dtype: torch.dtype = torch.float32,
                  device: str | torch.device = "cpu", use_ema: bool = True) -> Backbone:
    """A ready model (eval, no grad) in ``dtype`` on ``device``; fp8/fp16/bf16 weights are converted here."""
    state, cfg, info = read_backbone(path, lora=lora, lora_strength=lora_strength, use_ema=use_ema,
                                     num_heads=num_heads)
    with torch.device("meta"):
        model = WanTransformer(cfg)
    model.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=True, assign=True)
    return Backbone(model.to(device).eval().requires_grad_(False), cfg, info)
