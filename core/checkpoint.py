"""Backbone checkpoints people have on disk → a ``WanTransformer`` (SPEC §8).

Formats: Self-Forcing (``generator_ema`` / ``generator``, ``model.`` prefix, FSDP wrapper names),
Causal-Forcing (``generator`` / ``model``), LongLive (a base like Causal-Forcing + a peft LoRA merged
at load), bare Wan names in safetensors (optionally ``model.diffusion_model.``-prefixed; fp16 / bf16 /
fp8 weights, ComfyUI "scaled fp8" included), a Wan2.1 folder (``config.json`` + safetensors) and the
diffusers layout (single file or folder, possibly sharded). Key renames live here, not in the model.

Pickles are read only with ``torch.load(..., weights_only=True)``. Every file is checked (key set and
shapes against a Wan T2V transformer built on the meta device) before any weight is materialised,
and every failure is a ``CheckpointError`` naming the file, what was found, what was expected and
the fix.
"""
from __future__ import annotations

import functools
import json
import math
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from .model import WanConfig, WanTransformer

FORMATS = ("self_forcing", "causal_forcing", "longlive", "wan_safetensors", "diffusers")
PRESETS = ("Self-Forcing", "Causal-Forcing", "LongLive", "Wan2.1")
EXPECTED = ("a Wan2.1 text-to-video transformer "
            "(keys patch_embedding.weight, blocks.0.self_attn.q.weight, head.head.weight)")
PICK = ("pick a Self-Forcing / Causal-Forcing / LongLive checkpoint or a Wan2.1 T2V transformer file "
        "(ComfyUI: models/diffusion_models/)")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message says which file, what is wrong and the fix."""


@dataclass(frozen=True)
class CheckpointInfo:
    """Where a backbone's weights came from (shown in the ComfyUI node and the CLI)."""
    path: str
    format: str                 # one of FORMATS
    preset: str                 # one of PRESETS (human-readable backbone family)
    source_key: str | None      # top-level pickle key the weights came from (e.g. "generator_ema")
    lora_path: str | None
    lora_strength: float        # 0.0 when no LoRA was merged
    dtype: str                  # stored dtype(s) of the weights, dominant first, e.g. "float8_e4m3fn+float32"
    lora_layers: int = 0        # weights the LoRA changed
    num_heads: int | None = None  # head count stated by the file's config.json, if any


@dataclass
class Backbone:
    model: WanTransformer       # eval mode, requires_grad False, in the requested dtype and device
    config: WanConfig
    info: CheckpointInfo


# ------------------------------------------------------------------------------------ file reading
def _sniff(path: Path) -> str:
    """File kind from its first bytes (extensions lie: .ckpt/.bin/.pth/.pt are all used for everything)."""
    with open(path, "rb") as fh:
        head = fh.read(16)
    if head[:4] == b"GGUF":
        return "gguf"
    if head[:2] == b"PK":
        return "torch_zip"
    if len(head) > 8 and head[8:9] == b"{":
        return "safetensors"
    if head[:1] == b"\x80":
        return "torch_legacy"
    return "safetensors" if path.suffix in (".safetensors", ".sft") else "unknown"


def _load_safetensors(path: Path, what: str) -> dict[str, torch.Tensor]:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            return {k: fh.get_tensor(k) for k in fh.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{what} '{path}' is not a readable safetensors file ({exc}); it is probably truncated "
                              "or corrupt — download it again") from exc


def _load_pickle(path: Path, what: str, kind: str):
    try:
        # mmap: a Self-Forcing file holds two full models; only the one we use is ever read from disk.
        return torch.load(path, map_location="cpu", weights_only=True,
                          mmap=kind == "torch_zip" and zipfile.is_zipfile(path))
    except pickle.UnpicklingError as exc:
        # weights_only refuses both Python objects (globals, reduce calls: code to run) and garbage opcodes.
        detail = str(exc).split("error:")[-1]
        if "weights only" in str(exc).lower() and re.search(r"global|reduce|class", detail, re.I):
            found = re.search(r"GLOBAL ([\w.]+)", str(exc))
            needs = f" (it references {found.group(1)})" if found else ""
            raise CheckpointError(
                f"{what} '{path}' is a pickle that needs Python code execution to load{needs}; refusing: only "
                "weights-only pickles are read. Re-save its state dict (torch.save(model.state_dict(), ...)) or "
                "convert it to .safetensors") from exc
        raise CheckpointError(f"{what} '{path}' is not a torch checkpoint ({exc}); expected a .pt/.pth state dict "
                              "or a .safetensors file") from exc
    except Exception as exc:  # torch raises RuntimeError/EOFError/KeyError/zip errors for damaged files
        raise CheckpointError(f"{what} '{path}' could not be read as a torch checkpoint ({type(exc).__name__}: "
                              f"{str(exc)[:160]}); the file is truncated or corrupt — download it again") from exc


