"""Prompt switches in both cache regimes: what a switch changes, which cache slots a re-cache rewrites,
what stays retrievable (core/context/recache.py, core/sampling/prompts.py, _BlockLoop.switch)."""
import pytest
import torch

import core.context.kv_cache
from core.retrieval.config import RetrievalConfig
from core.sampling.config import SamplingConfig, SwitchConfig
from core.sampling.loop import _BlockLoop, generate, recompute_kv
from core.sampling.prompts import PromptSchedule, Segment
from core.app.plan import sampling_config

from factory import tiny_model

G = torch.Generator().manual_seed(7)
P0, P1, P2 = (torch.randn(1, 9, 32, generator=G) for _ in range(3))
HW = (4, 6)


@pytest.fixture(scope="module")
def model(one_thread):
    return tiny_model()


def schedule(*entries) -> PromptSchedule:
    return PromptSchedule(tuple(Segment(start, emb, f"segment {i}") for i, (start, emb) in enumerate(entries)))


def config(mode="rag", switch="recache", global_sink=True, scope="all", **kw) -> SamplingConfig:
    top_k = kw.pop("top_k", 6)
    return sampling_config(retrieval=RetrievalConfig(top_k) if mode == "rag" else None,
                          switch=switch, global_sink=global_sink, retrieval_scope=scope, **kw)


def run(model, prompts, frames=36, seed=3, **kw):
    return generate(model, prompts, frames, HW, seed, config(**kw))


@pytest.mark.parametrize("mode", ["native", "rag"])
def test_a_schedule_of_one_prompt_is_the_plain_prompt(model, mode):
    plain, sched = run(model, P0, mode=mode), run(model, schedule((0, P0)), mode=mode)
    assert torch.equal(plain.latents, sched.latents)
    assert plain.retrieval_log == sched.retrieval_log and sched.switches == []


@pytest.mark.parametrize("mode", ["native", "rag"])
def test_identical_prompts_with_switch_none_are_bit_identical_to_one_prompt(model, mode):
    plain = run(model, P0, frames=48, mode=mode)
    same = run(model, schedule((0, P0), (10, P0.clone()), (30, P0.clone())), frames=48, mode=mode, switch="none")
    assert torch.equal(plain.latents, same.latents)
    assert [r["pool_indices"] for r in plain.retrieval_log] == [r["pool_indices"] for r in same.retrieval_log]
    assert [s["block_start"] for s in same.switches] == [12, 30]
    assert all(s["recache"] is None for s in same.switches)


@pytest.mark.parametrize("mode", ["native", "rag"])
def test_identical_prompts_with_recache_are_not_a_no_op(model, mode):
    # the re-cache forward is unmasked and window-limited, so it changes the cache even with the same prompt
    plain = run(model, P0, mode=mode)
    same = run(model, schedule((0, P0), (18, P0.clone())), mode=mode)
    assert torch.equal(plain.latents[:, :, :18], same.latents[:, :, :18])
    assert not torch.equal(plain.latents[:, :, 18:], same.latents[:, :, 18:])


@pytest.mark.parametrize("mode", ["native", "rag"])
@pytest.mark.parametrize("switch", ["recache", "none"])
def test_a_switch_draws_no_noise_and_leaves_earlier_blocks_alone(model, mode, switch):
    plain = run(model, P0, mode=mode)
    other = run(model, schedule((0, P0), (21, P1)), mode=mode, switch=switch)
    assert torch.equal(plain.latents[:, :, :21], other.latents[:, :, :21])
    assert (plain.latents[:, :, 21:] - other.latents[:, :, 21:]).abs().amax() > 1e-5


def test_recache_and_cross_attention_only_switch_differ(model):
    a = run(model, schedule((0, P0), (21, P1)), mode="native", switch="recache").latents
    b = run(model, schedule((0, P0), (21, P1)), mode="native", switch="none").latents
    assert torch.equal(a[:, :, :21], b[:, :, :21]) and not torch.equal(a[:, :, 21:], b[:, :, 21:])


