"""The speed paths compute what the plain paths compute: cache-only context pass, one contiguous
attention context per layer, RoPE of the stable context once per block, float32 rotation."""
import pytest
import torch

import core.context.kv_cache as kv_cache_mod
import core.model.rope as rope_mod
from core.context.kv_cache import CachePolicy, KVCache
from core.model.rope import apply_rope, rope_table

from conftest import tiny_model

POLICIES = [CachePolicy.native(window=12, sink=1), CachePolicy.retrieval(window=12, sink=1, top_k=6)]


def make_cache(model, policy, grid=(2, 3)):
    c = model.cfg
    return KVCache(policy, c.num_layers, 1, grid, c.num_heads, c.head_dim, torch.float32, torch.device("cpu"))


@pytest.mark.parametrize("policy", POLICIES, ids=["native", "retrieval"])
def test_write_cache_stores_exactly_the_kv_a_full_forward_stores(policy, one_thread):
    model = tiny_model()
    text = model.encode_text(torch.randn(1, 7, 32, generator=torch.Generator().manual_seed(1)))
    full, only = make_cache(model, policy), make_cache(model, policy)
    for start in range(0, 18, 3):          # past the first eviction, so slots have shifted
        x = torch.randn(1, 16, 3, 4, 6, generator=torch.Generator().manual_seed(start))
        t = torch.zeros(1, 3)
        for cache in (full, only):
            cache.begin_block(start, 3)
        model(x, t, text, full)
        assert model.write_cache(x, t, text, only) is None
        assert all(torch.equal(a, b) for a, b in zip(full.k + full.v, only.k + only.v))


def test_write_cache_skips_the_head():
    model = tiny_model()
    calls = []
    model.head.register_forward_hook(lambda *a: calls.append(1))
    cache = make_cache(model, POLICIES[0])
    cache.begin_block(0, 3)
    model.write_cache(torch.randn(1, 16, 3, 4, 6), torch.zeros(1, 3), model.encode_text(torch.randn(1, 7, 32)), cache)
    assert calls == []


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


def test_float32_rotation_is_within_an_ulp_of_the_float64_reference():
    x = torch.randn(2, 96, 4, 128, generator=torch.Generator().manual_seed(0))
    table = rope_table(torch.arange(3, 4), 8, 12, 128)
    ref = (torch.view_as_complex(x.double().unflatten(-1, (64, 2))) * table)
    ref = torch.view_as_real(ref).flatten(3)
    got = apply_rope(x, table.to(rope_mod.compute_dtype(x.dtype)))
    assert got.dtype == torch.float32
    assert ((got.double() - ref).abs() <= 2.5e-7 * ref.abs().clamp_min(1.0)).all()


def test_rotation_into_a_slice_of_a_bigger_buffer_leaves_the_rest_alone():
    x = torch.randn(2, 6, 2, 8)
    table = rope_table(torch.arange(6), 1, 1, 8)
    buf = torch.zeros(2, 10, 2, 8)
    apply_rope(x, table, out=buf[:, 2:8])
    assert torch.equal(buf[:, 2:8], apply_rope(x, table))
    assert not buf[:, :2].any() and not buf[:, 8:].any()


def test_compiled_blocks_give_the_eager_result(one_thread):
    model = tiny_model()
    text = model.encode_text(torch.randn(1, 7, 32, generator=torch.Generator().manual_seed(1)))
    x, t = torch.randn(1, 16, 3, 4, 6, generator=torch.Generator().manual_seed(2)), torch.full((1, 3), 500.0)
    caches = [make_cache(model, POLICIES[1]) for _ in range(2)]
    for c in caches:
        c.begin_block(0, 3)
    eager = model(x, t, text, caches[0])
    compiled = tiny_model().compile_blocks()(x, t, text, caches[1])
    assert torch.allclose(compiled, eager, rtol=1e-4, atol=1e-5)


def test_fused_rms_norm_matches_the_written_out_formula():
    from core.model.transformer import RMSNorm
    norm = RMSNorm(64, 1e-6)
    norm.weight.data = torch.randn(64, generator=torch.Generator().manual_seed(0))
    x = torch.randn(2, 50, 64, generator=torch.Generator().manual_seed(1)) * 3
    want = (x.double() * torch.rsqrt(x.double().pow(2).mean(-1, keepdim=True) + 1e-6) * norm.weight.double())
    torch.testing.assert_close(norm(x).double(), want, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(norm(x.bfloat16()).double(), want, rtol=2e-2, atol=2e-2)   # the written-out path


def test_merged_prompt_padding_gives_the_attention_over_every_padded_row():
    """Trailing identical rows (the padding) kept once with a log-count logit bias: the same attention."""
    from core.model.attention import attention_heads_first
    from core.model.transformer import merge_padding
    g = torch.Generator().manual_seed(0)
    rows = torch.cat([torch.randn(2, 7, 8, generator=g), torch.zeros(2, 57, 8)], 1)
    rows[1, 7:9] = torch.randn(2, 8, generator=g)          # sample 1's prompt is 2 tokens longer
    kept, bias = merge_padding(rows)
    assert kept.shape[1] == 10 and bias[0, 0, 0, -1].item() == pytest.approx(torch.log(torch.tensor(55.0)).item())
    assert (bias[..., :-1] == 0).all()
    proj_k, proj_v = torch.randn(8, 16, generator=g, dtype=torch.float64), torch.randn(8, 16, generator=g, dtype=torch.float64)
    q = torch.randn(2, 5, 2, 8, generator=g, dtype=torch.float64)
    heads = lambda x: x.unflatten(-1, (2, 8)).transpose(1, 2)       # [B, L, 16] -> [B, 2, L, 8]
    full = attention_heads_first(q, heads(rows.double() @ proj_k), heads(rows.double() @ proj_v))
    merged = attention_heads_first(q, heads(kept.double() @ proj_k), heads(kept.double() @ proj_v), bias.double())
    torch.testing.assert_close(merged, full, rtol=1e-7, atol=1e-7)   # the bias is float32
    assert merge_padding(torch.randn(1, 6, 8, generator=g))[1] is None    # no padding: nothing merged