def _load_file(path: Path, what: str):
    """The object stored in one file: a tensor dict (safetensors) or what a weights-only pickle holds."""
    if not path.exists():
        raise CheckpointError(f"{what} '{path}' does not exist; check the path (ComfyUI: backbones go in "
                              "models/diffusion_models/, LoRAs in models/loras/)")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{what} '{path}' is empty (0 bytes); the download was interrupted — "
                              "download it again")
    kind = _sniff(path)
    if kind == "gguf":
        raise CheckpointError(f"{what} '{path}' is a GGUF-quantised file, which is not supported; use the fp16, bf16 "
                              "or fp8 .safetensors of the same model")
    if kind == "safetensors":
        return _load_safetensors(path, what)
    return _load_pickle(path, what, kind)


def _folder_files(path: Path, what: str) -> tuple[list[Path], dict, dict, str | None]:
    """A Wan2.1 or diffusers model folder → (weight files, config.json or {}, index weight_map, index name)."""
    folder = path / "transformer" if (path / "transformer").is_dir() else path
    config = {}
    if (folder / "config.json").is_file():
        try:
            config = json.loads((folder / "config.json").read_text())
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{what} '{path}': config.json is not valid JSON ({exc}); restore it from the "
                                  "model's download page") from exc
    index = sorted(folder.glob("*.safetensors.index.json")) or sorted(folder.glob("*.bin.index.json"))
    weight_map: dict = {}
    if index:
        weight_map = json.loads(index[0].read_text()).get("weight_map", {})
        files = [folder / name for name in sorted(set(weight_map.values()))]
        for f in files:
            if not f.exists():
                raise CheckpointError(f"{what} '{path}': shard '{f.name}' listed in {index[0].name} is missing; "
                                      "download the complete folder")
    else:
        files = (sorted(folder.glob("diffusion_pytorch_model*.safetensors")) or sorted(folder.glob("*.safetensors"))
                 or sorted(folder.glob("diffusion_pytorch_model*.bin")))
    if not files:
        raise CheckpointError(f"{what} '{path}' is a folder without model weights; expected a Wan2.1 or diffusers "
                              "transformer folder (config.json + diffusion_pytorch_model*.safetensors)")
    return files, config, weight_map, index[0].name if index else None


def _load_folder(path: Path, what: str) -> tuple[dict, dict]:
    """A model folder → (state dict of all shards, config.json contents or {})."""
    files, config, weight_map, index = _folder_files(path, what)
    state: dict = {}
    for f in files:
        part = _load_file(f, what)
        if not _is_state_dict(part):
            raise CheckpointError(f"{what} '{path}': '{f.name}' does not hold a flat state dict of tensors")
        state.update(part)
    absent = sorted(set(weight_map) - set(state))
    if absent:
        raise CheckpointError(f"{what} '{path}': {len(absent)} tensors listed in {index} are absent from the "
                              f"shards (e.g. {absent[:3]}); download the complete folder")
    return state, config


def _is_state_dict(obj) -> bool:
    return isinstance(obj, dict) and len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


