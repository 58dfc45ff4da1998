"""Checkpoint loading: backbone files people have on disk → a ready ``WanTransformer``.

Formats: Self-Forcing (``generator_ema`` / ``generator``, ``model.`` prefix, FSDP wrapper names),
Causal-Forcing (``generator`` / ``model``), LongLive (a base like Causal-Forcing + a peft LoRA merged at
load), bare Wan names in safetensors (optionally ``model.diffusion_model.``-prefixed; fp16 / bf16 / fp8,
ComfyUI "scaled fp8" included), a Wan2.1 folder (``config.json`` + safetensors) and the diffusers layout
(single file or folder, possibly sharded). Every failure is a ``CheckpointError`` naming the file, what
was found, what was expected and the fix.

One concept per module:

- ``reader``     — the one safe file reader every loader in core/ uses (weights-only pickles, safetensors,
                   folders, shards; missing / empty / truncated / corrupt / GGUF / code-running pickles);
- ``wan_names``  — Wan key naming: prefixes and wrappers, diffusers → Wan, fp8 scales (set aside, applied);
- ``fp8_weights`` — the weights setting ("auto" | "native" | "fp8"): block projections kept fp8 on the device;
- ``lora``       — LoRA reading, matching to backbone weights and merging;
- ``family``     — what a backbone family is to the loader, and the checks every family gets;
- ``wan_arch``   — the Wan transformer's sizes and tensor names, shared by the Wan families;
- ``families``   — the registry: ``wan21_t2v`` (Wan2.1 T2V: Self-Forcing, Causal-Forcing, LongLive) and
                   ``wan22_ti2v`` (Wan2.2 TI2V-5B: LongLive 2.0), each with its presets and run defaults;
- ``loader``     — one pass per load, ``load_backbone`` and friends;
- ``convert``    — the same files written as ComfyUI's diffusion-model / LoRA safetensors (``python -m core convert``).
- ``stored_settings`` — what a converted file's metadata says (family, preset, run settings): ``read_settings``.
"""
from ..families.registry import FAMILIES, describe_foreign, identify
from ..families.family import BackboneFamily, Refusal
from .lora import match_lora, merge_lora, normalise_lora, read_lora
from .fp8_weights import resolve_weights
from .loader import (Backbone, CheckpointInfo, backbone_from_state, backbone_on_meta, backbone_spec,
                     detect_defaults, detect_family, detect_preset, infer_config, is_backbone_checkpoint, is_fp8_file,
                     load_backbone, read_backbone, save_backbone_safetensors, validate_backbone)
from ..files.safe_reader import CheckpointError, WeightsFile, is_state_dict, read_state_dict, read_weights
from ..families.wan_arch import WanSizes, expected_shapes
from .wan_names import diffusers_to_wan, normalise_names

__all__ = ["Backbone", "BackboneFamily",
           "backbone_from_state", "backbone_on_meta", "is_fp8_file", "resolve_weights", "CheckpointError", "CheckpointInfo", "FAMILIES", "Refusal", "WanSizes", "detect_defaults", "detect_family",
           "WeightsFile", "describe_foreign", "detect_preset", "diffusers_to_wan", "expected_shapes", "identify",
           "infer_config", "is_backbone_checkpoint", "is_state_dict", "load_backbone", "match_lora", "merge_lora",
           "normalise_lora", "normalise_names", "read_backbone", "read_lora", "read_state_dict", "read_weights",
           "save_backbone_safetensors", "validate_backbone"]
