"""Retrieved frames decoded one layer at a time (core/retrieval/lazy.py): what a run with shared context buffers
hands the cache. The same video as one context buffer per layer for every pool storage, tier and read ahead, and
what the gather returns layer by layer is what it returns whole."""
import pytest
import torch

from core.app.plan import strategy_config
from core.retrieval.config import PoolConfig, RetrievalConfig
from core.retrieval.pool import HistoryPool
from core.sampling.loop import generate
from core.sampling.memory import MemorySettings

from factory import tiny_model


@pytest.mark.parametrize("storage", ["kv", "kv-fp8", "kv-half"])
@pytest.mark.parametrize("location", ["host", "disk"])
def test_layer_by_layer_is_the_whole_gather(storage, location, tmp_path):
    pool = HistoryPool(PoolConfig(location=location, storage=storage, directory=str(tmp_path)))
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        pool.append([torch.randn(1, 6, 2, 8, generator=g) for _ in range(3)],
                    [torch.randn(1, 6, 2, 8, generator=g) for _ in range(3)])
    idx = torch.tensor([[4, 0, 2]])
    k, v = pool.gather(idx, "cpu", torch.float32)
    lk, lv = pool.gather(idx, "cpu", torch.float32, lazy=True)
    assert lk.shape == k.shape and len(lv) == 3
    for layer in range(3):
        assert torch.equal(lk[layer], k[layer]) and torch.equal(lv[layer], v[layer])
    pool.close()


@pytest.mark.parametrize("prefetch", ["on", "off"])
def test_shared_context_runs_are_the_per_layer_video(prefetch):
    model = tiny_model(0, dim=64, layers=2, heads=2, text_dim=32)
    emb = torch.randn(1, 7, 32, generator=torch.Generator().manual_seed(1))
    for storage in ("kv", "kv-fp8"):
        cfg = strategy_config("rag", retrieval=RetrievalConfig(top_k=3, recent_exclude=1, prefetch=prefetch,
                                                               pool=PoolConfig(storage=storage)))
        with torch.no_grad():
            per_layer = generate(model, emb, 36, (4, 6), 0, cfg, memory=MemorySettings("per-layer", "exact", 0))
            shared = generate(model, emb, 36, (4, 6), 0, cfg, memory=MemorySettings("shared", "exact", 0))
        assert per_layer.retrieval_log and torch.equal(per_layer.latents, shared.latents)