def _unwrap(obj, path: Path, use_ema: bool) -> tuple[dict, str, str | None]:
    """(tensor dict, format, top-level key) for the known training-checkpoint layouts."""
    if _is_state_dict(obj):
        return obj, "causal_forcing", None
    if not isinstance(obj, dict):
        raise CheckpointError(f"backbone '{path}' holds a {type(obj).__name__}, not a state dict; "
                              f"expected {EXPECTED}")
    has = {k for k, v in obj.items() if _is_state_dict(v)}
    if "generator_ema" in has:
        if use_ema:
            return obj["generator_ema"], "self_forcing", "generator_ema"
        if "generator" in has:
            return obj["generator"], "self_forcing", "generator"
        raise CheckpointError(f"backbone '{path}' holds only EMA weights ('generator_ema') but use_ema is off; turn "
                              "use_ema on (CLI: drop --no-ema) to use them")
    for key in ("generator", "model", "state_dict", "module"):
        if key in has:
            return obj[key], "causal_forcing", key
    if any(k.endswith("_lora") for k in obj) or any(".lora_A." in str(k) or ".lora_down." in str(k) for k in obj):
        raise CheckpointError(f"backbone '{path}' is a LoRA (top-level keys {sorted(map(str, obj))[:4]}), not a "
                              "backbone; pass it as the LoRA and choose the base model (e.g. LongLive's base "
                              "checkpoint) as the backbone")
    raise CheckpointError(f"backbone '{path}' has top-level keys {sorted(map(str, obj))[:8]} but none holds weights; "
                          f"expected {EXPECTED}, possibly under 'generator_ema', 'generator' or 'model'")


# ------------------------------------------------------------------------------------------ naming
_WRAPPERS = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")
_PREFIXES = ("model.diffusion_model.", "diffusion_model.", "base_model.model.", "model.", "module.", "transformer.")

# diffusers WanTransformer3DModel → original Wan names: the inverse of diffusers'
# convert_wan_transformer_to_diffusers. diffusers swaps norm2/norm3: its affine cross-attention norm is
# `norm2` (Wan `norm3`); the two non-affine norms have no weights.
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


def _strip_common_prefixes(keys: list[str]) -> dict[str, str]:
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


def normalise_names(state: dict, path: str | Path = "<state dict>") -> tuple[dict, bool]:
    """Bare Wan names: wrappers removed, shared prefixes stripped, diffusers names mapped; of a bundled
    ComfyUI checkpoint only the ``model.diffusion_model.*`` part is kept.
    Returns (state, was_diffusers). Values are the same tensor objects."""
    keys = list(state)
    unet = [k for k in keys if k.startswith("model.diffusion_model.")]
    if unet and len(unet) < len(keys):
        keys = unet     # a bundled checkpoint (diffusion model + VAE / text encoder): keep the diffusion model
    renamed = _strip_common_prefixes(keys)
    diffusers = _is_diffusers(renamed.values())
    if diffusers:
        renamed = {k: diffusers_to_wan(v) for k, v in renamed.items()}
    out: dict = {}
    for old, new in renamed.items():
        if new in out:
            raise CheckpointError(f"backbone '{path}': two tensors map to '{new}' (one is '{old}'); the file mixes "
                                  "two models or two naming schemes — re-export a single state dict")
        out[new] = state[old]
    return out, diffusers


def _dequantize_scaled_fp8(state: dict, path: Path) -> dict:
    """ComfyUI "fp8_scaled" files: weight = fp8 weight · scale_weight (scalar or per output row), in float32."""
    if not any(k.endswith(".scale_weight") for k in state):
        if any(k.endswith(".comfy_quant") or k.endswith(".weight_scale") for k in state):
            raise CheckpointError(f"backbone '{path}' uses ComfyUI's mixed-precision quantisation (.comfy_quant / "
                                  ".weight_scale keys), which is not supported; use an fp16, bf16 or fp8 file")
        return state
    out = {k: v for k, v in state.items()
           if not (k.endswith((".scale_weight", ".scale_input")) or k.split(".")[-1] == "scaled_fp8")}
    for key in [k for k in state if k.endswith(".scale_weight")]:
        weight_key = key[: -len("scale_weight")] + "weight"
        if weight_key not in out:
            raise CheckpointError(f"backbone '{path}': '{key}' scales a missing weight '{weight_key}'; the file is "
                                  "incomplete — download it again")
        w, scale = out[weight_key], state[key].float()
        if scale.numel() not in (1, w.shape[0]):
            raise CheckpointError(f"backbone '{path}': '{key}' has shape {list(scale.shape)}; expected a scalar or "
                                  f"one scale per output row ({w.shape[0]})")
        out[weight_key] = w.float() * scale.reshape(-1, *[1] * (w.dim() - 1))
    return out


