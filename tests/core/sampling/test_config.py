"""The run's settings (core/sampling/config.py): SamplingConfig only checks what it is given, ShotConfig says when
a cut starts a shot, the blocks a start gives, and the latent size's checks."""
import dataclasses

import pytest

from core.app.plan import default_family
from core.formats import FAMILIES
from core.retrieval.config import RetrievalConfig
from core.sampling.config import ShotConfig, SwitchConfig, check_latent_size
from core.sampling.request import SamplingRequest, resolve

WAN21 = default_family().defaults
WAN22 = next(f for f in FAMILIES if f.defaults.latent.channels == 48).defaults


def native(**changes):
    return dataclasses.replace(resolve(SamplingRequest(), WAN21), **changes)


def test_a_strategy_without_retrieval_given_a_retrieval_config_is_refused():
    with pytest.raises(ValueError, match="strategy 'native' retrieves nothing: retrieval settings apply to "
                                         "strategy 'rag' only"):
        native(retrieval=RetrievalConfig(top_k=4))


def test_rag_without_a_retrieval_config_is_refused():
    rag = resolve(SamplingRequest(strategy="rag"), WAN21)
    with pytest.raises(ValueError, match="strategy 'rag' retrieves: give it a RetrievalConfig"):
        dataclasses.replace(rag, retrieval=None)


def test_an_unknown_strategy_option_lists_the_known_ones():
    memrope = resolve(SamplingRequest(strategy="memrope"), WAN21)
    with pytest.raises(ValueError, match="has no option zzz; its options are alpha_long, alpha_short"):
        dataclasses.replace(memrope, strategy_options=(("zzz", 1.0),))


def test_an_unknown_start_block_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="start block 'long' is unknown; use one of short, clamp"):
        native(start_block="long")


def test_an_unknown_switch_mode_is_refused():
    with pytest.raises(ValueError, match="switch 'often' is unknown"):
        SwitchConfig("often")


def test_a_shot_starts_with_a_rope_offset_or_the_shot_sink_only():
    assert not ShotConfig().on
    assert ShotConfig(rope_offset=8.0).on and ShotConfig(sink=True).on
    with pytest.raises(ValueError, match="must be ≥ 0"):
        ShotConfig(rope_offset=-1.0)


def test_a_short_start_gives_a_shorter_first_block_of_its_remainder():
    cfg = native()
    assert cfg.first_block(1) == 1 and cfg.first_block(3) == 0
    assert cfg.blocks(7, start=1) == [(0, 1), (1, 3), (4, 3)]


def test_a_clamped_start_keeps_every_block_whole():
    cfg = resolve(SamplingRequest(), WAN22)
    assert cfg.start_block == "clamp" and cfg.first_block(1) == 0
    assert cfg.blocks(16, start=1) == [(0, 8), (8, 8)]


def test_frames_that_are_not_whole_blocks_are_refused_with_a_fix():
    with pytest.raises(ValueError, match=r"frames=7: latent frames must be a positive multiple of the block "
                                         r"size 3 \(e.g. 6\)"):
        native().blocks(7)
    with pytest.raises(ValueError, match="the start already holds 4 latent frames"):
        native().blocks(4, start=4)


def test_the_latent_size_must_be_positive_and_divisible_by_the_patch():
    assert check_latent_size((60, 104)) == (60, 104)
    with pytest.raises(ValueError, match=r"latent size 0x104 must be positive"):
        check_latent_size((0, 104))
    with pytest.raises(ValueError, match=r"latent size 61x105 must be divisible by the patch size 2x2 \(e.g. 60x104\)"):
        check_latent_size((61, 105))
