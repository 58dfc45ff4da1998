"""A ComfyUI MODEL as the sampler's backbone: a Wan2.1 T2V or Wan2.2 TI2V diffusion model from ComfyUI's own
loaders (Load Diffusion Model, the GGUF loader, a ``comfy_quant`` / scaled-fp8 file), LoRAs stacked on it with
LoraLoaderModelOnly.

ComfyUI keeps the weights. Its layers — fp8, quantised, GGUF, with LoRA patches applied the way ComfyUI applies
them — run inside core's transformer arithmetic (``WanTransformer.from_modules``: only the weights are ComfyUI's;
attention, RoPE and the cache are the pack's), and ComfyUI's model management places them before a run
(``bridge.load_managed``: asked for the room the run needs besides the weights, it loads them fully, partially or
streamed). The family, and so every default, is told from the model's tensors by the checks Load Backbone applies
to a file (``core.formats.backbone_spec``).
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass, replace

import torch

from ..core.files.safe_reader import CheckpointError
from ..core.formats import Backbone, CheckpointInfo, backbone_spec
from ..core.families.registry import FAMILIES
from . import bridge
from .bridge import io, ui
from .loaders import BACKBONE, BackboneHandle, memory_line

NOT_WAN = ("connect a Wan2.1 T2V 1.3B or Wan2.2 TI2V 5B diffusion model (Load Diffusion Model, a GGUF loader), "
           "or use Load Backbone")


class ComfyLayersMixin:
    """What a transformer over ComfyUI's layers does differently: the patch embedding runs in float32 (ComfyUI
    keeps it in float32 whatever the model's dtype, as its Wan model's forward does), and it computes where
    ComfyUI computes (``compute_device`` / ``compute_dtype``, core/model/backbone.py ``compute_place``)."""

    compute_device: torch.device
    compute_dtype: torch.dtype

    def patch_embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.patch_embedding(x.float()).to(x.dtype)


@dataclass
class Adapted:
    model: torch.nn.Module      # the pack's transformer over ComfyUI's layers
    backbone: Backbone


_ADAPTED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()     # diffusion model → Adapted (one per model)


def is_comfy_model(value) -> bool:
    return bridge.diffusion_model(value) is not None


def shapes(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The module's parameters as meta tensors of their logical shapes (a GGUF tensor states its own)."""
    out = {}
    for name, p in module.named_parameters():
        shape = tuple(getattr(p, "tensor_shape", p.shape))
        dtype = p.dtype if p.dtype.is_floating_point else torch.float32
        out[name] = torch.empty(shape, dtype=dtype, device="meta")
    return out


def adapt(model) -> Adapted:
    """The pack's backbone over a ComfyUI MODEL's diffusion model (built once per diffusion model; its LoRA
    patches are ComfyUI's and follow the MODEL that is loaded before each run). One clear line for a MODEL that is
    not a Wan text-to-video / TI2V model."""
    dm = bridge.diffusion_model(model)
    name = type(dm).__name__
    if name != "WanModel":
        raise ValueError(f"the backbone input is a ComfyUI MODEL of type {name}, not a Wan2.1/Wan2.2 text-to-video "
                         f"model: {NOT_WAN}")
    found = _ADAPTED.get(dm)
    if found is not None:
        return found
    try:
        family, cfg, preset = backbone_spec(shapes(dm), getattr(dm, "num_heads", None), path="the ComfyUI MODEL")
    except CheckpointError as e:
        raise ValueError(f"{e}".rstrip(".") + f" — {NOT_WAN}") from None
    cls = type(f"Comfy{family.build.__name__}", (ComfyLayersMixin, family.build), {})
    adapted_model = cls.from_modules(cfg, dict(dm.named_modules()))
    info = CheckpointInfo(path="ComfyUI MODEL", format="comfyui", preset=preset, source_key=None, lora_path=None,
                          lora_strength=0.0, dtype=_stored(dm), num_heads=cfg.num_heads, family=family.name)
    found = Adapted(adapted_model, Backbone(adapted_model, cfg, info, family.defaults))
    _ADAPTED[dm] = found
    return found


def _stored(dm: torch.nn.Module) -> str:
    counts: dict[str, int] = {}
    for p in dm.parameters():
        key = str(getattr(p, "tensor_type", None) or p.dtype).replace("torch.", "").replace("GGMLQuantizationType.", "")
        counts[key] = counts.get(key, 0) + p.numel()
    return "+".join(sorted(counts, key=counts.get, reverse=True))