# ------------------------------------------------------------------------------ what the file is
def _describe_foreign(keys) -> str | None:
    """A guess at what a non-Wan state dict is, so the message can say it."""
    text = " ".join(list(keys)[:2000])
    guesses = (("double_blocks.", "a Flux-family image model"), ("joint_blocks.", "a Stable Diffusion 3 model"),
               ("input_blocks.", "a Stable Diffusion UNet"), ("down_blocks.", "a diffusers UNet"),
               ("encoder.conv_stack.", "a LongLive-RAG retrieval encoder (ae_latent_mem.pt; load it as the encoder)"),
               ("encoder.block.", "a T5 text encoder"), ("shared.weight", "a T5 text encoder"),
               ("token_embedding", "a CLIP text encoder"), ("decoder.", "a VAE"), ("encoder.", "a VAE or an encoder"),
               ("lora_A", "a LoRA (pass it as the LoRA, not as the backbone)"),
               ("lora_down", "a LoRA (pass it as the LoRA, not as the backbone)"),
               ("transformer_blocks.", "a transformer of another family (Flux / SD3 / CogVideoX / LTX / Hunyuan)"))
    for marker, what in guesses:
        if marker in text:
            return what
    return None


def _refuse_other_tasks(state: dict, path) -> None:
    """Wan checkpoints that are not text-to-video (or not Wan2.1 latents) fail here, by name."""
    pe = state.get("patch_embedding.weight")
    in_dim = pe.shape[1] if pe is not None and pe.dim() == 5 else None
    if any(k.startswith("img_emb.") or ".k_img." in k for k in state) or in_dim == 36:
        raise CheckpointError(f"backbone '{path}' is a Wan image-to-video model (img_emb.* keys / {in_dim} input "
                              "channels), which is not supported: this node pack runs Wan2.1 text-to-video causal "
                              "backbones (Self-Forcing, Causal-Forcing, LongLive); " + PICK)
    if any(k.startswith("vace_") for k in state):
        raise CheckpointError(f"backbone '{path}' is a Wan VACE (control) model (vace_* keys), which is not "
                              "supported; " + PICK)
    if in_dim == 48:
        raise CheckpointError(f"backbone '{path}' has 48 input channels: it is a Wan2.2 TI2V model working in the "
                              "Wan2.2 VAE's latent space, which is not supported (this pack uses 16-channel Wan2.1 "
                              "latents); " + PICK)


