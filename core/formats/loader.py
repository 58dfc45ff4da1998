"""Backbone file → ready model, in one pass: read once, name once, identify once, size once, check once.

    read_weights ─ unwrap (training layouts) ─ fp8 scales set aside ─ bare Wan names ─ identify the family
    (refusing neighbours by name) ─ sizes from shapes ─ file config vs. weights ─ key set and shapes
    ─ LoRA merge (on de-quantised weights) ─ head count ─ model built on the meta device (its block
    projections fp8 under ``weights="fp8"``: core/formats/fp8_weights.py), filled one tensor at a time.

The head count is the one size no weight shape shows. It comes from the caller (``num_heads``), else
from the file (a folder's config.json, the safetensors metadata — ``{"config": "{\\"num_heads\\": 2,
...}"}`` or a ``num_heads`` entry — or a pickle's ``config`` entry), else from the family's documented
head size; never from a guess. ``save_backbone_safetensors`` writes a file that carries it. A file written by
``python -m core convert`` states its preset in its metadata (core/formats/stored_settings.py): a renamed one
keeps its name.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, is_dataclass, replace
from pathlib import Path

import torch

from ..sampling.defaults import FamilyDefaults
from ..files.atomic import save_tensors
from ..model.fp8_linear import to_fp8
from ..model.transformer import WanConfig, WanTransformer
from ..families.registry import expected_any, identify
from ..families.family import BackboneFamily, check_keys, make_config, preset_for, resolve_heads
from .lora import match_lora, merge_lora, read_lora
from ..files.safe_reader import CheckpointError, WeightsFile, is_state_dict, read_weights
from .fp8_weights import check_weights, fill_tensors, holds_fp8, resolve_weights
from .stored_settings import read_settings
from .wan_names import apply_scales, rename_map, split_fp8_scales

WHERE = "ComfyUI: backbones go in models/diffusion_models/, LoRAs in models/loras/"
_HEAD_KEYS = ("num_heads", "num_attention_heads")


@dataclass(frozen=True)
class CheckpointInfo:
    """Where a backbone's weights came from (shown in the ComfyUI node and the CLI)."""
    path: str
    format: str                 # "self_forcing" | "causal_forcing" | "longlive" | "wan_safetensors" | "diffusers"
    preset: str                 # the family's preset (human-readable backbone name), e.g. "Self-Forcing"
    source_key: str | None      # top-level pickle key the weights came from (e.g. "generator_ema")
    lora_path: str | None
    lora_strength: float        # 0.0 when no LoRA was merged
    dtype: str                  # stored dtype(s) of the weights, dominant first, e.g. "float8_e4m3fn+float32"
    lora_layers: int = 0        # weights the LoRA changed
    num_heads: int | None = None  # head count stated by the file (config.json / metadata), if any
    family: str = ""            # the backbone family's name, e.g. "Wan2.2 TI2V-5B"
    weights: str = "native"     # the resolved weights setting: "native" | "fp8" (core/formats/fp8_weights.py)


@dataclass
class Backbone:
    model: WanTransformer       # eval mode, requires_grad False, in the requested dtype and device
    config: WanConfig
    info: CheckpointInfo
    defaults: FamilyDefaults    # the family's published run settings


@dataclass
class _Parsed:
    """One backbone file after its single read: checked, bare-named weights and what is known about them."""
    state: dict
    family: BackboneFamily
    sizes: object               # the family's sizes (everything but the head count)
    layout: str                 # CheckpointInfo.format before a LoRA is merged
    source_key: str | None
    stated_heads: int | None
    scales: dict = field(default_factory=dict)  # fp8 weight key → float32 scale [1] or [rows] (not yet applied)
    fp8_file: bool = False      # the file stores its block projections as fp8 (before any LoRA merge)
    stated_preset: str | None = None    # the preset a converted file states (core/formats/stored_settings.py)

    def preset(self, layout: str, path: Path) -> str:
        """The preset a converted file states (unless a LoRA was merged since), else the layout's / name's."""
        if layout == self.layout and self.stated_preset in self.family.presets:
            return self.stated_preset
        return preset_for(self.family, layout, path)


