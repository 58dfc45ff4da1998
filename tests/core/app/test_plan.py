"""The run planner (core/app/plan.py) and the request → config resolution (core/sampling/request.py): one plan
for every front end, the user's request kept apart from what it resolves to, strategy defaults per family."""
import pytest

from core.app.plan import RunRequest, default_family, plan_run, sampling_config, strategy_config
from core.context.strategies import NAMES, get_spec
from core.formats import FAMILIES
from core.retrieval.config import RetrievalConfig
from core.sampling.request import SamplingRequest, replace, resolve

WAN21 = default_family().defaults
WAN22 = next(f for f in FAMILIES if f.defaults.latent.channels == 48).defaults


def test_replacing_the_strategy_re_resolves_its_window_sink_switch_and_options():
    rag = sampling_config(strategy="rag")
    assert (rag.window, rag.sink, rag.switch.mode) == (12, 1, "recache")
    rope = replace(rag, strategy="infinity-rope")
    assert (rope.window, rope.sink, rope.switch.mode, rope.retrieval) == (6, 1, "flush", None)
    assert rope == strategy_config("infinity-rope")
    memrope = replace(rope, strategy="memrope", window=16)      # what the user set stays set
    assert (memrope.window, memrope.sink, memrope.switch.mode) == (16, 3, "none")
    assert dict(memrope.strategy_options) == {"alpha_long": 0.01, "alpha_short": 0.1}


def test_the_request_keeps_only_what_was_asked():
    cfg = sampling_config(strategy="memrope", window=16)
    assert cfg.request == SamplingRequest(strategy="memrope", window=16)
    assert cfg.family is WAN21


@pytest.mark.parametrize("family", [f.defaults for f in FAMILIES], ids=[f.name for f in FAMILIES])
@pytest.mark.parametrize("name", NAMES)
def test_every_strategy_resolves_on_every_family_with_its_defaults(family, name):
    cfg = resolve(SamplingRequest(strategy=name), family)       # the checks of SamplingConfig pass
    assert cfg.frames_per_block == family.frames_per_block and cfg.strategy == name
    if get_spec(name).follows_family:
        assert (cfg.window, cfg.sink, cfg.scaled) == (family.window, family.sink, "")
    elif family.frames_per_block == 3:
        assert (cfg.window, cfg.sink, cfg.scaled) == (get_spec(name).window, get_spec(name).sink, "")
    else:
        assert f"blocks of {family.frames_per_block}" in cfg.scaled


def test_long_live_2_strategies_are_scaled_in_blocks_and_say_so():
    plan = plan_run(RunRequest(SamplingRequest(strategy="deep-forcing"), frames=64), WAN22)
    cfg = plan.config
    assert (cfg.window, cfg.sink) == (56, 27)
    assert dict(cfg.strategy_options) == {"compressed_frames": 13, "recent_frames": 8}
    assert any("scaled to this backbone's blocks: window 56 = 7 blocks" in line for line in plan.info())
    assert (strategy_config("memrope", WAN22).window, strategy_config("memrope", WAN22).sink) == (32, 8)
    assert strategy_config("infinity-rope", WAN22).window == 16


def test_a_length_in_seconds_video_frames_or_latent_frames_is_planned_once():
    assert plan_run(RunRequest(seconds=30), WAN21).frames == 120
    assert plan_run(RunRequest(video_frames=477), WAN21).frames == 120
    assert plan_run(RunRequest(video_frames=478), WAN21).frames == 123       # rounded up to whole blocks
    assert plan_run(RunRequest(seconds=10), WAN22).frames == 64              # 24 fps, blocks of 8
    for family, length in ((WAN21, 477), (WAN22, 721)):                     # the workflows' 30 s: the same run
        assert plan_run(RunRequest(seconds=30), family).frames == plan_run(RunRequest(video_frames=length),
                                                                           family).frames
    with pytest.raises(ValueError, match="give the length once"):
        plan_run(RunRequest(frames=12, seconds=3), WAN21)
    with pytest.raises(ValueError, match="give the length once"):
        plan_run(RunRequest(), WAN21)
    with pytest.raises(ValueError, match="length 0 must be at least 1 video frame"):
        plan_run(RunRequest(video_frames=0), WAN21)


def test_an_image_start_gives_a_short_first_block_on_wan21_and_a_clamped_one_on_longlive_2():
    short = plan_run(RunRequest(video_frames=49, start_frames=1, start_hw=(60, 104)), WAN21)
    assert short.blocks[:2] == [(0, 1), (1, 3)] and short.frames == 13
    clamp = plan_run(RunRequest(video_frames=61, start_frames=1, start_hw=(44, 80)), WAN22)
    assert clamp.blocks[:1] == [(0, 8)] and clamp.frames == 16


def test_the_size_is_the_start_s_then_the_family_s():
    assert plan_run(RunRequest(frames=12), WAN21).latent_hw == (60, 104)
    assert plan_run(RunRequest(frames=16), WAN22).latent_hw == (44, 80)
    assert plan_run(RunRequest(frames=13, start_frames=1, start_hw=(8, 12)), WAN21).latent_hw == (8, 12)
    with pytest.raises(ValueError, match=r"the start is 96x64 px \(latent 8x12\) but the run makes 832x480"):
        plan_run(RunRequest(frames=13, width=832, height=480, start_frames=1, start_hw=(8, 12)), WAN21)


def test_retrieval_settings_with_a_strategy_that_retrieves_nothing_are_refused():
    with pytest.raises(ValueError, match="retrieval settings apply to strategy 'rag' only"):
        sampling_config(strategy="memrope", retrieval=RetrievalConfig(top_k=3))