# ------------------------------------------------------------------------------------ architecture
def infer_config(state: dict, num_heads: int | None = None, *, path: str | Path = "<state dict>") -> WanConfig:
    """Architecture from weight shapes (bare Wan names): dim, ffn_dim, num_layers, text_dim, freq_dim,
    in/out channels and patch size. num_heads = dim / 128 unless given. Works on meta tensors."""
    _refuse_other_tasks(state, path)
    needed = ["patch_embedding.weight", "text_embedding.0.weight", "time_embedding.0.weight", "head.head.weight"]
    missing = [k for k in needed if k not in state]
    layers = sorted({int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))})
    wan_like = any(re.match(r"blocks\.\d+\.self_attn\.q\.weight$", k) for k in state)
    if not wan_like:
        what = _describe_foreign(state)
        looks = f"it looks like {what}" if what else "it has no blocks.N.self_attn.* weights"
        raise CheckpointError(f"backbone '{path}' is not a Wan2.1 text-to-video transformer: {looks} (found "
                              f"{len(state)} tensors, e.g. {sorted(state)[:3]}); expected {EXPECTED}. Fix: {PICK}")
    if missing:
        raise CheckpointError(f"backbone '{path}' is an incomplete Wan transformer: it lacks {missing}; the file is "
                              "truncated or was saved from a modified model — download it again")
    if layers != list(range(len(layers))):
        gaps = sorted(set(range(layers[-1] + 1)) - set(layers))
        raise CheckpointError(f"backbone '{path}' has transformer blocks 0..{layers[-1]} but blocks {gaps[:5]} are "
                              "missing entirely; the file is incomplete — download it again")
    pe = state["patch_embedding.weight"]
    if pe.dim() != 5:
        raise CheckpointError(f"backbone '{path}': patch_embedding.weight has shape {list(pe.shape)}; expected a "
                              "Conv3d weight [dim, 16, 1, 2, 2] of a Wan2.1 T2V transformer. Fix: " + PICK)
    dim, in_dim, patch = pe.shape[0], pe.shape[1], tuple(pe.shape[2:])
    ffn = next((state[f"blocks.{i}.ffn.0.weight"] for i in layers if f"blocks.{i}.ffn.0.weight" in state), None)
    if ffn is None:
        raise CheckpointError(f"backbone '{path}' has no blocks.N.ffn.0.weight; the file is incomplete — download "
                              "it again")
    if num_heads is None:
        if dim % 128:
            raise CheckpointError(f"backbone '{path}' has dim {dim}, not a multiple of the usual head size 128; give "
                                  "the number of attention heads explicitly (num_heads / --num-heads)")
        num_heads = dim // 128
    try:
        return WanConfig(dim=dim, ffn_dim=ffn.shape[0], num_layers=len(layers),
                         num_heads=num_heads, freq_dim=state["time_embedding.0.weight"].shape[1],
                         text_dim=state["text_embedding.0.weight"].shape[1], in_dim=in_dim,
                         out_dim=state["head.head.weight"].shape[0] // math.prod(patch), patch_size=patch)
    except ValueError as exc:
        raise CheckpointError(f"backbone '{path}': {exc}; give a num_heads that divides dim {dim} with an even "
                              "head size") from exc


@functools.lru_cache(maxsize=8)
def expected_shapes(cfg: WanConfig) -> dict[str, tuple[int, ...]]:
    """Key → shape of a Wan T2V transformer with this config (built on the meta device: no memory)."""
    with torch.device("meta"):
        model = WanTransformer(cfg)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def validate_backbone(state: dict, cfg: WanConfig, path: str | Path = "<state dict>") -> None:
    """The key set must be exactly that of ``cfg``'s Wan T2V transformer, with matching shapes."""
    _refuse_other_tasks(state, path)
    expected = expected_shapes(cfg)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(state[k].shape) != expected[k])
    if not (missing or unexpected or wrong):
        return
    found = []
    if missing:
        found.append(f"{len(missing)} missing (e.g. {', '.join(missing[:4])})")
    if unexpected:
        found.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:4])})")
    if wrong:
        found.append("wrong shapes: " + ", ".join(f"{k} {list(state[k].shape)} instead of {list(expected[k])}"
                                                  for k in wrong[:3]))
    raise CheckpointError(
        f"backbone '{path}' does not match a Wan2.1 T2V transformer (dim {cfg.dim}, {cfg.num_layers} layers, ffn "
        f"{cfg.ffn_dim}, text_dim {cfg.text_dim}; {len(expected)} tensors): {'; '.join(found)}. The file is "
        "incomplete or saved from a modified model — download it again or " + PICK)


# --------------------------------------------------------------------------------------------- LoRA
_LORA_FACTOR = re.compile(r"^(.*)\.(lora_A|lora_B|lora_down|lora_up)(?:\.[^.]+)?\.weight$")
_LORA_CONTAINERS = ("generator_lora", "lora", "state_dict", "model", "generator")


def _number(value) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value)
    return None