def cache_around_switch(model, monkeypatch, prompts, frames, **kw):
    """Run; return (k, v before, k, v after) the first switch's re-cache (lists per layer, valid slots) and the result."""
    seen = {}
    original = _BlockLoop.switch

    def spy(loop, start):
        n = loop.cache.filled * loop.cache.tokens
        before = ([k[:, :n].clone() for k in loop.cache.k], [v[:, :n].clone() for v in loop.cache.v])
        count = len(loop.switches)
        original(loop, start)
        if len(loop.switches) > count and "after" not in seen:
            seen["before"] = before
            seen["after"] = ([k[:, :n].clone() for k in loop.cache.k], [v[:, :n].clone() for v in loop.cache.v])
            seen["loop"] = loop
            seen["tokens"] = loop.cache.tokens
    monkeypatch.setattr(_BlockLoop, "switch", spy)
    res = generate(model, prompts, frames, HW, 3, config(**kw))
    return seen, res


def changed_slots(seen) -> list[int]:
    t = seen["tokens"]
    (k0, v0), (k1, v1) = seen["before"], seen["after"]
    slots = k0[0].shape[1] // t
    return [j for j in range(slots)
            if any(not torch.equal(a[:, j * t:(j + 1) * t], b[:, j * t:(j + 1) * t]) for a, b in zip(k0 + v0, k1 + v1))]


@pytest.mark.parametrize("mode", ["native", "rag"])
@pytest.mark.parametrize("global_sink,start,want", [
    (True, 21, list(range(3, 12))),       # b > window: the sink slots keep their K/V
    (False, 21, list(range(12))),         # every slot rewritten
    (True, 9, list(range(9))),            # b ≤ window: LongLive rewrites from slot 0, sink included
])
def test_recache_rewrites_exactly_the_window_slots(model, monkeypatch, mode, global_sink, start, want):
    seen, res = cache_around_switch(model, monkeypatch, schedule((0, P0), (start, P1)), 36, mode=mode,
                                    global_sink=global_sink, sink=3, top_k=3)
    assert changed_slots(seen) == want
    assert res.switches[0]["recache"]["slots"] == want


@pytest.mark.parametrize("mode", ["native", "rag"])
@pytest.mark.parametrize("global_sink", [True, False])
def test_recached_layer0_keys_are_each_frames_own_keys_at_the_regimes_positions(model, monkeypatch, mode, global_sink):
    # layer-0 K depends on nothing but the frame's latent and timestep: it tells which frame went into which
    # slot, at which RoPE position, stored rotated (native) or raw (retrieval)
    from core.model.rope import apply_rope, rope_table
    seen, res = cache_around_switch(model, monkeypatch, schedule((0, P0), (24, P1)), 36, mode=mode,
                                    global_sink=global_sink, sink=2, top_k=3)
    rec, loop, t = res.switches[0]["recache"], seen["loop"], seen["tokens"]
    if mode == "native":
        assert rec["frames"] == rec["rope_positions"] == list(range(24 - 12 + rec["slots"][0], 24))
    else:
        assert rec["rope_positions"] == rec["slots"]
        assert rec["frames"] == [0, 1][:len(rec["slots"]) - 10] + list(range(14, 24))
    k, _ = recompute_kv(model, loop.text, loop.output[:, rec["frames"]], 0.0)
    want = k[0]
    if mode == "native":
        want = apply_rope(want, rope_table(torch.tensor(rec["frames"]), 2, 3, model.cfg.head_dim))
    got = seen["after"][0][0][:, rec["slots"][0] * t:(rec["slots"][-1] + 1) * t]
    assert torch.allclose(got, want, atol=1e-5)


