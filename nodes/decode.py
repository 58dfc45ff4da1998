"""Decode (chunked, seamless) and Retrieval Map."""
from __future__ import annotations

import numpy as np
import torch

from ..core.retrieval_map import render_retrieval_map
from . import bridge
from .bridge import io
from .sampling import RETRIEVAL_LOG, RetrievalLog


@torch.inference_mode()
def decode_video(vae, samples: torch.Tensor, chunk_frames: int) -> torch.Tensor:
    """Raw Wan latents [B, 16, T, H, W] → IMAGE [B·T_video, 8H, 8W, 3] on the CPU.

    With ComfyUI's Wan VAE the causal decoder runs latent frame by latent frame, keeping its
    temporal cache across chunks (so chunk borders are exact, not blended) and moving every
    decoded chunk to the CPU: the GPU never holds the whole video.
    """
    parts = bridge.wan_streaming_decoder(vae)
    if parts is None:
        images = vae.decode(samples)
        return images.reshape(-1, *images.shape[-3:]).cpu()
    fsm, count_conv3d = parts
    b, _, t, h, w = samples.shape
    chunk = max(1, chunk_frames)
    bridge.load_vae_for_decode(vae, (1, 16, chunk, h, w))
    videos = []
    for bi in range(b):
        cache = [None] * count_conv3d(fsm.decoder)
        pieces = []
        for start in range(0, t, chunk):
            z = samples[bi:bi + 1, :, start:start + chunk].to(vae.device, vae.vae_dtype)
            x = fsm.conv2(z)
            for i in range(x.shape[2]):
                out = fsm.decoder(x[:, :, i:i + 1], feat_cache=cache, feat_idx=[0])
                pieces.append(vae.process_output(out.float()).cpu())
            bridge.check_interrupted()
        videos.append(torch.cat(pieces, 2)[0].movedim(0, -1))        # [T_video, H, W, 3]
    return torch.cat(videos)


class Decode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="LongLiveRAG_Decode", display_name="Decode Long Video (LongLive-RAG)", category="LongLive-RAG",
            description=("Decodes a long Wan video latent with the native VAE (VAELoader: wan_2.1_vae.safetensors) "
                         "in temporal chunks: exact at chunk borders (the causal cache is carried over) and without "
                         "holding the whole video on the GPU. IMAGE out → CreateVideo / SaveVideo / SaveWEBM "
                         "(16 fps)."),
            inputs=[
                io.Vae.Input("vae", tooltip="Wan2.1 VAE from VAELoader (wan_2.1_vae.safetensors)."),
                io.Latent.Input("samples", tooltip="Wan latent from AR Block Sampler."),
                io.Int.Input("chunk_frames", default=8, min=1, max=256,
                             tooltip="Latent frames per GPU chunk (8 ≈ 29 video frames). Smaller uses less VRAM; "
                                     "the result is the same for any value."),
            ],
            outputs=[io.Image.Output(display_name="images", tooltip="Video frames [N, H, W, 3] in 0..1 (N = "
                                                                     "4·(latent frames − 1) + 1 per video).")],
        )

    @classmethod
    def execute(cls, vae, samples, chunk_frames) -> io.NodeOutput:
        z = samples["samples"]
        if z.dim() != 5 or z.shape[1] != 16:
            raise ValueError(f"samples must be a Wan2.1 video latent [B, 16, T, H, W]; got {list(z.shape)}")
        return io.NodeOutput(decode_video(vae, z, chunk_frames))


class RetrievalMap(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="LongLiveRAG_RetrievalMap", display_name="Retrieval Map (LongLive-RAG)", category="LongLive-RAG",
            description=("Plots the retrieval log: for each block (x), the past frames it retrieved (y), coloured by "
                         "cosine similarity, with the sliding window shaded. Points far below the band are memories "
                         "the plain window had forgotten. Dotted red lines: where each prompt of a Prompt Schedule "
                         "begins."),
            inputs=[
                RETRIEVAL_LOG.Input("retrieval_log", tooltip="From AR Block Sampler."),
                io.Int.Input("width", default=900, min=300, max=4096, step=10, tooltip="Plot width in pixels."),
                io.Int.Input("height", default=620, min=200, max=4096, step=10, tooltip="Plot height in pixels."),
            ],
            outputs=[io.Image.Output(display_name="image", tooltip="The retrieval map as one image; connect to Save "
                                                                    "Image or Preview Image.")],
        )

    @classmethod
    def execute(cls, retrieval_log: RetrievalLog, width, height) -> io.NodeOutput:
        mode = retrieval_log.mode
        title = "LongLive-RAG retrieval map" if mode == "rag" else f"{'native window' if mode == 'native' else mode} (no retrieval)"
        img = render_retrieval_map(list(retrieval_log.records), retrieval_log.num_frames, retrieval_log.sink,
                                   retrieval_log.window, title=title, size_px=(width, height),
                                   switches=list(getattr(retrieval_log, "switches", ())))
        return io.NodeOutput(torch.from_numpy(np.ascontiguousarray(img)).float().div(255.0).unsqueeze(0))