def normalise_lora(obj, path: str | Path = "<LoRA>") -> tuple[dict, float | None]:
    """A loaded LoRA object (flat, or under generator_lora / lora / ...) → (factors, alpha stated by the file).

    factors: ``module → {"A": [r, in], "B": [out, r], "alpha": float | None}`` with wrapper names and shared
    prefixes (peft ``base_model.model.``, ``model.``, ...) removed and the peft adapter name dropped."""
    alpha = None
    if isinstance(obj, dict) and not _is_state_dict(obj):
        for key in ("lora_alpha", "alpha"):
            alpha = _number(obj.get(key)) if alpha is None else alpha
        for key in ("peft_config", "lora_config", "adapter_config", "config"):
            if isinstance(obj.get(key), dict) and alpha is None:
                alpha = _number(obj[key].get("lora_alpha", obj[key].get("alpha")))
        inner = next((obj[k] for k in _LORA_CONTAINERS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            raise CheckpointError(f"LoRA '{path}' has top-level keys {sorted(map(str, obj))[:6]} and no LoRA "
                                  "tensors; expected a peft LoRA state dict such as LongLive's longlive_lora.pt")
        obj = inner
    if not isinstance(obj, dict):
        raise CheckpointError(f"LoRA '{path}' holds a {type(obj).__name__}; expected a peft LoRA state dict")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    factors: dict[str, dict] = {}
    other = []
    for key, value in tensors.items():
        if m := _LORA_FACTOR.match(key):
            side = "A" if m.group(2) in ("lora_A", "lora_down") else "B"
            factors.setdefault(m.group(1), {})[side] = value
        elif key.endswith(".alpha"):
            factors.setdefault(key[: -len(".alpha")], {})["alpha"] = _number(value)
        else:
            other.append(key)
    if not any("A" in f or "B" in f for f in factors.values()):
        what = _describe_foreign(tensors)
        looks = f"; it looks like {what}" if what and "LoRA" not in what else ""
        raise CheckpointError(f"LoRA '{path}' has no lora_A/lora_B (lora_down/lora_up) tensors (found e.g. "
                              f"{sorted(tensors)[:3]}){looks}; expected a peft LoRA such as LongLive's "
                              "longlive_lora.pt")
    if other:
        raise CheckpointError(f"LoRA '{path}' also holds {len(other)} tensors that are not LoRA factors (e.g. "
                              f"{sorted(other)[:3]}); only lora_A/lora_B pairs on Linear weights are supported "
                              "(no DoRA, bias or full-weight diffs)")
    for module, f in factors.items():
        if "A" not in f or "B" not in f:
            raise CheckpointError(f"LoRA '{path}': '{module}' has lora_{'A' if 'A' in f else 'B'} but no "
                                  f"lora_{'B' if 'A' in f else 'A'}; the file is incomplete — download it again")
    renamed = _strip_common_prefixes(list(factors))
    return {renamed[m]: f for m, f in factors.items()}, alpha


def read_lora(path: str | Path) -> tuple[dict, float | None]:
    """(factors, alpha) of a LoRA file; a peft ``adapter_config.json`` beside ``adapter_model.*`` gives alpha."""
    path = Path(path)
    factors, alpha = normalise_lora(_load_file(path, "LoRA"), path)
    config = path.parent / "adapter_config.json"
    if alpha is None and path.stem == "adapter_model" and config.is_file():
        alpha = _number(json.loads(config.read_text()).get("lora_alpha"))
    return factors, alpha


def _lora_target(module: str, state: dict, kohya: dict[str, str]) -> str | None:
    for key in (f"{module}.weight", diffusers_to_wan(f"{module}.weight")):
        if key in state:
            return key
    if module.startswith("lora_unet_"):       # kohya: dots of the module path written as underscores
        return kohya.get(module[len("lora_unet_"):])
    return None


def match_lora(lora: dict, state: dict, path: str | Path, alpha: float | None = None
               ) -> dict[str, tuple[torch.Tensor, torch.Tensor, float]]:
    """Backbone weight key → (A [r, in], B [out, r], alpha / r). alpha: per-module, else the file's, else r.
    Only shapes are used, so this works on meta tensors."""
    kohya = {k[: -len(".weight")].replace(".", "_"): k for k in state if k.endswith(".weight")}
    pairs, unmatched = {}, []
    for module, f in lora.items():
        target = _lora_target(module, state, kohya)
        if target is None:
            unmatched.append(module)
            continue
        a, b, w = f["A"], f["B"], state[target]
        if a.dim() != 2 or b.dim() != 2 or w.dim() != 2 or a.shape[0] != b.shape[1] \
                or (b.shape[0], a.shape[1]) != tuple(w.shape):
            raise CheckpointError(f"LoRA '{path}': {module} has A {list(a.shape)} and B {list(b.shape)}, which do "
                                  f"not fit the backbone weight {target} {list(w.shape)}; the LoRA was trained for a "
                                  "model of another size — use the LoRA released with this backbone")
        rank = a.shape[0]
        a_alpha = f.get("alpha") if f.get("alpha") is not None else alpha
        pairs[target] = (a, b, (a_alpha if a_alpha is not None else rank) / rank)
    if not pairs:
        raise CheckpointError(f"LoRA '{path}' matches no layer of the backbone: its {len(lora)} targets look like "
                              f"{sorted(unmatched)[:2]}, the backbone's like 'blocks.0.self_attn.q'. It was trained "
                              "for another model; use the LoRA released with this backbone (LongLive: "
                              "longlive_lora.pt)")
    if unmatched:
        raise CheckpointError(f"LoRA '{path}': {len(unmatched)} of its {len(lora)} targets are not layers of the "
                              f"backbone (e.g. {sorted(unmatched)[:3]}); it was trained for another architecture — "
                              "use the LoRA released with this backbone")
    return pairs


def merge_lora(state: dict, pairs: dict, strength: float) -> None:
    """W += strength · (alpha/r) · B·A, computed in float32 and stored back in W's dtype (replaces the tensor)."""
    for target, (a, b, scale) in pairs.items():
        w = state[target]
        state[target] = (w.float() + (strength * scale) * (b.float() @ a.float())).to(w.dtype)


# ------------------------------------------------------------------------------------------ presets
_NAME_HINTS = (("self_forcing", "Self-Forcing"), ("selfforcing", "Self-Forcing"),
               ("causal_forcing", "Causal-Forcing"), ("causalforcing", "Causal-Forcing"), ("longlive", "LongLive"))


def _preset(fmt: str, path: Path) -> str:
    if fmt == "longlive":
        return "LongLive"
    if fmt == "self_forcing":
        return "Self-Forcing"
    # A bare / diffusers file cannot tell the families apart (same architecture): trust the file name.
    name = "/".join(path.parts[-2:]).lower().replace("-", "_")
    for hint, preset in _NAME_HINTS:
        if hint in name:
            return preset
    return "Causal-Forcing" if fmt == "causal_forcing" else "Wan2.1"


def _header_keys(path: Path) -> list[str]:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            return list(fh.keys())
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"backbone '{path}' is not a readable safetensors file ({exc}); it is probably "
                              "truncated — download it again") from exc


def _peek(path: Path) -> tuple[list[str], str]:
    """(normalised tensor names, format) without reading weights (safetensors headers / mmap'd pickle)."""
    if path.is_dir():
        files, _, _, _ = _folder_files(path, "backbone")
        if all(_sniff(f) == "safetensors" for f in files):
            keys = [k for f in files for k in _header_keys(f)]
        else:
            keys = list(_load_folder(path, "backbone")[0])
        names, diffusers = normalise_names(dict.fromkeys(keys), path)
        return list(names), "diffusers" if diffusers else "wan_safetensors"
    if path.is_file() and path.stat().st_size > 0 and _sniff(path) == "safetensors":
        names, diffusers = normalise_names(dict.fromkeys(_header_keys(path)), path)
        return list(names), "diffusers" if diffusers else "wan_safetensors"
    state, fmt, _ = _unwrap(_load_file(path, "backbone"), path, use_ema=True)
    names, diffusers = normalise_names(state, path)
    return list(names), "diffusers" if diffusers else fmt


def detect_preset(path: str | Path, lora: str | Path | None = None) -> str:
    """The backbone family ("Self-Forcing", "Causal-Forcing", "LongLive", "Wan2.1") from the file's layout
    and name, without loading its weights. Raises CheckpointError for unreadable files."""
    path = Path(path)
    _, fmt = _peek(path)
    return _preset("longlive" if lora is not None else fmt, path)


def is_backbone_checkpoint(path: str | Path) -> bool:
    """Cheap check (tensor names only) that a file looks like a Wan2.1 T2V backbone; never raises."""
    try:
        names, _ = _peek(Path(path))
    except (CheckpointError, OSError):
        return False
    keys = set(names)
    return ({"patch_embedding.weight", "head.head.weight", "blocks.0.self_attn.q.weight"} <= keys
            and not any(k.startswith(("img_emb.", "vace_")) for k in keys))


# ------------------------------------------------------------------------------------------ loading
def _dtype_summary(state: dict) -> str:
    counts: dict[str, int] = {}
    for v in state.values():
        name = str(v.dtype).replace("torch.", "")
        counts[name] = counts.get(name, 0) + v.numel()
    return "+".join(sorted(counts, key=counts.get, reverse=True))


def _heads_from_config(config: dict) -> int | None:
    heads = config.get("num_attention_heads", config.get("num_heads"))
    return int(heads) if isinstance(heads, int) else None


def _check_folder_config(config: dict, state: dict, path: Path) -> None:
    task = config.get("model_type")
    if (task not in (None, "t2v")) or config.get("image_dim") or config.get("added_kv_proj_dim") \
            or config.get("in_channels", config.get("in_dim", 16)) != 16:
        _refuse_other_tasks(state, path)   # names the task when the weights show it
        raise CheckpointError(f"backbone '{path}': its config.json describes a '{task or 'non-T2V'}' model "
                              f"(in_channels {config.get('in_channels', config.get('in_dim'))}); only Wan2.1 "
                              "text-to-video transformers are supported; " + PICK)
    layers = config.get("num_layers")
    found = len({m.group(1) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))})
    if isinstance(layers, int) and layers != found:
        raise CheckpointError(f"backbone '{path}': config.json says {layers} layers but the weights have {found}; "
                              "shards are missing or belong to another model — download the complete folder")


