"""The two cache regimes on hand-checkable sizes (1 token per frame, 1 head).

Values carry the global frame index, so the attended context can be read off directly.
"""
import pytest
import torch

import core.context.kv_cache as kv_cache_mod
from core.retrieval.pool import HistoryPool
from core.context.kv_cache import CachePolicy, KVCache
from core.model.rope import apply_rope, rope_table
from core.app.plan import sampling_config

from factory import tiny_model

D = 6  # head_dim: one complex pair per axis


@pytest.fixture
def captured(monkeypatch):
    calls = []

    def fake_attention(q, k, v):
        calls.append((q.clone(), k.clone(), v.clone()))   # k/v may be views of buffers the cache reuses
        return q

    monkeypatch.setattr(kv_cache_mod, "attention", fake_attention)
    return calls


def frame_tensor(frames, seed=None):
    """K or V for frames [F] → [1, F, 1, D]; value = frame index (+ random part for K)."""
    x = torch.tensor(frames, dtype=torch.float64).view(1, -1, 1, 1).expand(1, len(frames), 1, D).clone()
    if seed is not None:
        x = x + torch.randn(x.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return x


def run_block(cache, start, nf=3, forwards=1):
    frames = list(range(start, start + nf))
    cache.begin_block(start, nf)
    for _ in range(forwards):
        cache.attend(0, frame_tensor(frames, 1), frame_tensor(frames, 2), frame_tensor(frames))


def attended_frames(call):
    return call[2][0, :, 0, 0].round().long().tolist()


def make_cache(policy, pool=None):
    on_evict = (lambda frame, ks, vs: pool.append(ks, vs)) if pool is not None else None
    return KVCache(policy, num_layers=1, batch=1, grid_hw=(1, 1), heads=1, head_dim=D,
                   dtype=torch.float64, device=torch.device("cpu"), on_evict=on_evict)


def pool_v(pool, i):
    """Pool entry i's V [layers, B, tokens, heads, D]."""
    return pool.gather(torch.tensor([[i]]), torch.device("cpu"), torch.float64)[1]


def pool_k(pool, i):
    return pool.gather(torch.tensor([[i]]), torch.device("cpu"), torch.float64)[0]


def test_native_window_attends_sink_and_every_cached_frame(captured):
    cache = make_cache(CachePolicy.native(window=12, sink=1))
    for start in range(0, 18, 3):
        run_block(cache, start)
    seen = [attended_frames(c) for c in captured]
    assert seen[0] == [0, 1, 2]
    assert seen[3] == list(range(12))
    assert seen[4] == [0] + list(range(4, 15))        # frames 1..3 evicted, sink kept
    assert seen[5] == [0] + list(range(7, 18))


def test_native_keys_are_stored_after_rope_at_absolute_positions(captured):
    cache = make_cache(CachePolicy.native(window=6, sink=1))
    for start in range(0, 15, 3):
        run_block(cache, start)
    raw = frame_tensor([12, 13, 14], 2)   # the K run_block wrote
    expected = apply_rope(raw, rope_table(torch.tensor([12, 13, 14]), 1, 1, D))
    assert torch.allclose(cache.k[0][:, 3:6], expected)


def test_retrieval_local_part_is_window_minus_sink_minus_k_even_before_anything_is_retrieved(captured):
    cache = make_cache(CachePolicy.retrieval(window=12, sink=1, top_k=6), HistoryPool())
    for start in range(0, 9, 3):
        run_block(cache, start)
    seen = [attended_frames(c) for c in captured]
    assert seen == [[0, 1, 2], [0, 1, 2, 3, 4, 5], [0, 4, 5, 6, 7, 8]]


def test_evicted_frames_enter_the_pool_in_order_as_copies():
    pool = HistoryPool()
    cache = make_cache(CachePolicy.retrieval(window=12, sink=1, top_k=6), pool)
    for start in range(0, 15, 3):
        run_block(cache, start)
    assert len(pool) == 3                          # frames 1, 2, 3 left when block 12..14 started
    first = pool_v(pool, 0).clone()
    for start in range(15, 27, 3):                  # the cache keeps rolling
        run_block(cache, start)
    assert len(pool) == 15
    assert [int(pool_v(pool, i)[0, 0, 0, 0, 0]) for i in range(15)] == list(range(1, 16))   # entry i = global frame 1 + i
    assert torch.equal(pool_v(pool, 0), first)


def test_native_window_keeps_no_pool():
    cache = make_cache(CachePolicy.native(window=6, sink=1), None)
    for start in range(0, 12, 3):
        run_block(cache, start)
    assert cache.filled == 6


def test_repeated_forwards_of_a_block_reuse_its_slots(captured):
    pool = HistoryPool()
    cache = make_cache(CachePolicy.retrieval(window=6, sink=1, top_k=2), pool)
    for start in range(0, 9, 3):
        run_block(cache, start, forwards=5)
    assert cache.filled == 6 and len(pool) == 3
    assert [attended_frames(c) for c in captured[-5:]] == [[0, 6, 7, 8]] * 5


def test_retrieval_rope_is_relative_to_the_cache_and_retrieved_frames_sit_at_position_zero(captured):
    pool = HistoryPool()
    cache = make_cache(CachePolicy.retrieval(window=12, sink=1, top_k=6), pool)
    for start in range(0, 18, 3):
        run_block(cache, start)
    cache.begin_block(18, 3)
    idx = torch.tensor([[2, 0]])
    cache.set_retrieved(*pool.gather(idx, torch.device("cpu"), torch.float64))
    q, k, v = frame_tensor([18, 19, 20], 1), frame_tensor([18, 19, 20], 7), frame_tensor([18, 19, 20])
    cache.attend(0, q, k, v)
    cq, ck, cv = captured[-1]
    # cache after eviction: [0, 7..17] + block 18..20 in slots 9..11; local = last 5 slots
    assert attended_frames(captured[-1]) == [0, 3, 1, 16, 17, 18, 19, 20]
    assert torch.allclose(cq, apply_rope(q, rope_table(torch.tensor([9, 10, 11]), 1, 1, D)))
    retrieved_raw = torch.cat([pool_k(pool, 2)[0], pool_k(pool, 0)[0]], 1)
    assert torch.allclose(ck[:, 1:3], apply_rope(retrieved_raw, rope_table(torch.tensor([0, 0]), 1, 1, D)))
    local_raw = torch.cat([cache.k[0][:, 7:9], k], 1)
    assert torch.allclose(ck[:, 3:], apply_rope(local_raw, rope_table(torch.tensor([7, 8, 9, 10, 11]), 1, 1, D)))
    assert torch.allclose(cache.k[0][:, 9:12], k)   # stored before RoPE


@pytest.mark.parametrize("window, sink, k", [(8, 1, 6), (4, 2, 0)])
def test_a_window_too_small_for_a_block_is_refused(window, sink, k):
    with pytest.raises(ValueError, match="local_attn_size"):
        CachePolicy(window, sink, k, k > 0).check(3)


def test_cache_bytes_count_what_the_cache_holds():
    """GenerationResult.cache_bytes: window frames of K and V per layer (native); the retrieval regime adds
    its context buffers of the same size (kv_cache.py: twice the window's K/V)."""
    from core.sampling.loop import generate
    model = tiny_model(0, dim=128, text_dim=64)
    prompt = torch.randn(1, 512, 64)
    window_kv = 2 * 2 * 12 * (4 * 6) * 128 * 4            # layers · (K, V) · frames · tokens · dim · fp32
    native = generate(model, prompt, 21, (8, 12), 0, sampling_config())
    # plus the block's RoPE tables (a few %)
    assert window_kv < native.cache_bytes < 1.05 * window_kv
    rag = generate(model, prompt, 21, (8, 12), 0, sampling_config(strategy="rag"))
    assert 2 * window_kv < rag.cache_bytes < 2.1 * window_kv


@pytest.mark.parametrize("strategy", ["native", "infinity-rope", "deep-forcing"])
def test_a_sink_larger_than_the_first_blocks(strategy):
    """Until the first eviction the sink size changes nothing (every cached frame is attended either way),
    also while the sink is still filling — Deep Forcing's deep sink of 10 frames is 4 blocks."""
    from core.app.plan import strategy_config
    from core.sampling.loop import generate
    model = tiny_model(0, dim=128, text_dim=64)
    prompt = torch.randn(1, 512, 64)
    runs = [generate(model, prompt, 21, (8, 12), 0, strategy_config(strategy, window=21, sink=sink)).latents
            for sink in (1, 10)]
    assert torch.equal(runs[0], runs[1])
