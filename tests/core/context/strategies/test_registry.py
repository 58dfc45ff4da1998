"""Strategies by name (core/context/strategies/registry.py): published defaults, descriptions, clear errors."""
import json

import pytest

from core.retrieval.config import RetrievalConfig
from core.sampling.config import SamplingConfig, SwitchConfig
from core.context.strategies import NAMES, describe, get_spec
from core.context.strategies.memrope import MemRopeParams
from core.app.plan import sampling_config, strategy_config


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


# ------------------------------------------------------------------------------ hand-checkable caches


def test_strategy_descriptions_are_plain_json():
    json.dumps([describe(n) for n in NAMES])
