"""The transformer's speed paths compute what its plain paths compute: the cache-only context pass, compiled blocks,
the fused RMS norm and the merged prompt padding."""
import pytest
import torch

from core.context.kv_cache import CachePolicy, KVCache

from factory import tiny_model


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


class CastingLinear(torch.nn.Linear):
    """A host's layer that keeps its weights in another dtype on another device and casts them per call."""

    def forward(self, x):
        return torch.nn.functional.linear(x, self.weight.to(x.dtype), self.bias.to(x.dtype))


def host_layers(model, dtype=torch.float64):
    """Another implementation's layers holding ``model``'s weights (the Linears cast per call, in ``dtype``)."""
    layers = {}
    for name, mod in model.named_modules():
        if type(mod) is torch.nn.Linear:
            copy = CastingLinear(mod.in_features, mod.out_features, dtype=dtype)
            copy.load_state_dict(mod.state_dict())
            layers[name] = copy
        else:
            layers[name] = mod
    return layers


def test_from_modules_runs_this_arithmetic_over_the_given_layers(one_thread):
    """The same video from the given layers: they are used (not copied), loose parameters in another dtype are cast
    per call, and ``compute_place`` follows what the model states."""
    from core.model.backbone import compute_place
    from core.model.transformer import WanTransformer
    from core.sampling.loop import generate
    from core.app.plan import sampling_config
    model = tiny_model()
    layers = host_layers(model)
    other = WanTransformer.from_modules(model.cfg, layers)
    assert other.blocks[0].self_attn.q is layers["blocks.0.self_attn.q"]
    other.blocks[0].modulation = torch.nn.Parameter(model.blocks[0].modulation.double())   # kept in float64
    other.compute_device, other.compute_dtype = torch.device("cpu"), torch.float32
    assert compute_place(other) == (torch.device("cpu"), torch.float32)
    emb = torch.randn(1, 7, 32, generator=torch.Generator().manual_seed(2))
    cfg = sampling_config(window=6)
    a = generate(model, emb, 9, (4, 6), 0, cfg).latents
    b = generate(other, emb, 9, (4, 6), 0, cfg).latents
    assert torch.equal(a, b)
    layers["blocks.1.ffn.2"].bias.data.add_(1.0)       # the given layers are the ones that run
    assert not torch.equal(a, generate(other, emb, 9, (4, 6), 0, cfg).latents)


def test_from_modules_names_a_missing_layer():
    from core.model.transformer import WanTransformer
    model = tiny_model()
    layers = dict(model.named_modules())
    del layers["blocks.1.cross_attn.k"]
    with pytest.raises(KeyError, match="blocks.1.cross_attn.k"):
        WanTransformer.from_modules(model.cfg, layers)
