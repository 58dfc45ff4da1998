"""Decode Long Video and the Retrieval Map node: a VAE's decode as frames, the rendered retrieval log as an image,
with the window band of the log's own blocks."""
import sys

import numpy as np
import pytest
import torch

from pack import N, PACK, load, rag_retrieval, sample

LOG = [{"block": b, "query_frame": 8 * b, "global_frames": [1, 3], "similarities": [0.9, 0.5]} for b in (5, 6, 7)]


@pytest.fixture
def nodes():
    from pack import PACK, N
    return PACK, N


def test_the_retrieval_map_node_draws_the_band_of_the_logs_blocks(nodes):
    pack, n = nodes
    sampling = sys.modules[f"{pack.__name__}.nodes.sampling"]
    render = sys.modules[f"{pack.__name__}.core.retrieval.map"].render_retrieval_map
    log = sampling.RetrievalLog(tuple(LOG), 64, 8, 32, 8, "rag")
    (img,) = n["LongLiveRAG_RetrievalMap"].execute(log, 400, 300).args
    got = (img[0] * 255).round().to(torch.uint8).numpy()
    assert np.array_equal(got, render(LOG, 64, 8, 32, 8, size_px=(400, 300)))
    assert not np.array_equal(got, render(LOG, 64, 8, 32, 3, size_px=(400, 300)))


def test_decode_without_the_wan_vae_uses_the_vae_and_returns_frames():
    class FakeVAE:
        def decode(self, z):   # ComfyUI VAE.decode: [B, T_video, H, W, 3]
            b, _, t, h, w = z.shape
            return torch.rand(b, 4 * (t - 1) + 1, 8 * h, 8 * w, 3)

    (images,) = N["LongLiveRAG_Decode"].execute(FakeVAE(), {"samples": torch.zeros(1, 16, 5, 4, 6)}, 2).args
    assert images.shape == (17, 32, 48, 3)
    with pytest.raises(ValueError, match=r"Wan video latent \[B, 16 or 48, T, H, W\]"):
        N["LongLiveRAG_Decode"].execute(FakeVAE(), {"samples": torch.zeros(1, 4, 8, 8)}, 2)


def test_retrieval_map_is_the_rendered_log_as_an_image(models_dir):
    render = sys.modules[f"{PACK.__name__}.core.retrieval.map"].render_retrieval_map
    backbone, _ = load(models_dir)
    _, log = sample(backbone, rag_retrieval("avg_pool (no file)"), length=97)
    assert len(log.records) > 0
    (img,) = N["LongLiveRAG_RetrievalMap"].execute(log, 600, 400).args
    expected = render(list(log.records), log.num_frames, log.sink, log.window, log.frames_per_block,
                      title="LongLive-RAG retrieval map", size_px=(600, 400))
    assert img.shape == (1, 400, 600, 3) and img.dtype == torch.float32
    assert torch.equal((img[0] * 255).round().to(torch.uint8), torch.from_numpy(expected))
    empty = render([], log.num_frames, log.sink, log.window, log.frames_per_block, title="LongLive-RAG retrieval map",
                   size_px=(600, 400))
    assert (torch.from_numpy(expected).float() - torch.from_numpy(empty).float()).abs().sum() > 0  # the points
