"""Strategies by name: defaults, clear errors, ∞-RoPE's flush and cut and MemRoPE's fold on hand-checkable caches."""
import json

import pytest
import torch

from core.retrieval.config import RetrievalConfig
from core.sampling.config import SamplingConfig, SwitchConfig
from core.context.kv_cache import CachePolicy, KVCache
from core.latents.format import WAN21
from core.sampling.prompts import parse_schedule_json, parse_schedule_text
from core.context.strategies import NAMES, describe, get_spec
from core.context.strategies.infinity_rope import InfinityRope, InfinityRopeParams
from core.context.strategies.memrope import MemRope, MemRopeParams
from core.app.plan import sampling_config, strategy_config

D = 6   # head_dim: one complex pair per RoPE axis


def test_every_strategy_is_listed_with_its_published_defaults():
    assert NAMES == ("native", "rag", "infinity-rope", "memrope", "deep-forcing")
    got = {n: (c.window, c.sink, c.switch.mode, c.retrieval is not None, c.policy.relative_rope)
           for n in NAMES for c in [strategy_config(n)]}
    assert got == {"native": (12, 1, "recache", False, False), "rag": (12, 1, "recache", True, True),
                   "infinity-rope": (6, 1, "flush", False, True), "memrope": (12, 3, "none", False, True),
                   "deep-forcing": (21, 10, "none", False, True)}


def test_describe_gives_the_text_a_user_picks_by():
    for name in NAMES:
        d = describe(name)
        assert d["name"] == name and d["summary"] and d["tradeoffs"] and d["memory"] and d["reference"]
        assert d["defaults"]["window"] == get_spec(name).window
    assert describe("memrope")["defaults"]["options"] == {"alpha_long": 0.01, "alpha_short": 0.1}
    assert "no reference code" in describe("deep-forcing")["reference"]


def test_no_strategy_means_rag_with_retrieval_settings_and_native_without():
    assert sampling_config(retrieval=RetrievalConfig()).strategy == "rag"
    assert sampling_config().strategy == "native"
    assert sampling_config() == strategy_config("native")
    assert sampling_config(strategy="rag") == strategy_config("rag")


def test_an_unknown_strategy_lists_the_known_ones():
    with pytest.raises(ValueError, match="strategy 'infinite-rope' is unknown; use one of native, rag, infinity-rope, "
                                         "memrope, deep-forcing"):
        strategy_config("infinite-rope")


def test_overrides_replace_only_what_is_given():
    cfg = strategy_config("memrope", window=16, options={"alpha_long": 0.02}, noise="reference")
    assert (cfg.window, cfg.sink, cfg.noise) == (16, 3, "reference")
    assert cfg.params == MemRopeParams(alpha_long=0.02, alpha_short=0.1)
    with pytest.raises(ValueError, match="strategy 'memrope' has no option beta; its options are alpha_long, alpha_short"):
        strategy_config("memrope", options={"beta": 1})


@pytest.mark.parametrize("name, window, message", [
    ("memrope", 7, r"memrope's cache holds sink 3 \+ memory 2 \(long, short\) \+ recent frames \+ the current block "
                   r"of 3: at least 8 frames, but the window is 7; use a window \(local_attn_size\) ≥ 8"),
    ("deep-forcing", 12, r"deep-forcing's cache holds sink 10 \+ compressed history 5 frames' worth of tokens \+ "
                         r"recent 3 \+ the current block of 3 = 21 frames, but the window is 12; use a window "
                         r"\(local_attn_size\) ≥ 21"),
])
def test_a_window_too_small_for_the_strategy_names_the_numbers_and_the_fix(name, window, message):
    with pytest.raises(ValueError, match=message):
        strategy_config(name, window=window)


def test_infinity_rope_flush_needs_room_for_sink_and_two_frames():
    with pytest.raises(ValueError, match=r"KV flush keeps sink 3 \+ 2 frames, more than window 4"):
        strategy_config("infinity-rope", window=4, sink=3, frames_per_block=1)


def test_retrieval_settings_belong_to_rag_only():
    assert strategy_config("memrope").retrieval is None          # the default retrieval is dropped
    with pytest.raises(ValueError, match="apply to strategy 'rag' only"):
        strategy_config("memrope", retrieval=RetrievalConfig(top_k=3))


@pytest.mark.parametrize("name", ["memrope", "deep-forcing"])
def test_a_recache_switch_is_refused_where_slots_hold_no_whole_frame(name):
    with pytest.raises(ValueError, match=f"switch 'recache' does not apply to strategy '{name}'; use one of none"):
        strategy_config(name, switch="recache")


def test_a_flush_switch_is_infinity_ropes_only():
    with pytest.raises(ValueError, match="switch 'flush' does not apply to strategy 'rag'"):
        strategy_config("rag", switch="flush")