@pytest.fixture(scope="module")
def sharp_model(one_thread):
    """The tiny model with larger q/k norms: attention far from uniform, so RoPE positions and key sets show."""
    m = tiny_model()
    with torch.no_grad():
        for blk in m.blocks:
            blk.self_attn.norm_q.weight.fill_(4.0)
            blk.self_attn.norm_k.weight.fill_(4.0)
    return m


@pytest.mark.parametrize("global_sink", [True, False])
def test_retrieval_recache_attends_kept_sink_and_every_reencoded_key_at_slot_positions(sharp_model, monkeypatch,
                                                                                        global_sink):
    # the retrieval regime's definition (docs/ARCHITECTURE.md) written out by hand for a 2-layer model: layer 0
    # attends [kept sink rotated at its slots ‖ re-encoded keys rotated at their slots], no mask; layer 1's raw K
    # must be what the cache holds afterwards
    from core.model.attention import attention
    from core.model.rope import apply_rope, rope_table
    seen, res = cache_around_switch(sharp_model, monkeypatch, schedule((0, P0), (24, P1)), 36, mode="rag",
                                    global_sink=global_sink, sink=2, top_k=3)
    rec, loop, t = res.switches[0]["recache"], seen["loop"], seen["tokens"]
    keep = len(rec["kept_slots"])
    assert keep == (2 if global_sink else 0)
    table = lambda pos: rope_table(torch.tensor(pos), 2, 3, sharp_model.cfg.head_dim)
    x = loop.output[:, rec["frames"]].permute(0, 2, 1, 3, 4)
    tokens, _, e0, _ = sharp_model._embed(x, torch.zeros(x.shape[0], x.shape[2]))
    first, second = sharp_model.blocks
    e = (first.modulation.unsqueeze(1) + e0).chunk(6, dim=2)
    q, k, v = first._qkv(tokens, e[0], e[1])
    keys = apply_rope(k, table(rec["rope_positions"]))
    if keep:
        keys = torch.cat([apply_rope(seen["before"][0][0][:, :keep * t], table(list(range(keep)))), keys], 1)
        v = torch.cat([seen["before"][1][0][:, :keep * t], v], 1)
    out = attention(apply_rope(q, table(rec["rope_positions"])), keys, v)
    tokens = first._after_attention(tokens, out, e, loop.text.kv[0])
    e = (second.modulation.unsqueeze(1) + e0).chunk(6, dim=2)
    want = second._qkv(tokens, e[0], e[1])[1]
    got = seen["after"][0][1][:, keep * t:]
    assert ((got - want).norm() / want.norm()) < 1e-6
    assert torch.equal(seen["after"][0][1][:, :keep * t], seen["before"][0][1][:, :keep * t])


def test_the_pool_keeps_what_it_holds(model, monkeypatch):
    snaps = []
    original = _BlockLoop.switch

    def spy(loop, start):
        gather = lambda: loop.pool.gather(torch.arange(len(loop.pool)).unsqueeze(0), loop.device, loop.dtype)
        before = gather() if len(loop.pool) else None
        original(loop, start)
        snaps.append((before, gather() if len(loop.pool) else None))
    monkeypatch.setattr(_BlockLoop, "switch", spy)
    run(model, schedule((0, P0), (30, P1)), frames=36)
    (kb, vb), (ka, va) = snaps[10]              # the block at 30, where the switch fires
    assert kb.shape[2] > 0 and torch.equal(kb, ka) and torch.equal(vb, va)


def first_frames(res) -> dict[int, int]:
    return {0: 0, **{s["segment"]: s["block_start"] for s in res.switches}}


def test_segment_scope_never_retrieves_a_frame_before_the_current_segment(model):
    prompts = schedule((0, P0), (33, P1), (63, P2))
    scoped = run(model, prompts, frames=90, scope="segment")
    starts = first_frames(scoped)
    assert starts == {0: 0, 1: 33, 2: 63}
    assert {r["segment"] for r in scoped.retrieval_log} == {0, 1, 2}
    for rec in scoped.retrieval_log:
        assert min(rec["global_frames"]) >= starts[rec["segment"]], rec
    # the same schedule with scope all does reach back across a switch (the test above is not vacuous)
    free = run(model, prompts, frames=90)
    assert any(min(r["global_frames"]) < first_frames(free)[r["segment"]] for r in free.retrieval_log)


