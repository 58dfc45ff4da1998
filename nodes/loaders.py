"""Load Backbone and Load Latent Encoder."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.formats import Backbone, is_fp8_file, load_backbone, resolve_weights
from ..core.model.fp8_linear import WEIGHTS
from ..core.app.fact_text import fragment, size
from ..core.app.plan import sampling_config
from ..core.sampling.budget import device_bytes
from ..core.sampling.memory import EXACT, MemorySettings
from ..core.sampling.config import DTYPES as CORE_DTYPES, default_dtype
from ..core.retrieval.encoder import RetrievalEncoder, load_encoder
from . import bridge
from .bridge import io, ui

CATEGORY = "LongLive-RAG/loaders"
AVG_POOL = "avg_pool (no file)"
DTYPES = {"auto": None, **CORE_DTYPES}


@dataclass
class BackboneHandle:
    """LLRAG_BACKBONE: the loaded transformer plus where it should run."""
    backbone: Backbone
    device: torch.device
    dtype: torch.dtype
    offload: bool
    comfy: object = None        # the ComfyUI MODEL the backbone runs on (nodes/comfy_model.py), else None


@dataclass
class EncoderHandle:
    """LLRAG_ENCODER: the retrieval encoder, or None for avg_pool descriptors."""
    name: str
    model: RetrievalEncoder | None


BACKBONE = io.Custom("LLRAG_BACKBONE")      # carries a BackboneHandle
ENCODER = io.Custom("LLRAG_ENCODER")        # carries an EncoderHandle


class LoadBackbone(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="LongLiveRAG_LoadBackbone", display_name="Load Backbone (LongLive-RAG)", category=CATEGORY,
            description=("Loads an autoregressive video backbone from models/diffusion_models and detects its family: "
                         "Wan2.1-T2V-1.3B (Self-Forcing, Causal-Forcing, LongLive; .pt as released or .safetensors) "
                         "or Wan2.2-TI2V-5B (LongLive 2.0's model_bf16.pt, or a Wan2.2 TI2V 5B .safetensors). The "
                         "'info' output (also shown on the node) names the family and the settings the AR Block "
                         "Sampler takes from it when its widgets are left at auto. A LoRA (LongLive's "
                         "longlive_lora.pt, LongLive 2.0's lora_checkpoint.pt) is merged into the weights at load."),
            inputs=[
                io.Combo.Input("backbone", options=bridge.list_models("diffusion_models"),
                               tooltip="self_forcing.pt, causal_forcing.pt, longlive_base.pt or a Wan2.1 T2V 1.3B "
                                       "causal .safetensors; LongLive 2.0's model_bf16.pt (merged, no LoRA needed) or "
                                       "generator_checkpoint.pt (with its LoRA); in models/diffusion_models."),
                io.Combo.Input("lora", options=["none"] + bridge.list_models("loras"),
                               tooltip="LongLive: longlive_lora.pt (rank 256) with longlive_base.pt; LongLive 2.0: "
                                       "lora_checkpoint.pt (rank 128) with generator_checkpoint.pt; from models/loras. "
                                       "'none' for Self-Forcing, Causal-Forcing and LongLive 2.0's model_bf16.pt. A "
                                       "LoRA of the other family is refused by name."),
                io.Float.Input("lora_strength", default=1.0, min=0.0, max=2.0, step=0.05,
                               tooltip="Scale of the merged LoRA (1.0 = as trained)."),
                io.Combo.Input("weight_dtype", options=list(DTYPES), default="auto",
                               tooltip="Compute dtype. auto: bfloat16 on a GPU (fp16 if bf16 is unsupported), "
                                       "float32 on CPU."),
                io.Combo.Input("device", options=["auto", "cpu"], default="auto",
                               tooltip="auto: ComfyUI's GPU. cpu works but is very slow at real sizes."),
                io.Combo.Input("offload", options=["keep on device", "offload after sampling"],
                               default="offload after sampling",
                               tooltip=f"Move the weights (in bf16: {fragment('weights')}) back to RAM after each "
                                       "run to free VRAM for the VAE."),
                io.Int.Input("num_heads", default=0, min=0, max=64, optional=True,
                             tooltip=f"Attention heads; 0 = dim / the family's head size ({fragment('heads')}). "
                                     "Only tiny test models need this."),
                io.Boolean.Input("compile", default=False, optional=True,
                                 tooltip="torch.compile the layers: fuses the element-wise work after a first run "
                                         "that compiles (on a CPU measured 1.06-1.09x faster)."),
                io.Combo.Input("weights", options=list(WEIGHTS), default="auto", optional=True,
                               tooltip="How the block weights live on the GPU: native (the compute dtype), fp8 "
                                       "(an fp8 file's weights kept as stored, a bf16 file's quantised with a scale "
                                       "per output channel: about half the bytes, a small change to the video). "
                                       "auto: fp8 for an fp8 file on a GPU, else native."),
            ],
            outputs=[
                BACKBONE.Output(display_name="backbone", tooltip="The backbone for AR Block Sampler (and, optionally, "
                                                                 "Prompt Schedule)."),
                io.String.Output(display_name="info", tooltip="What was loaded (family, format, layers, dtype) and "
                                                               "the settings the sampler takes from the family."),
            ],
        )

    @classmethod
    def execute(cls, backbone, lora, lora_strength, weight_dtype, device, offload, num_heads=0,
                compile=False, weights="auto") -> io.NodeOutput:
        dev = bridge.compute_device() if device == "auto" else torch.device("cpu")
        dtype = DTYPES[weight_dtype] or default_dtype(dev)
        lora_path = None if lora == "none" else bridge.model_path("loras", lora)
        path = bridge.model_path("diffusion_models", backbone)
        weights = resolve_weights(weights, file_fp8=is_fp8_file(path), device=dev)
        bb = load_backbone(path, lora=lora_path, lora_strength=lora_strength, num_heads=num_heads or None,
                           dtype=dtype, device="cpu", weights=weights)
        if compile:
            bb.model.compile_blocks()
        info = (f"{bb.info.preset} ({bb.info.format}), {bb.info.family} family; {bb.config.num_layers} layers, dim "
                f"{bb.config.dim}, {bb.config.num_heads} heads; stored {bb.info.dtype} -> "
                f"{str(dtype).replace('torch.', '')}"
                + (f"; LoRA {lora} x{lora_strength} on {bb.info.lora_layers} weights" if lora_path else "")
                + ("; compiled" if compile else "") + ("; fp8 weights" if weights == "fp8" else "")
                + f"\nAR Block Sampler at auto: {bb.defaults.describe()}" + memory_line(bb, dtype, weights))
        return io.NodeOutput(BackboneHandle(bb, dev, dtype, offload != "keep on device"), info, ui=ui.PreviewText(info))


def memory_line(bb: Backbone, dtype: torch.dtype, weights: str) -> str:
    """The device memory of a run at the family's published size with this backbone (the estimate
    benchmarks/vram.py checks against the real-size dry run), exact and with the lossless shared context."""
    family, hw = bb.defaults, bb.defaults.latent_hw
    native = device_bytes(bb.model, sampling_config(family), hw, 1, dtype, EXACT)
    w, h = family.latent.video_size(hw)
    if family.sampler == "rolling":       # no retrieval with the rolling sampler (core/sampling/samplers/rolling.py)
        return f"\nGPU memory of a run at {w}×{h} (estimate): {size(native.total)} (the rolling sampler, native)"
    rag, shared = (device_bytes(bb.model, sampling_config(family, strategy="rag"), hw, 1, dtype, m)
                   for m in (EXACT, MemorySettings("shared", "exact", 0)))
    return (f"\nGPU memory of a run at {w}×{h} (estimate): native {size(native.total)}, retrieval {size(rag.total)}"
            f" ({size(shared.total)} with shared context buffers; the sampler's memory settings go lower)")


class LoadLatentEncoder(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="LongLiveRAG_LoadLatentEncoder", display_name="Load Latent Encoder (LongLive-RAG)",
            category=CATEGORY,
            description=("Loads the LongLive-RAG retrieval encoder (ae_latent_mem.pt, for the Wan 1.3B backbones) from "
                         "models/retrieval_encoders, or uses avg_pool descriptors (spatial mean of each latent frame, "
                         "no file needed). No encoder has been released for LongLive 2.0 (48-channel Wan2.2 latents): "
                         "use avg_pool, or train one (python -m core build-corpus, then train-encoder)."),
            inputs=[
                io.Combo.Input("encoder", options=[AVG_POOL] + bridge.list_models(bridge.ENCODER_FOLDER),
                               tooltip="ae_latent_mem.pt (Wan 1.3B backbones) or your own train-encoder checkpoint "
                                       "in ComfyUI/models/retrieval_encoders/; avg_pool needs no file but retrieves "
                                       "less precisely (LongLive 2.0: avg_pool or an encoder you trained for it)."),
            ],
            outputs=[ENCODER.Output(display_name="encoder",
                                    tooltip="Frame descriptor used to find similar past frames.")],
        )

    @classmethod
    def execute(cls, encoder) -> io.NodeOutput:
        if encoder == AVG_POOL:
            return io.NodeOutput(EncoderHandle("avg_pool", None))
        return io.NodeOutput(EncoderHandle(encoder, load_encoder(bridge.model_path(bridge.ENCODER_FOLDER, encoder))))
