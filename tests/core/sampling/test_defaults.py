"""A backbone family's published settings (core/sampling/defaults.py): the one-line summary and the step fields a
run with a given sampler takes."""
import dataclasses

from core.app.plan import default_family
from core.formats import FAMILIES
from core.sampling.defaults import settings_line

WAN21 = default_family().defaults
WAN22 = next(f for f in FAMILIES if f.defaults.latent.channels == 48).defaults


def test_the_wan21_defaults_read_as_one_line():
    assert WAN21.describe() == ("832x480 px (Wan2.1 latents, 16 channels, 60x104) at 16 fps; blocks of 3 latent "
                                "frames, window 12, sink 1, steps 1000,750,500,250, shift 5")


def test_the_wan22_defaults_read_as_one_line_with_their_shots():
    assert WAN22.describe() == ("1280x704 px (Wan2.2 latents, 48 channels, 44x80) at 24 fps; blocks of 8 latent "
                                "frames, window 32, sink 8, UniPC 4 steps, shift 5; a cut line starts a new shot "
                                "(RoPE offset 8, multi-shot sink on)")


def test_the_line_is_of_the_size_it_is_given():
    assert settings_line(WAN21, WAN21.latent, (30, 52)).startswith("416x240 px (Wan2.1 latents, 16 channels, 30x52)")


def test_a_shot_sink_turned_off_with_retrieval_says_so():
    shots = dataclasses.replace(WAN22.shots, sink=False)
    with_retrieval = type("S", (), {**{f.name: getattr(WAN22, f.name) for f in dataclasses.fields(WAN22)},
                                    "shots": shots, "retrieval": object()})
    assert settings_line(with_retrieval, WAN22.latent, WAN22.latent_hw).endswith(
        "(RoPE offset 8, multi-shot sink off with retrieval)")


def test_steps_for_the_family_s_own_sampler_are_the_family_s():
    assert WAN21.steps_for("renoise") == {"steps": (1000, 750, 500, 250), "sampling_steps": 4, "first_steps": ()}
    assert WAN22.steps_for("unipc") == {"steps": (), "sampling_steps": 4, "first_steps": ()}


def test_steps_for_another_sampler_are_that_sampler_s_published_ones():
    assert WAN22.steps_for("renoise") == {"steps": (1000, 750, 500, 250)}
    assert WAN21.steps_for("unipc") == {"sampling_steps": 4}


def test_the_default_switch_is_the_family_s_for_its_window_and_the_strategy_s_otherwise():
    assert WAN21.switch_for("native") == "recache" and WAN22.switch_for("native") == "none"
    assert WAN21.switch_for("infinity-rope") == "flush"
