"""Decode (chunked, seamless) and Retrieval Map."""
from __future__ import annotations

import numpy as np
import torch

from ..core.latents.format import LatentFormat, channel_counts, format_for_channels, formats
from ..core.app.fact_text import fragment
from ..core.retrieval.map import render_retrieval_map
from . import bridge
from .bridge import io
from .sampling import RETRIEVAL_LOG, RetrievalLog


@torch.inference_mode()
def decode_video(vae, samples: torch.Tensor, chunk_frames: int) -> torch.Tensor:
    """Raw Wan latents [B, C, T, H, W] (Wan2.1: 16 channels, 8×; Wan2.2: 48, 16×) → IMAGE [B·T_video, H', W', 3]
    on the CPU.

    With ComfyUI's Wan2.1 or Wan2.2 VAE the causal decoder runs latent frame by latent frame, keeping
    its temporal cache across chunks (so chunk borders are exact, not blended) and moving every
    decoded chunk to the CPU: the GPU never holds the whole video.
    """
    stream = bridge.wan_streaming_decoder(vae)
    if stream is None:
        images = vae.decode(samples)
        return images.reshape(-1, *images.shape[-3:]).cpu()
    b, c, t, h, w = samples.shape
    chunk = max(1, chunk_frames)
    bridge.load_vae_for_decode(vae, (1, c, chunk, h, w))
    videos = []
    for bi in range(b):
        cache = stream.new_cache()
        pieces = []
        for start in range(0, t, chunk):
            pieces.append(stream.decode(samples[bi:bi + 1, :, start:start + chunk], cache, first=start == 0))
            bridge.check_interrupted()
        videos.append(torch.cat(pieces, 2)[0].movedim(0, -1))        # [T_video, H', W', 3]
    return torch.cat(videos)


def latent_format_of(vae, z: torch.Tensor) -> LatentFormat:
    """The samples' latent format, checked against the VAE's (a Wan2.1 VAE cannot decode Wan2.2 latents)."""
    fmt = format_for_channels(z.shape[1]) if z.dim() == 5 else None
    if fmt is None:
        names = " / ".join(f.name for f in formats())
        raise ValueError(f"samples must be a Wan video latent [B, {channel_counts()}, T, H, W] ({names}, from the AR "
                         f"Block Sampler); got {list(z.shape)}")
    channels = bridge.vae_latent_channels(vae)
    if channels is not None and channels != fmt.channels:
        theirs = format_for_channels(channels)
        what = f"{theirs.vae} ({theirs.vae_file})" if theirs is not None else f"a {channels}-channel VAE"
        raise ValueError(f"samples are {fmt.name} latents ({fmt.channels} channels) but the VAE is {what}: load "
                         f"{fmt.vae_file} in the VAELoader that feeds this node")
    return fmt


class Decode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="LongLiveRAG_Decode", display_name="Decode Long Video (LongLive-RAG)", category="LongLive-RAG",
            description=("Decodes a long Wan video latent with ComfyUI's own VAE (VAELoader: wan_2.1_vae.safetensors "
                         "for the Wan 1.3B backbones, wan2.2_vae.safetensors for LongLive 2.0) in temporal chunks: "
                         "exact at chunk borders (the causal cache is carried over) and without holding the whole "
                         "video on the GPU. IMAGE out → CreateVideo / SaveVideo / SaveWEBM at the backbone's rate "
                         f"({fragment('fps')})."),
            inputs=[
                io.Vae.Input("vae", tooltip="The backbone's VAE from VAELoader: wan_2.1_vae.safetensors (Wan2.1 "
                                            "latents) or wan2.2_vae.safetensors (LongLive 2.0's Wan2.2 latents); "
                                            f"latent channels: {fragment('channels')}."),
                io.Latent.Input("samples", tooltip="Wan latent from AR Block Sampler."),
                io.Int.Input("chunk_frames", default=8, min=1, max=256,
                             tooltip="Latent frames per GPU chunk (8 ≈ 29 video frames). Smaller uses less VRAM; "
                                     "the result is the same for any value."),
            ],
            outputs=[io.Image.Output(display_name="images", tooltip="Video frames [N, H, W, 3] in 0..1 (N = "
                                                                     f"{fragment('time-stride')}·(latent frames − 1) "
                                                                     "+ 1 per video).")],
        )

    @classmethod
    def execute(cls, vae, samples, chunk_frames) -> io.NodeOutput:
        z = samples["samples"]
        latent_format_of(vae, z)
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
        name = retrieval_log.strategy
        title = ("LongLive-RAG retrieval map" if name == "rag"
                 else f"{'native window' if name == 'native' else name} (no retrieval)")
        img = render_retrieval_map(list(retrieval_log.records), retrieval_log.num_frames, retrieval_log.sink,
                                   retrieval_log.window, retrieval_log.frames_per_block, title=title,
                                   size_px=(width, height),
                                   switches=list(getattr(retrieval_log, "switches", ())))
        return io.NodeOutput(torch.from_numpy(np.ascontiguousarray(img)).float().div(255.0).unsqueeze(0))