# ------------------------------------------------------------------------------ prompt cuts
def test_a_hash_after_the_time_marks_a_cut_and_old_schedules_read_as_before():
    timed = parse_schedule_text("0s: a fox\n# a comment\n3s: it runs\n6s#: a lighthouse at night", latent=WAN21)
    assert [(p.frame, p.cut) for p in timed] == [(0, False), (12, False), (24, True)]
    assert timed[2].text == "a lighthouse at night"


def test_json_schedules_mark_cuts_with_a_flag():
    timed = parse_schedule_json([{"time": 0, "prompt": "a"}, {"time": "6s", "prompt": "b", "cut": True}], latent=WAN21)
    assert [p.cut for p in timed] == [False, True]
    with pytest.raises(ValueError, match='"cut" is "yes"; write true or false'):
        parse_schedule_json([{"time": 0, "prompt": "a"}, {"time": 6, "prompt": "b", "cut": "yes"}], latent=WAN21)


def test_the_first_prompt_cannot_be_a_cut():
    with pytest.raises(ValueError, match="the first prompt begins the video, not a new scene or shot"):
        parse_schedule_text("0s#: a fox", latent=WAN21)


# ------------------------------------------------------------------------------ hand-checkable caches
def labelled(frames, dtype=torch.float64):
    """K/V for frames [F] → [1, F, 1, D] holding the frame index (1 token per frame, 1 head)."""
    return torch.tensor(frames, dtype=dtype).view(1, -1, 1, 1).expand(1, len(frames), 1, D).clone()


def make_cache(policy, strategy):
    return KVCache(policy, num_layers=1, batch=1, grid_hw=(1, 1), heads=1, head_dim=D, dtype=torch.float64,
                   device=torch.device("cpu"), strategy=strategy)


def fill(cache, start, nf=3):
    cache.begin_block(start, nf)
    frames = list(range(start, start + nf))
    cache.write(0, labelled(frames), labelled(frames))


def slot_labels(cache):
    return cache.v[0][0, :cache.filled, 0, 0].round().long().tolist()


def test_infinity_rope_flush_copies_the_buffers_last_two_slots_into_slots_one_and_two():
    cache = make_cache(CachePolicy(6, 1, 0, True), InfinityRope(InfinityRopeParams()))
    for start in (0, 3, 6, 9):
        fill(cache, start)
    assert slot_labels(cache) == [0, 7, 8, 9, 10, 11]
    record = cache.strategy.flush(cache, cut=False)
    assert slot_labels(cache) == [0, 10, 11] and record["copied_slots"] == [4, 5]
    fill(cache, 12)
    assert slot_labels(cache) == [0, 10, 11, 12, 13, 14]     # what a plain eviction leaves at window 6


def test_infinity_rope_flush_before_the_window_fills_copies_zeros():
    cache = make_cache(CachePolicy(6, 1, 0, True), InfinityRope(InfinityRopeParams()))
    fill(cache, 0)
    cache.strategy.flush(cache, cut=False)
    fill(cache, 3)
    assert slot_labels(cache) == [0, 0, 0, 3, 4, 5]            # slots 1-2: the never-written zeros


def test_infinity_rope_cut_moves_only_the_boundary_blocks_positions():
    cache = make_cache(CachePolicy(6, 1, 0, True), InfinityRope(InfinityRopeParams()))
    for start in (0, 3, 6):
        fill(cache, start)
    cache.strategy.flush(cache, cut=True)
    fill(cache, 9)
    assert cache.query_base == 45
    fill(cache, 12)
    assert cache.query_base == 3


def test_memrope_first_fold_sets_both_memories_to_the_mean_then_each_follows_its_rate():
    cache = make_cache(CachePolicy(8, 1, 0, True), MemRope(MemRopeParams(alpha_long=0.5, alpha_short=0.25)))
    for start in (0, 3):
        fill(cache, start)                                     # slots [0 | 1 2 | 3 4 5 ...]
    fill(cache, 6)                                             # overflow 1: frame 3 folds
    assert slot_labels(cache) == [0, 3, 3, 4, 5, 6, 7, 8]
    fill(cache, 9)                                             # frames 4, 5, 6 fold: mean 5
    assert slot_labels(cache)[:3] == [0, round(0.5 * 5 + 0.5 * 3), round(0.25 * 5 + 0.75 * 3)]
    assert cache.v[0][0, 1, 0, 0].item() == pytest.approx(4.0) and cache.v[0][0, 2, 0, 0].item() == pytest.approx(3.5)
    assert [f["frames"] for f in cache.strategy.folds] == [[3], [4, 5, 6]]
    assert slot_labels(cache)[3:] == [7, 8, 9, 10, 11]


def test_strategy_descriptions_are_plain_json():
    json.dumps([describe(n) for n in NAMES])
