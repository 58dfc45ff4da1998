"""Load Backbone and Load Latent Encoder."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.checkpoint import Backbone, load_backbone
from ..core.config import DTYPES as CORE_DTYPES, default_dtype
from ..core.encoder import RetrievalEncoder, load_encoder
from . import bridge

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


@dataclass
class EncoderHandle:
    """LLRAG_ENCODER: the retrieval encoder, or None for avg_pool descriptors."""
    name: str
    model: RetrievalEncoder | None


class LoadBackbone:
    DESCRIPTION = ("Loads a causal Wan2.1-T2V-1.3B backbone from models/diffusion_models: Self-Forcing, "
                   "Causal-Forcing or LongLive (.pt as released, or .safetensors). The family is detected and shown. "
                   "For LongLive pick longlive_lora.pt (models/loras); it is merged into the weights at load.")
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = ("LLRAG_BACKBONE", "STRING")
    RETURN_NAMES = ("backbone", "info")
    OUTPUT_TOOLTIPS = ("The backbone for AR Block Sampler.", "What was loaded (family, format, layers, dtype).")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "backbone": (bridge.list_models("diffusion_models"), {
                "tooltip": "self_forcing.pt, causal_forcing.pt, longlive_base.pt or a Wan2.1 T2V 1.3B causal "
                           ".safetensors in models/diffusion_models."}),
            "lora": (["none"] + bridge.list_models("loras"), {
                "tooltip": "LongLive only: longlive_lora.pt from models/loras (rank 256). 'none' for Self-Forcing / Causal-Forcing."}),
            "lora_strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 2.0, "step": 0.05,
                                        "tooltip": "Scale of the merged LoRA (1.0 = as trained)."}),
            "weight_dtype": (list(DTYPES), {"default": "auto",
                                            "tooltip": "Compute dtype. auto: bfloat16 on a GPU (fp16 if bf16 is unsupported), float32 on CPU."}),
            "device": (["auto", "cpu"], {"default": "auto",
                                         "tooltip": "auto: ComfyUI's GPU. cpu works but is very slow at real sizes."}),
            "offload": (["keep on device", "offload after sampling"], {
                "default": "offload after sampling",
                "tooltip": "Move the 1.3B weights (~2.8 GB in bf16) back to RAM after each run to free VRAM for the VAE."}),
        }, "optional": {
            "num_heads": ("INT", {"default": 0, "min": 0, "max": 64,
                                  "tooltip": "Attention heads; 0 = dim/128 (12 for Wan 1.3B). Only tiny test models need this."}),
            "compile": ("BOOLEAN", {"default": False,
                                    "tooltip": "torch.compile the layers: fuses the element-wise work after a first run "
                                               "that compiles (on a CPU measured 1.06-1.09x faster)."}),
        }}

    def load(self, backbone, lora, lora_strength, weight_dtype, device, offload, num_heads=0, compile=False):
        dev = bridge.compute_device() if device == "auto" else torch.device("cpu")
        dtype = DTYPES[weight_dtype] or default_dtype(dev)
        lora_path = None if lora == "none" else bridge.model_path("loras", lora)
        bb = load_backbone(bridge.model_path("diffusion_models", backbone), lora=lora_path, lora_strength=lora_strength,
                           num_heads=num_heads or None, dtype=dtype, device="cpu")
        if compile:
            bb.model.compile_blocks()
        info = (f"{bb.info.preset} ({bb.info.format}); {bb.config.num_layers} layers, dim {bb.config.dim}, "
                f"{bb.config.num_heads} heads; stored {bb.info.dtype} -> {str(dtype).replace('torch.', '')}"
                + (f"; LoRA {lora} x{lora_strength} on {bb.info.lora_layers} weights" if lora_path else "")
                + ("; compiled" if compile else ""))
        return BackboneHandle(bb, dev, dtype, offload != "keep on device"), info


class LoadLatentEncoder:
    DESCRIPTION = ("Loads the LongLive-RAG retrieval encoder (ae_latent_mem.pt) from models/retrieval_encoders, "
                   "or uses avg_pool descriptors (spatial mean of each latent frame, no file needed).")
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = ("LLRAG_ENCODER",)
    RETURN_NAMES = ("encoder",)
    OUTPUT_TOOLTIPS = ("Frame descriptor used to find similar past frames.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "encoder": ([AVG_POOL] + bridge.list_models(bridge.ENCODER_FOLDER), {
                "tooltip": "ae_latent_mem.pt (or your own train-encoder checkpoint) in ComfyUI/models/retrieval_encoders/; "
                           "avg_pool needs no file but retrieves less precisely."}),
        }}

    def load(self, encoder):
        if encoder == AVG_POOL:
            return (EncoderHandle("avg_pool", None),)
        return (EncoderHandle(encoder, load_encoder(bridge.model_path(bridge.ENCODER_FOLDER, encoder))),)