# ------------------------------------------------------------------------------------- one read
def _unwrap(weights: WeightsFile, use_ema: bool) -> tuple[dict, str, str | None]:
    """(tensor dict, layout, top-level key) for safetensors, folders and the training-checkpoint pickles."""
    obj, path = weights.content, weights.path
    if is_state_dict(obj):
        return obj, ("wan_safetensors" if weights.kind in ("safetensors", "folder") else "causal_forcing"), None
    if not isinstance(obj, dict) or not obj:
        found = "no tensors" if isinstance(obj, dict) else f"a {type(obj).__name__}"
        raise CheckpointError(f"backbone '{path}' holds {found}, not a state dict; expected {expected_any()}")
    has = {k for k, v in obj.items() if is_state_dict(v)}
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
    if any(str(k).endswith("_lora") or ".lora_A." in str(k) or ".lora_down." in str(k) for k in obj):
        raise CheckpointError(f"backbone '{path}' is a LoRA (top-level keys {sorted(map(str, obj))[:4]}), not a "
                              "backbone; pass it as the LoRA and choose the base model (e.g. LongLive's base "
                              "checkpoint) as the backbone")
    raise CheckpointError(f"backbone '{path}' has top-level keys {sorted(map(str, obj))[:8]} but none holds weights; "
                          f"expected {expected_any()}, possibly under 'generator_ema', 'generator' or 'model'")


def _file_config(weights: WeightsFile) -> tuple[dict, str]:
    """(the config stored with the weights, where it was found): a folder's config.json, the safetensors
    metadata ("config" JSON and/or a bare "num_heads" entry) or a pickle's "config" entry; ({}, "") if none."""
    if weights.config:
        return weights.config, "config.json"
    if weights.metadata:
        try:
            config = json.loads(weights.metadata.get("config", "{}"))
        except ValueError:
            config = None           # another tool's free-form "config" text: not ours to interpret
        config = dict(config) if isinstance(config, dict) else {}
        for key in _HEAD_KEYS:
            if key in weights.metadata:
                try:
                    config[key] = int(weights.metadata[key])
                except ValueError:
                    raise CheckpointError(f"backbone '{weights.path}': its safetensors metadata says {key} = "
                                          f"{weights.metadata[key]!r}; expected a whole number — re-save the file "
                                          "with save_backbone_safetensors") from None
        return config, "safetensors metadata"
    content = weights.content
    if isinstance(content, dict) and isinstance(content.get("config"), dict):
        return content["config"], "'config' entry"
    return {}, ""


def _stated_heads(config: dict) -> int | None:
    heads = next((config[k] for k in _HEAD_KEYS if k in config), None)
    return heads if isinstance(heads, int) and not isinstance(heads, bool) else None


def _parse(path: Path, *, use_ema: bool, shapes_only: bool = False) -> _Parsed:
    """Read ``path`` once and check it completely (no head count needed). shapes_only: safetensors headers
    only (meta tensors), for cheap questions about a file."""
    weights = read_weights(path, "backbone", mmap=True, shapes_only=shapes_only, hint=WHERE)
    state, layout, source = _unwrap(weights, use_ema)
    config, where = _file_config(weights)
    stored = read_settings(weights.metadata)
    del weights             # releases the unused half of a Self-Forcing file (mapped, never read)
    parsed = _parse_state(state, path, layout, source, config, where)
    parsed.stated_preset = stored.preset if stored is not None and stored.kind == "backbone" else None
    return parsed


def _parse_state(state: dict, path, layout: str = "wan_safetensors", source: str | None = None,
                 config: dict | None = None, where: str = "") -> _Parsed:
    """The checks of ``_parse`` on a state dict: fp8 scales set aside (applied later), names, family, sizes."""
    state, scales = split_fp8_scales(state, path)
    names, diffusers = rename_map(state, path)
    state = {new: state[old] for old, new in names.items()}
    scales = {names[k]: v for k, v in scales.items() if k in names}
    family = identify(state, path)
    sizes = family.read_sizes(state, path)
    if config:
        family.check_file_config(config, sizes, path, where)
    check_keys(family, state, sizes, path)
    return _Parsed(state, family, sizes, "diffusers" if diffusers else layout, source, _stated_heads(config or {}),
                   scales, holds_fp8(state))


def _dtype_summary(state: dict) -> str:
    counts: dict[str, int] = {}
    for v in state.values():
        name = str(v.dtype).replace("torch.", "")
        counts[name] = counts.get(name, 0) + v.numel()
    return "+".join(sorted(counts, key=counts.get, reverse=True))


def _read(path: Path, lora, lora_strength: float, use_ema: bool) -> tuple[_Parsed, CheckpointInfo]:
    parsed = _parse(path, use_ema=use_ema)
    layout, n_lora, stored = parsed.layout, 0, _dtype_summary(parsed.state)
    if lora is not None:
        parsed.state, parsed.scales = apply_scales(parsed.state, parsed.scales), {}   # merged in full precision
        factors, alpha = read_lora(lora)
        family = parsed.family
        pairs = match_lora(factors, parsed.state, lora, alpha, backbone=f"a {family.name} backbone, "
                           f"{family.describe(parsed.sizes)}", released=family.lora_file)
        merge_lora(parsed.state, pairs, lora_strength)
        layout, n_lora = "longlive", len(pairs)
    info = CheckpointInfo(path=str(path), format=layout, preset=parsed.preset(layout, path),
                          source_key=parsed.source_key, lora_path=str(lora) if lora is not None else None,
                          lora_strength=float(lora_strength) if lora is not None else 0.0,
                          dtype=stored, lora_layers=n_lora, num_heads=parsed.stated_heads,
                          family=parsed.family.name)
    return parsed, info


