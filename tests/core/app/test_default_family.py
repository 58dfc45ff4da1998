"""The family a front end assumes before a backbone says otherwise (core/app/default_family.py)."""
from core.app.default_family import DEFAULT_FAMILY, default_family
from core.formats import FAMILIES


def test_the_default_family_is_the_registered_wan21_text_to_video():
    fam = default_family()
    assert fam.name == DEFAULT_FAMILY == "Wan2.1 text-to-video"
    assert fam in list(FAMILIES)


def test_the_default_family_runs_wan21_latents_in_blocks_of_three():
    d = default_family().defaults
    assert (d.latent.channels, d.frames_per_block, d.sampler) == (16, 3, "renoise")
