"""What the user asked for (SamplingRequest) and how it resolves over a family (core/sampling/request.py): the
request keeps only what was set, precedence user > strategy-on-family > family, options parsed from text."""
import dataclasses

import pytest

from core.app.plan import default_family
from core.formats import FAMILIES
from core.retrieval.config import RetrievalConfig
from core.sampling.request import SamplingRequest, parse_options, replace, resolve

WAN21 = default_family().defaults
WAN22 = next(f for f in FAMILIES if f.defaults.latent.channels == 48).defaults


def test_a_request_states_nothing_it_was_not_given_and_sorts_its_options():
    asked = SamplingRequest(window=20, options=(("b", 1), ("a", 2)), steps=[1000.0, 500.0])
    assert asked.sink is None and asked.strategy is None and asked.sampler is None
    assert asked.options == (("a", 2), ("b", 1))
    assert asked.steps == (1000, 500) and all(type(s) is int for s in asked.steps)


def test_the_strategy_is_rag_with_retrieval_and_native_without():
    assert SamplingRequest().strategy_name == "native"
    assert SamplingRequest(retrieval=RetrievalConfig(top_k=4)).strategy_name == "rag"
    assert resolve(SamplingRequest(retrieval=RetrievalConfig(top_k=4)), WAN21).retrieval.top_k == 4


def test_the_sink_is_the_user_s_else_the_strategy_s_on_the_family_else_the_family_s():
    assert resolve(SamplingRequest(), WAN21).sink == WAN21.sink == 1
    assert resolve(SamplingRequest(strategy="memrope"), WAN21).sink == 3
    assert resolve(SamplingRequest(strategy="memrope", sink=2), WAN21).sink == 2


def test_replace_re_resolves_from_the_request_not_from_the_resolved_values():
    memrope = resolve(SamplingRequest(strategy="memrope"), WAN21)
    native = replace(memrope, strategy="native")
    assert native.sink == WAN21.sink and native.switch.mode == WAN21.switch
    assert native.request == SamplingRequest(strategy="native")


def test_replace_refuses_a_config_not_resolved_from_a_request():
    built = dataclasses.replace(resolve(SamplingRequest(), WAN21), request=None)
    with pytest.raises(ValueError, match="built field by field, not resolved from a request"):
        replace(built, window=6)


def test_retrieval_settings_with_a_strategy_that_retrieves_nothing_are_refused():
    with pytest.raises(ValueError, match="strategy 'memrope' retrieves nothing: drop them"):
        resolve(SamplingRequest(strategy="memrope", retrieval=RetrievalConfig(top_k=4)), WAN21)


def test_a_renoise_request_on_the_unipc_family_gets_the_renoise_sampler_s_published_steps():
    assert WAN22.sampler == "unipc" and WAN22.steps == ()
    cfg = resolve(SamplingRequest(sampler="renoise"), WAN22)
    assert cfg.sampler == "renoise" and cfg.steps == (1000, 750, 500, 250)


def test_parse_options_reads_names_and_numbers_by_commas_and_lines():
    parsed = parse_options("a=1, b=0.5\n c = 2.0")
    assert parsed == {"a": 1, "b": 0.5, "c": 2.0}
    assert type(parsed["a"]) is int and type(parsed["c"]) is float
    assert parse_options("") == {}


@pytest.mark.parametrize("text", ["x", "=3", "a=many"])
def test_parse_options_refuses_an_item_that_is_not_name_equals_number(text):
    with pytest.raises(ValueError, match=r"must read name=number, e.g. compressed_frames=5"):
        parse_options(text)
