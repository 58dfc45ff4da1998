"""The AR Block Sampler's inputs → a run request (nodes/request.py): the 'steps' widget read by the run's sampler,
which prompt-switch mode is asked for, and Retrieve Context refused next to a strategy that retrieves nothing."""
import importlib

import pytest

from pack import PACK

request = importlib.import_module(f"{PACK.__name__}.nodes.request")
StrategyInput = importlib.import_module(f"{PACK.__name__}.nodes.strategy").StrategyInput
SwitchChoice = importlib.import_module(f"{PACK.__name__}.nodes.schedule").SwitchChoice
RetrievalConfig = importlib.import_module(f"{PACK.__name__}.core.retrieval.config").RetrievalConfig
WAN21 = importlib.import_module(f"{PACK.__name__}.core.app.default_family").default_family().defaults


@pytest.mark.parametrize("text", ["auto", " AUTO ", ""])
def test_steps_auto_asks_for_nothing(text):
    assert request.steps_fields("renoise", text) == {}


def test_steps_for_the_renoise_sampler_are_timesteps():
    assert request.steps_fields("renoise", "1000,500") == {"steps": (1000, 500)}


def test_steps_for_the_unipc_sampler_are_a_count_and_a_list_is_refused_in_its_words():
    assert request.steps_fields("unipc", "6") == {"sampling_steps": 6}
    with pytest.raises(ValueError, match="the unipc sampler takes a number of solver steps"):
        request.steps_fields("unipc", "1000,750")


def test_the_context_strategy_s_switch_comes_first():
    assert request.switch_mode(StrategyInput("infinity-rope", switch="flush"), SwitchChoice("none")) == "flush"


def test_the_schedule_s_saved_default_recache_next_to_a_strategy_means_the_strategy_s_own():
    assert request.switch_mode(StrategyInput("memrope"), SwitchChoice("recache")) is None


def test_the_schedule_s_other_switch_next_to_a_strategy_is_kept():
    assert request.switch_mode(StrategyInput("memrope"), SwitchChoice("none")) == "none"


def test_without_a_strategy_the_schedule_s_switch_is_asked_for_as_it_is():
    assert request.switch_mode(None, SwitchChoice("recache")) == "recache"
    assert request.switch_mode(None, SwitchChoice()) is None


def test_retrieve_context_next_to_a_strategy_that_retrieves_nothing_is_refused():
    with pytest.raises(ValueError, match="Retrieve Context is connected but the Context Strategy is 'memrope'"):
        request.sampling_request(WAN21, StrategyInput("memrope"), RetrievalConfig(top_k=4), None, "per-block",
                                 -1, 0, 0, "auto", 0.0)


def test_auto_widgets_ask_for_nothing_and_a_strategy_s_window_replaces_the_sampler_s():
    plain = request.sampling_request(WAN21, None, None, None, "per-block", -1, 0, 0, "auto", 0.0)
    assert (plain.window, plain.sink, plain.frames_per_block, plain.shift, plain.steps) == (None,) * 5
    chosen = request.sampling_request(WAN21, StrategyInput("memrope", window=16), None, None, "per-block",
                                      2, 20, 0, "auto", 0.0)
    assert (chosen.strategy, chosen.window, chosen.sink) == ("memrope", 16, None)
