"""The KV cache's speed paths compute what the plain paths compute: one contiguous attention context per layer, the
native window read in place, RoPE of the stable context once per block (the model's: tests/core/model/)."""
import torch

import core.context.kv_cache as kv_cache_mod
from core.context.kv_cache import CachePolicy, KVCache
from core.model.rope import apply_rope, rope_table


def run_block(cache, start, forwards=4, n=3, d=6):
    cache.begin_block(start, n)
    g = torch.Generator().manual_seed(start)
    for _ in range(forwards):
        q, k, v = (torch.randn(1, n, 1, d, generator=g, dtype=torch.float64) for _ in range(3))
        cache.attend(0, q, k, v)


def reference_context(cache, k_block):
    """[sink | local] keys rotated at their slot positions, built the plain way (concatenation)."""
    (s0, s1), (l0, l1) = cache._sink, cache._local
    raw = torch.cat([cache.k[0][:, s0:s1], cache.k[0][:, l0:cache.block_slot], k_block], 1)
    slots = torch.cat([torch.arange(s0, s1), torch.arange(l0, l1)])
    return apply_rope(raw, rope_table(slots, 1, 1, 6))


def test_the_retrieval_context_is_one_buffer_equal_to_the_concatenated_rotated_frames(monkeypatch):
    seen = []
    monkeypatch.setattr(kv_cache_mod, "attention", lambda q, k, v: seen.append((k, v)) or q)
    cache = KVCache(CachePolicy.retrieval(window=12, sink=1, top_k=6), 1, 1, (1, 1), 1, 6, torch.float64,
                    torch.device("cpu"))
    for start in range(0, 30, 3):
        run_block(cache, start, forwards=1)
    k_block = cache.k[0][:, cache.block_slot:cache.filled].clone()
    ks, vs = seen[-1]
    assert ks.is_contiguous() and ks.shape[1] == 6    # sink 1 + local 5, nothing retrieved here
    assert torch.allclose(ks, reference_context(cache, k_block))


def test_native_attention_reads_the_window_itself(monkeypatch):
    seen = []
    monkeypatch.setattr(kv_cache_mod, "attention", lambda q, k, v: seen.append((k, v)) or q)
    cache = KVCache(CachePolicy.native(window=12, sink=1), 1, 1, (1, 1), 1, 6, torch.float64, torch.device("cpu"))
    for start in range(0, 18, 3):
        run_block(cache, start, forwards=1)
    ks, vs = seen[-1]
    assert ks.data_ptr() == cache.k[0].data_ptr() and vs.data_ptr() == cache.v[0].data_ptr()


def test_the_stable_context_is_rotated_once_per_block_and_layer(monkeypatch):
    monkeypatch.setattr(kv_cache_mod, "attention", lambda q, k, v: q)
    lengths = []
    real = kv_cache_mod.apply_rope
    monkeypatch.setattr(kv_cache_mod, "apply_rope", lambda x, table, out=None: lengths.append(x.shape[1]) or real(x, table, out))
    cache = KVCache(CachePolicy.retrieval(window=12, sink=1, top_k=6), 1, 1, (1, 1), 1, 6, torch.float64,
                    torch.device("cpu"))
    for start in range(0, 27, 3):
        run_block(cache, start)
    lengths.clear()
    run_block(cache, 27, forwards=4)
    # first forward: sink (1) and the older local frames (2) once, then per forward the block's k and q (3 each)
    assert sorted(lengths) == sorted([1, 2] + [3, 3] * 4)
