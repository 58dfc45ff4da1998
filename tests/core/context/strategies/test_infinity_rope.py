"""∞-RoPE's hooks on a hand-checkable cache: the KV flush at a prompt boundary and the RoPE cut of a cut block."""
from core.context.kv_cache import CachePolicy
from core.context.strategies.infinity_rope import InfinityRope, InfinityRopeParams

from labelled_cache import fill, make_cache, slot_labels


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
