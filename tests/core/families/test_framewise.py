"""Frame-wise Causal Forcing (++) as variants of the Wan2.1 family: told by the released file names, their run
settings (blocks of one frame, the first block's own steps, window 21 / sink 1), and what follows from them."""
from pathlib import Path

import pytest

from core.context.strategies import get_spec
from core.families.family import preset_for
from core.families.framewise import CF_FRAMEWISE, CF_PP_1STEP, CF_PP_2STEP
from core.families.wan21_t2v import WAN21_T2V
from core.sampling.noise import NoiseSource
from core.sampling.request import SamplingRequest, resolve


@pytest.mark.parametrize("path, layout, want", [
    ("checkpoints/causal-forcing++/framewise-2step.pt", "self_forcing", CF_PP_2STEP),
    ("causal-forcing++/framewise-1step.pt", "self_forcing", CF_PP_1STEP),
    ("models/framewise-1step.safetensors", "wan_safetensors", CF_PP_1STEP),
    ("checkpoints/framewise/causal_forcing.pt", "self_forcing", CF_FRAMEWISE),
    ("checkpoints/chunkwise/causal_forcing.pt", "causal_forcing", "Causal-Forcing"),
    ("self_forcing_dmd.pt", "self_forcing", "Self-Forcing"),
])
def test_the_released_file_names_tell_the_variant_before_the_layout(path, layout, want):
    assert preset_for(WAN21_T2V, layout, Path(path)) == want


def test_each_variant_runs_one_frame_per_block_with_its_published_steps():
    two, one, four = (WAN21_T2V.defaults_for(p) for p in (CF_PP_2STEP, CF_PP_1STEP, CF_FRAMEWISE))
    assert (two.steps, two.first_steps) == ((1000, 500), (1000, 750, 500, 250))
    assert (one.steps, one.first_steps) == ((1000,), (1000, 750, 500, 250))
    assert (four.steps, four.first_steps) == ((1000, 750, 500, 250), ())
    assert {(d.frames_per_block, d.window, d.sink) for d in (two, one, four)} == {(1, 21, 1)}
    assert WAN21_T2V.defaults_for("Self-Forcing") is WAN21_T2V.defaults is WAN21_T2V.defaults_for(None)


def test_the_first_block_is_denoised_with_the_first_steps_and_draws_their_noise():
    cfg = resolve(SamplingRequest(), WAN21_T2V.defaults_for(CF_PP_1STEP))
    assert cfg.opening.steps == (1000, 750, 500, 250) and cfg.steps == (1000,)
    assert (cfg.opening.renoises_per_block, cfg.renoises_per_block) == (3, 0)
    source = NoiseSource("reference", 0, (1, 16, 3, 2, 2), cfg.renoises_per_block + 1, cfg.opening.renoises_per_block + 1)
    drawn = []
    source.renoise = lambda frames: drawn.append(frames)
    source.skip_block(0, 0, 1)
    source.skip_block(1, 1, 1)
    assert drawn == [1, 1, 1]          # a replayed first block draws what its four steps drew; a later one nothing


def test_the_first_steps_can_be_turned_off_and_do_not_follow_another_sampler():
    d = WAN21_T2V.defaults_for(CF_PP_2STEP)
    assert resolve(SamplingRequest(first_steps=()), d).opening.steps == (1000, 500)
    assert resolve(SamplingRequest(sampler="unipc"), d).first_steps == ()
    with pytest.raises(ValueError, match="first-block steps 1000,750,500,250 apply to the renoise sampler only"):
        resolve(SamplingRequest(sampler="unipc", first_steps=(1000, 750, 500, 250)), d)


@pytest.mark.parametrize("name", ["infinity-rope", "memrope", "deep-forcing"])
def test_strategies_keep_their_published_frames_on_one_frame_blocks_and_say_so(name):
    cfg = resolve(SamplingRequest(strategy=name), WAN21_T2V.defaults_for(CF_PP_2STEP))
    spec = get_spec(name)
    assert (cfg.window, cfg.sink) == (spec.window, spec.sink)
    assert "kept in frames at blocks of 1" in cfg.scaled