def read_backbone(path: str | Path, *, lora: str | Path | None = None, lora_strength: float = 1.0,
                  use_ema: bool = True) -> tuple[dict[str, torch.Tensor], CheckpointInfo]:
    """Weights with bare Wan names (stored dtype; LoRA merged in float32 and cast back) and where they came
    from. Raises CheckpointError — before anything is built — when the file is not a usable backbone."""
    path = Path(path)
    config: dict = {}
    if path.is_dir():
        state, config = _load_folder(path, "backbone")
        source, fmt = None, "wan_safetensors"
    else:
        raw = _load_file(path, "backbone")
        if _is_state_dict(raw) and _sniff(path) == "safetensors":
            state, fmt, source = raw, "wan_safetensors", None
        else:
            state, fmt, source = _unwrap(raw, path, use_ema)
        del raw
    state = _dequantize_scaled_fp8(state, path)
    state, diffusers = normalise_names(state, path)
    if diffusers:
        fmt = "diffusers"
    if config:
        _check_folder_config(config, state, path)
    heads = _heads_from_config(config)
    # The head count changes no weight shape; any valid one checks the key set.
    shape_cfg = infer_config(state, heads if heads else _any_heads(state), path=path)
    validate_backbone(state, shape_cfg, path)
    if shape_cfg.in_dim != 16 or shape_cfg.out_dim != 16:
        raise CheckpointError(f"backbone '{path}' has {shape_cfg.in_dim} input / {shape_cfg.out_dim} output "
                              "channels; expected 16 (Wan2.1 latents); " + PICK)
    n_lora = 0
    if lora is not None:
        factors, alpha = read_lora(lora)
        pairs = match_lora(factors, state, lora, alpha)
        merge_lora(state, pairs, lora_strength)
        n_lora, fmt = len(pairs), "longlive"
    info = CheckpointInfo(path=str(path), format=fmt, preset=_preset(fmt, path), source_key=source,
                          lora_path=str(lora) if lora is not None else None,
                          lora_strength=float(lora_strength) if lora is not None else 0.0,
                          dtype=_dtype_summary(state), lora_layers=n_lora, num_heads=heads)
    return state, info