def test_segment_scope_retrieves_fewer_frames_and_keeps_the_local_window(model, monkeypatch):
    keys, current = {}, []
    real_attention, real_denoise = core.context.kv_cache.attention, _BlockLoop.denoise

    def attention(q, k, v):
        keys.setdefault(current[-1], set()).add(k.shape[1])
        return real_attention(q, k, v)
    monkeypatch.setattr(core.context.kv_cache, "attention", attention)
    monkeypatch.setattr(_BlockLoop, "denoise", lambda loop, block, start, frames, given=0: current.append(start)
                        or real_denoise(loop, block, start, frames))
    res = run(model, schedule((0, P0), (33, P1)), frames=60, scope="segment")
    retrieved = {rec["query_frame"]: len(rec["global_frames"]) for rec in res.retrieval_log}
    assert min(retrieved.values()) < 6 <= max(retrieved.values())     # fewer right after the switch, K once enough exist
    tokens = 2 * 3
    for start in range(18, 60, 3):              # the cache is full: local = window − sink − K = 5 frames, always
        n = retrieved.get(start, 0)
        assert keys[start] == {(1 + n + 5) * tokens}, (start, n)


def test_a_segment_retrieves_once_its_own_frames_are_older_than_the_recency_guard(model):
    # before block b (sink 1, window 12) the pool holds frames 1…b−12 and the last 5 are excluded:
    # frame 33 (the segment's first) is first retrievable at b = 51, together with frame 34
    res = run(model, schedule((0, P0), (33, P1)), frames=60, scope="segment")
    seg1 = [r for r in res.retrieval_log if r["segment"] == 1]
    assert seg1[0]["query_frame"] == 51 and sorted(seg1[0]["global_frames"]) == [33, 34]
    assert [r["query_frame"] for r in seg1] == [51, 54, 57]


def test_switch_records_say_where_each_prompt_began(model):
    res = run(model, schedule((0, P0), (13, P1), (14, P2)), frames=36, mode="native", global_sink=False)
    assert [(s["segment"], s["asked_frame"], s["block_start"]) for s in res.switches] == [(1, 13, 15), (2, 14, 18)]
    assert res.switches[0]["recache"]["slots"] == list(range(12))


def test_the_retrieval_map_marks_the_switches(model):
    from core.retrieval.map import render_retrieval_map
    res = run(model, schedule((0, P0), (33, P1)), frames=60)
    plain = render_retrieval_map(res.retrieval_log, 60, 1, 12, 3)
    marked = render_retrieval_map(res.retrieval_log, 60, 1, 12, 3, switches=res.switches)
    assert plain.shape == marked.shape and (plain != marked).any()
    red = (marked[..., 0] > 150) & (marked[..., 1] < 90) & (marked[..., 2] < 90)
    assert red.sum() > 50


def test_prefetching_retrieval_does_not_change_a_story(model):
    # the pool is untouched by a switch, so frames read ahead of a switch block are the ones read at it
    from core.retrieval.config import PoolConfig
    prompts = schedule((0, P0), (33, P1), (51, P2))
    runs = []
    for prefetch in ("off", "on"):
        cfg = sampling_config(retrieval=RetrievalConfig(6, pool=PoolConfig(), prefetch=prefetch),
                             switch="recache", global_sink=True, retrieval_scope="all")
        runs.append(generate(model, prompts, 72, HW, 3, cfg))
    assert torch.equal(runs[0].latents, runs[1].latents)
    assert runs[0].retrieval_log == runs[1].retrieval_log and runs[0].retrieval_log
