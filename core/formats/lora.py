"""LoRA files → factors matched to backbone weights → merged into them (W += strength · α/r · B·A).

Accepts peft state dicts (LongLive's ``longlive_lora.pt``, possibly under ``generator_lora``, with or
without the peft adapter name), ComfyUI / kohya ``lora_down`` / ``lora_up`` names with per-module
``.alpha``, and a peft ``adapter_config.json`` beside ``adapter_model.*``. The merge happens once at load,
so no peft is needed at run time.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from ..families.registry import describe_foreign
from ..files.safe_reader import CheckpointError, is_state_dict, read_json, read_weights
from .wan_names import diffusers_to_wan, strip_common_prefixes

_FACTOR = re.compile(r"^(.*)\.(lora_A|lora_B|lora_down|lora_up)(?:\.[^.]+)?\.weight$")
_CONTAINERS = ("generator_lora", "lora", "state_dict", "model", "generator")
_NOT_A_LORA_HINT = "expected a peft LoRA state dict such as LongLive's longlive_lora.pt"


def _number(value) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value)
    return None


def _unwrap(obj, path) -> tuple[dict, float | None]:
    """(the LoRA tensor dict, alpha stated beside it) of a flat or containered LoRA object."""
    alpha = None
    if isinstance(obj, dict) and not is_state_dict(obj):
        for key in ("lora_alpha", "alpha"):
            alpha = _number(obj.get(key)) if alpha is None else alpha
        for key in ("peft_config", "lora_config", "adapter_config", "config"):
            if isinstance(obj.get(key), dict) and alpha is None:
                alpha = _number(obj[key].get("lora_alpha", obj[key].get("alpha")))
        inner = next((obj[k] for k in _CONTAINERS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            raise CheckpointError(f"LoRA '{path}' has top-level keys {sorted(map(str, obj))[:6]} and no LoRA "
                                  f"tensors; {_NOT_A_LORA_HINT}")
        obj = inner
    if not isinstance(obj, dict):
        raise CheckpointError(f"LoRA '{path}' holds a {type(obj).__name__}; {_NOT_A_LORA_HINT}")
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}, alpha


def _factors(tensors: dict, path) -> dict[str, dict]:
    """module → {"A": [r, in], "B": [out, r], "alpha": float} with every module complete."""
    factors: dict[str, dict] = {}
    other = []
    for key, value in tensors.items():
        if m := _FACTOR.match(key):
            side = "A" if m.group(2) in ("lora_A", "lora_down") else "B"
            factors.setdefault(m.group(1), {})[side] = value
        elif key.endswith(".alpha"):
            factors.setdefault(key[: -len(".alpha")], {})["alpha"] = _number(value)
        else:
            other.append(key)
    if not any("A" in f or "B" in f for f in factors.values()):
        what = describe_foreign(tensors)
        looks = f"; it looks like {what}" if what and "LoRA" not in what else ""
        raise CheckpointError(f"LoRA '{path}' has no lora_A/lora_B (lora_down/lora_up) tensors (found e.g. "
                              f"{sorted(tensors)[:3]}){looks}; {_NOT_A_LORA_HINT}")
    if other:
        raise CheckpointError(f"LoRA '{path}' also holds {len(other)} tensors that are not LoRA factors (e.g. "
                              f"{sorted(other)[:3]}); only lora_A/lora_B pairs on Linear weights are supported "
                              "(no DoRA, bias or full-weight diffs)")
    for module, f in factors.items():
        if "A" not in f or "B" not in f:
            raise CheckpointError(f"LoRA '{path}': '{module}' has lora_{'A' if 'A' in f else 'B'} but no "
                                  f"lora_{'B' if 'A' in f else 'A'}; the file is incomplete — download it again")
    return factors


def normalise_lora(obj, path: str | Path = "<LoRA>") -> tuple[dict, float | None]:
    """A loaded LoRA object (flat, or under generator_lora / lora / ...) → (factors, alpha stated by the file).

    factors: ``module → {"A": [r, in], "B": [out, r], "alpha": float | None}`` with wrapper names and shared
    prefixes (peft ``base_model.model.``, ``model.``, ...) removed and the peft adapter name dropped."""
    tensors, alpha = _unwrap(obj, path)
    factors = _factors(tensors, path)
    renamed = strip_common_prefixes(list(factors))
    return {renamed[m]: f for m, f in factors.items()}, alpha


def read_lora(path: str | Path) -> tuple[dict, float | None]:
    """(factors, alpha) of a LoRA file; a peft ``adapter_config.json`` beside ``adapter_model.*`` gives alpha."""
    path = Path(path)
    lora = read_weights(path, "LoRA", hint="ComfyUI: LoRAs go in models/loras/")
    factors, alpha = normalise_lora(lora.content, path)
    config = path.parent / "adapter_config.json"
    if alpha is None and path.stem == "adapter_model" and config.is_file():
        alpha = _number(read_json(config, "LoRA").get("lora_alpha"))
    return factors, alpha


def _target(module: str, state: dict, kohya: dict[str, str]) -> str | None:
    for key in (f"{module}.weight", diffusers_to_wan(f"{module}.weight")):
        if key in state:
            return key
    if module.startswith("lora_unet_"):       # kohya: dots of the module path written as underscores
        return kohya.get(module[len("lora_unet_"):])
    return None


def match_lora(lora: dict, state: dict, path: str | Path, alpha: float | None = None, backbone: str | None = None,
               released: str = "the LoRA released with this backbone") -> dict[str, tuple[torch.Tensor, torch.Tensor, float]]:
    """Backbone weight key → (A [r, in], B [out, r], alpha / r). alpha: per-module, else the file's, else r.
    Only shapes are used, so this works on meta tensors. ``backbone`` (e.g. "a Wan2.2 TI2V-5B backbone, dim
    3072") and ``released`` (the family's own LoRA) make the errors name both sides."""
    kohya = {k[: -len(".weight")].replace(".", "_"): k for k in state if k.endswith(".weight")}
    pairs, unmatched = {}, []
    for module, f in lora.items():
        target = _target(module, state, kohya)
        if target is None:
            unmatched.append(module)
            continue
        a, b, w = f["A"], f["B"], state[target]
        if a.dim() != 2 or b.dim() != 2 or w.dim() != 2 or a.shape[0] != b.shape[1] \
                or (b.shape[0], a.shape[1]) != tuple(w.shape):
            what = f" ({backbone})" if backbone else ""
            size = f"a model of width {a.shape[1]}" if a.dim() == 2 else "a model of another size"
            raise CheckpointError(f"LoRA '{path}': {module} has A {list(a.shape)} and B {list(b.shape)}, which do "
                                  f"not fit the backbone weight {target} {list(w.shape)}{what}; the LoRA was trained "
                                  f"for {size} — use {released}")
        rank = a.shape[0]
        a_alpha = f.get("alpha") if f.get("alpha") is not None else alpha
        pairs[target] = (a, b, (a_alpha if a_alpha is not None else rank) / rank)
    if not pairs:
        raise CheckpointError(f"LoRA '{path}' matches no layer of the backbone: its {len(lora)} targets look like "
                              f"{sorted(unmatched)[:2]}, the backbone's like 'blocks.0.self_attn.q'. It was trained "
                              f"for another model; use {released}")
    if unmatched:
        raise CheckpointError(f"LoRA '{path}': {len(unmatched)} of its {len(lora)} targets are not layers of the "
                              f"backbone (e.g. {sorted(unmatched)[:3]}); it was trained for another architecture — "
                              f"use {released}")
    return pairs


def merge_lora(state: dict, pairs: dict, strength: float) -> None:
    """W += strength · (alpha/r) · B·A, computed in float32 and stored back in W's dtype (replaces the tensor)."""
    for target, (a, b, scale) in pairs.items():
        w = state[target]
        state[target] = (w.float() + (strength * scale) * (b.float() @ a.float())).to(w.dtype)