def describe(model, adapted) -> str:
    """The MODEL route's info line: what the sampler runs and how ComfyUI holds it."""
    bb = adapted.backbone
    device, dtype = bridge.model_compute(model)
    patches = len(getattr(model, "patches", None) or {})
    return (f"backbone: a ComfyUI MODEL, {bb.info.family} family ({bb.config.num_layers} layers, dim "
            f"{bb.config.dim}, {bb.config.num_heads} heads); stored {bb.info.dtype}, computed in "
            f"{str(dtype).replace('torch.', '')} on {device}"
            + (f"; {patches} weights patched (LoRA)" if patches else ""))


def as_backbone(backbone, preset: str | None = None) -> BackboneHandle:
    """A 'backbone' input: Load Backbone's as it is, or a ComfyUI MODEL run on ComfyUI's layers where ComfyUI
    computes (its identity — the model and its patches — stands for the file in the continue memo's run key).
    ``preset``: which checkpoint of the family the MODEL is (its run settings; None: the family's default — the
    weights alone cannot tell e.g. a frame-wise Causal Forcing++ from a chunk-wise model)."""
    if isinstance(backbone, BackboneHandle):
        return backbone
    if not is_comfy_model(backbone):
        raise ValueError(f"the backbone input is a {type(backbone).__name__}; connect Load Backbone's 'backbone' or "
                         f"a ComfyUI MODEL: {NOT_WAN}")
    adapted = adapt(backbone)
    device, dtype = bridge.model_compute(backbone)
    adapted.model.compute_device, adapted.model.compute_dtype = device, dtype
    bb = adapted.backbone
    family = next(f for f in FAMILIES if f.name == bb.info.family)
    if preset is not None and preset not in family.presets:
        raise ValueError(f"preset '{preset}' is not a checkpoint of the MODEL's family ({family.name}: "
                         f"{', '.join(family.presets)}); pick one of those or auto")
    info = replace(bb.info, path=bridge.model_identity(backbone), preset=preset or bb.info.preset)
    bb = replace(bb, info=info, defaults=family.defaults_for(preset))
    return BackboneHandle(bb, device, dtype, offload=False, comfy=backbone)


AUTO = "auto (the family's)"


class ModelBackbone(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="LongLiveRAG_ModelBackbone", display_name="Model as Backbone (LongLive-RAG)",
            category="LongLive-RAG/loaders",
            description=("A MODEL from ComfyUI's own loaders (Load Diffusion Model, a GGUF loader, LoRAs stacked with "
                         "LoraLoaderModelOnly) as the AR Block Sampler's backbone, with the checkpoint it is: the "
                         "weights tell the family (Wan2.1 1.3B or Wan2.2 TI2V 5B) but not the checkpoint, and a "
                         "frame-wise Causal Forcing++ runs with other settings than a chunk-wise model. A MODEL "
                         "connected straight to the sampler runs as 'auto'. ComfyUI keeps and places the weights."),
            inputs=[
                io.Model.Input("model", tooltip="A Wan2.1 T2V 1.3B or Wan2.2 TI2V 5B diffusion model."),
                io.Combo.Input("preset", options=[AUTO, *dict.fromkeys(p for f in FAMILIES for p in f.presets)],
                               default=AUTO,
                               tooltip="Which checkpoint the MODEL holds (its published run settings). auto: the "
                                       "family's default (Wan2.1: the chunk-wise Self-Forcing / Causal-Forcing / "
                                       "LongLive settings; Wan2.2: LongLive 2.0)."),
            ],
            outputs=[
                BACKBONE.Output(display_name="backbone", tooltip="For the AR Block Sampler's 'backbone' input."),
                io.String.Output(display_name="info", tooltip="The family, the checkpoint and the settings the "
                                                               "sampler takes from it."),
            ],
        )

    @classmethod
    def execute(cls, model, preset) -> io.NodeOutput:
        handle = as_backbone(model, None if preset == AUTO else preset)
        bb = handle.backbone
        info = (f"{describe(model, handle)}\n{bb.info.preset}: AR Block Sampler at auto: {bb.defaults.describe()}"
                + memory_line(bb, handle.dtype, "native"))
        return io.NodeOutput(handle, info, ui=ui.PreviewText(info))


def follow_placement(model: torch.nn.Module) -> None:
    """After ComfyUI placed the weights: each block's feed-forward takes the CPU fast path (the bias added after
    the product, as the pack's own layers do) only where ComfyUI's layer is plain — the same arithmetic as Load
    Backbone's model then, bit for bit on a CPU."""
    for blk in model.blocks:
        blk.plain_ffn = bridge.plain_linear(blk.ffn[0])
