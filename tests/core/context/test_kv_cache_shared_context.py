"""Shared context buffers: one buffer every layer refills, the same attention inputs as one buffer per layer."""
import pytest
import torch

import core.context.kv_cache as kv_cache_mod
from core.app.plan import strategy_config
from core.context.kv_cache import KVCache
from core.context.strategies import NAMES as STRATEGIES
from core.sampling.loop import generate

from factory import tiny_model


REAL_INIT = KVCache.__init__


def run(monkeypatch, strategy: str, context: str):
    caches = []
    real = REAL_INIT

    def init(self, *args, **kw):
        real(self, *args, **{**kw, "context": context})
        caches.append(self)

    monkeypatch.setattr(KVCache, "__init__", init)
    torch.manual_seed(0)
    model = tiny_model(0, layers=3)
    embeds = torch.randn(1, 5, model.cfg.text_dim)
    res = generate(model, embeds, 27, (4, 6), 11, strategy_config(strategy))
    return res, caches[0]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_shared_context_buffers_give_bit_identical_videos(monkeypatch, strategy):
    exact, per_layer = run(monkeypatch, strategy, "per-layer")
    shared, one = run(monkeypatch, strategy, "shared")
    assert torch.equal(exact.latents, shared.latents)
    if per_layer._ctx_k:                          # the strategies that attend through context buffers
        assert (len(per_layer._ctx_k), len(one._ctx_k)) == (3, 1)
        window_kv = 2 * per_layer.k[0].untyped_storage().nbytes()     # one layer's window of K and V
        retrieved_kv = window_kv * one.policy.top_k // one.policy.window
        # per-layer: 3 layers' windows + 3 contexts; shared: 3 windows + 1 context + 3 layers' retrieved frames
        assert exact.cache_bytes - shared.cache_bytes == 2 * window_kv - 3 * retrieved_kv
    if strategy == "rag":
        assert exact.retrieval_log and len(one._ret_k) == 3 and one._ret_k[0].shape[1] == one.policy.top_k * one.tokens


def test_a_layer_refills_the_shared_buffer_only_when_another_layer_used_it(monkeypatch):
    fills = []
    real = KVCache._fill
    monkeypatch.setattr(KVCache, "_fill", lambda self, layer, dst, a, b: fills.append(layer) or real(self, layer, dst, a, b))
    from core.context.kv_cache import CachePolicy
    cache = KVCache(CachePolicy.retrieval(window=12, sink=1, top_k=0), 2, 1, (1, 1), 1, 6, torch.float64,
                    torch.device("cpu"), context="shared")
    monkeypatch.setattr(kv_cache_mod, "attention", lambda q, k, v: q)
    for start in range(0, 15, 3):
        cache.begin_block(start, 3)
        fills.clear()
        for _ in range(2):
            for layer in (0, 1):
                q, k, v = (torch.randn(1, 3, 1, 6, dtype=torch.float64) for _ in range(3))
                cache.attend(layer, q, k, v)
        # two forwards × two layers: every forward of a layer follows the other layer's, so each refills
        assert fills == [0, 0, 1, 1, 0, 0, 1, 1] or fills == [0, 1, 0, 1], (start, fills)


def test_an_unknown_context_mode_is_refused():
    from core.context.kv_cache import CachePolicy
    with pytest.raises(ValueError, match="context buffers 'some' are not one of auto, per-layer, shared"):
        KVCache(CachePolicy.native(6, 1), 1, 1, (1, 1), 1, 6, torch.float32, torch.device("cpu"), context="some")


@pytest.mark.parametrize("free, shared", [(None, False), (10**12, False), (1, True)])
def test_auto_shares_the_context_buffer_when_the_device_has_no_room_for_one_per_layer(monkeypatch, free, shared):
    """auto: one buffer per layer when the device has 4× their extra bytes free (or cannot say), else one shared."""
    from core.context.kv_cache import CachePolicy
    monkeypatch.setattr(kv_cache_mod, "device_available", lambda device: free)
    cache = KVCache(CachePolicy.retrieval(window=12, sink=1, top_k=0), 3, 1, (1, 1), 1, 6, torch.float64,
                    torch.device("cpu"), context="auto")
    monkeypatch.setattr(kv_cache_mod, "attention", lambda q, k, v: q)
    cache.begin_block(0, 3)
    cache.attend(0, *(torch.randn(1, 3, 1, 6, dtype=torch.float64) for _ in range(3)))
    assert cache.shared_context == shared and len(cache._ctx_k) == (1 if shared else 3)