# ---------------------------------------------------------------------------------- public API
def read_backbone(path: str | Path, *, lora: str | Path | None = None, lora_strength: float = 1.0,
                  use_ema: bool = True) -> tuple[dict[str, torch.Tensor], CheckpointInfo]:
    """Weights with bare Wan names (stored dtype; LoRA merged in float32 and cast back) and where they came
    from. Raises CheckpointError — before anything is built — when the file is not a usable backbone."""
    parsed, info = _read(Path(path), lora, lora_strength, use_ema)
    return apply_scales(parsed.state, parsed.scales), info


def load_backbone(path: str | Path, *, lora: str | Path | None = None, lora_strength: float = 1.0,
                  num_heads: int | None = None, dtype: torch.dtype = torch.float32,
                  device: str | torch.device = "cpu", use_ema: bool = True, weights: str = "auto") -> Backbone:
    """A ready ``WanTransformer`` (eval, no grad) in ``dtype`` on ``device``. fp8/fp16/bf16 weights are
    converted here, one tensor at a time into a module built on the meta device (no second copy).
    num_heads overrides the head count the file states (see the module docstring for the order).
    weights: "auto" | "native" | "fp8" — whether the block projections stay fp8 on the device
    (core/formats/fp8_weights.py; "auto" is fp8 only for an fp8 file on CUDA). ``info.weights`` says which."""
    path = Path(path)
    check_weights(weights)
    parsed, info = _read(path, lora, lora_strength, use_ema)
    return _build(parsed, info, path, num_heads, dtype, device, weights)


def backbone_from_state(state: dict[str, torch.Tensor], *, num_heads: int | None = None,
                        dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                        weights: str = "auto", path: str | Path = "<state dict>") -> Backbone:
    """``load_backbone`` for a state dict already in memory (any naming ``load_backbone`` reads, fp8 layouts
    included; meta tensors with ``device="meta"``: shapes and bytes only). ``state`` itself is left as it is."""
    parsed = _parse_state(state, path)
    info = CheckpointInfo(path=str(path), format=parsed.layout, preset=preset_for(parsed.family, parsed.layout,
                          Path(str(path))), source_key=None, lora_path=None, lora_strength=0.0,
                          dtype=_dtype_summary(parsed.state), family=parsed.family.name)
    return _build(parsed, info, path, num_heads, dtype, device, weights)


def _build(parsed: _Parsed, info: CheckpointInfo, path, num_heads, dtype, device, weights: str) -> Backbone:
    heads, source = resolve_heads(parsed.family, parsed.sizes, num_heads, parsed.stated_heads, path)
    cfg = make_config(parsed.family, parsed.sizes, heads, source, path)
    chosen = resolve_weights(weights, file_fp8=parsed.fp8_file, device=device)
    with torch.device("meta"):
        model = parsed.family.build(cfg)
        if chosen == "fp8":
            to_fp8(model)
    tensors = fill_tensors(model, parsed.state, parsed.scales, device, dtype)
    model.load_state_dict(tensors, strict=True, assign=True)
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left and torch.device(device).type != "meta":      # device "meta": shapes only (checks, no memory)
        raise RuntimeError(f"internal error: {left[:3]} were not loaded from '{path}'")
    info = replace(info, weights=chosen)
    return Backbone(model.eval().requires_grad_(False), cfg, info, parsed.family.defaults_for(info.preset))


def infer_config(state: dict, num_heads: int | None = None, *, path: str | Path = "<state dict>") -> WanConfig:
    """Architecture of a bare-named state dict from its weight shapes (meta tensors are fine): dim, ffn_dim,
    num_layers, text_dim, freq_dim, in/out channels, patch size; num_heads as given, else the family's
    documented head size (Wan2.1: dim / 128)."""
    family = identify(state, path)
    sizes = family.read_sizes(state, path)
    heads, source = resolve_heads(family, sizes, num_heads, None, path)
    return make_config(family, sizes, heads, source, path)


