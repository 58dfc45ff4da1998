"""MemRoPE's hooks on a hand-checkable cache: overflowing frames fold into the long and short memory slots."""
import pytest

from core.context.kv_cache import CachePolicy
from core.context.strategies.memrope import MemRope, MemRopeParams

from labelled_cache import fill, make_cache, slot_labels


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