def _any_heads(state: dict) -> int | None:
    pe = state.get("patch_embedding.weight")
    if pe is None or pe.dim() != 5:
        return None     # infer_config reports what is wrong
    dim = pe.shape[0]
    return dim // 128 if dim % 128 == 0 else max(1, dim // 2)


def load_backbone(path: str | Path, *, lora: str | Path | None = None, lora_strength: float = 1.0,
                  num_heads: int | None = None, dtype: torch.dtype = torch.float32,
                  device: str | torch.device = "cpu", use_ema: bool = True) -> Backbone:
    """A ready ``WanTransformer`` (eval, no grad) in ``dtype`` on ``device``. fp8/fp16/bf16 weights are
    converted here, one tensor at a time into a module built on the meta device (no second copy)."""
    state, info = read_backbone(path, lora=lora, lora_strength=lora_strength, use_ema=use_ema)
    cfg = infer_config(state, num_heads if num_heads is not None else info.num_heads, path=path)
    with torch.device("meta"):
        model = WanTransformer(cfg)
    weights = {}
    for key in list(state):
        # copy=True: never alias a memory-mapped file (it could change on disk or stay locked on Windows).
        weights[key] = state.pop(key).to(device=device, dtype=dtype, copy=True)
    model.load_state_dict(weights, strict=True, assign=True)
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise RuntimeError(f"internal error: {left[:3]} were not loaded from '{path}'")
    return Backbone(model.eval().requires_grad_(False), cfg, info)