def backbone_spec(state: dict, num_heads: int | None = None, *, path: str | Path = "<state dict>"
                  ) -> tuple[BackboneFamily, WanConfig, str]:
    """(family, architecture, preset) of a backbone's tensors (shapes only: meta tensors are fine; any naming
    ``load_backbone`` reads), checked as Load Backbone checks a file: a model of another family or task is refused
    in one line (``CheckpointError``). For a model another program loaded, to run with ``WanTransformer.from_modules``."""
    parsed = _parse_state(state, path)
    heads, source = resolve_heads(parsed.family, parsed.sizes, num_heads, parsed.stated_heads, path)
    cfg = make_config(parsed.family, parsed.sizes, heads, source, path)
    return parsed.family, cfg, preset_for(parsed.family, parsed.layout, Path(str(path)))


def validate_backbone(state: dict, cfg: WanConfig, path: str | Path = "<state dict>") -> None:
    """The key set must be exactly that of ``cfg``'s transformer, with matching shapes."""
    check_keys(identify(state, path), state, cfg, path)


def detect_preset(path: str | Path, lora: str | Path | None = None) -> str:
    """The backbone preset ("Self-Forcing", "Causal-Forcing", "LongLive", "Wan2.1") from the file's layout
    and name, reading safetensors headers only. Raises CheckpointError for files that are not backbones."""
    parsed = _parse(Path(path), use_ema=True, shapes_only=True)
    return parsed.preset("longlive" if lora is not None else parsed.layout, Path(path))


def backbone_on_meta(path: str | Path, *, num_heads: int | None = None, use_ema: bool = True,
                     weights: str = "native", device: str | torch.device = "cpu") -> WanTransformer:
    """The backbone of a file built on the meta device: its sizes and parameter count with no weight read
    (safetensors: headers only; pickles are memory-mapped), for estimating a run's memory before loading it.
    weights: as ``load_backbone`` would resolve it for a run on ``device`` (fp8: its block projections are
    ``Fp8Linear``; ``core.model.fp8_linear.weight_bytes`` counts the bytes). Raises CheckpointError as
    ``load_backbone`` would."""
    path = Path(path)
    parsed = _parse(path, use_ema=use_ema, shapes_only=True)
    heads, source = resolve_heads(parsed.family, parsed.sizes, num_heads, parsed.stated_heads, path)
    chosen = resolve_weights(weights, file_fp8=parsed.fp8_file, device=device)
    with torch.device("meta"):
        model = parsed.family.build(make_config(parsed.family, parsed.sizes, heads, source, path))
        return to_fp8(model) if chosen == "fp8" else model


def is_fp8_file(path: str | Path, *, use_ema: bool = True) -> bool:
    """Whether a backbone file's block projections are stored as fp8 (safetensors: headers only)."""
    return _parse(Path(path), use_ema=use_ema, shapes_only=True).fp8_file


def detect_family(path: str | Path) -> BackboneFamily:
    """The family of a backbone file (its run defaults: ``.defaults``), reading safetensors headers only
    (pickles are memory-mapped, not read). Raises CheckpointError for files that are not backbones."""
    return _parse(Path(path), use_ema=True, shapes_only=True).family


def detect_defaults(path: str | Path) -> tuple[BackboneFamily, str, FamilyDefaults]:
    """(family, preset, run defaults) of a backbone file, as ``load_backbone`` will resolve them (a variant such as
    frame-wise Causal Forcing++ is told by its file name), reading safetensors headers only. Raises CheckpointError
    for files that are not backbones."""
    parsed = _parse(Path(path), use_ema=True, shapes_only=True)
    preset = parsed.preset(parsed.layout, Path(path))
    return parsed.family, preset, parsed.family.defaults_for(preset)


def is_backbone_checkpoint(path: str | Path) -> bool:
    """Whether a file is a complete backbone of a known family (safetensors: headers only); never raises."""
    try:
        _parse(Path(path), use_ema=True, shapes_only=True)
    except (CheckpointError, OSError):
        return False
    return True


def save_backbone_safetensors(model_or_state: torch.nn.Module | dict[str, torch.Tensor], path: str | Path,
                              config) -> Path:
    """Write a backbone as .safetensors with its config (a dataclass such as ``WanConfig``, or a dict) in the
    metadata as ``{"config": "<json>"}``, so ``load_backbone`` finds its head count without ``num_heads``.
    Written atomically (never a half file). Returns ``path``."""
    state = model_or_state.state_dict() if isinstance(model_or_state, torch.nn.Module) else model_or_state
    stated = asdict(config) if is_dataclass(config) else dict(config)
    if _stated_heads(stated) is None:
        raise ValueError(f"save_backbone_safetensors('{path}'): config {stated} has no integer num_heads; "
                         "pass the model's config (e.g. its WanConfig)")
    save_tensors(path, {k: v.detach().cpu() for k, v in state.items()}, metadata={"config": json.dumps(stated)})
    return Path(path)
