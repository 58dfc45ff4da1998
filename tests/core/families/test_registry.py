"""The family registry (core/families/registry.py): one live registry every lookup reads, a family added by
one ``register`` call and removed with its latent format, and named lookups instead of positions."""
import pytest
import torch

from core.app.default_family import DEFAULT_FAMILY, default_family
from core.families.registry import FAMILIES, family, identify, register
from core.families.wan21_t2v import WAN21_T2V
from core.families.wan22_ti2v import WAN22_TI2V
from core.formats import CheckpointError, detect_family
from core.formats import FAMILIES as EXPORTED
from core.latents.format import format_for_channels, formats, to_model_space
from factory import make_test_family, save_test_backbone


@pytest.fixture
def test_family():
    with register(make_test_family()) as fam:
        yield fam


def meta_state(channels: int) -> dict:
    with torch.device("meta"):
        from factory import tiny_model
        return tiny_model(channels=channels).state_dict()


def test_families_are_found_by_name():
    assert family("Wan2.1 text-to-video") is WAN21_T2V and family("Wan2.2 TI2V-5B") is WAN22_TI2V
    with pytest.raises(KeyError, match="no backbone family named 'Wan3'; the registered ones are "
                                       "'Wan2.1 text-to-video', 'Wan2.2 TI2V-5B'"):
        family("Wan3")


def test_the_default_family_is_named_once_in_the_app_layer():
    assert default_family() is family(DEFAULT_FAMILY) is WAN21_T2V


def test_a_registered_family_is_seen_by_every_lookup_until_it_is_removed(test_family, tmp_path):
    fmt = test_family.defaults.latent
    assert list(FAMILIES) == [WAN21_T2V, WAN22_TI2V, test_family] and EXPORTED is FAMILIES   # one live registry
    assert family("Test8 T2V") is test_family
    assert identify(meta_state(8), "t.safetensors") is test_family
    assert detect_family(save_test_backbone(tmp_path / "t.safetensors")) is test_family
    assert format_for_channels(8) is fmt and formats()[-1] is fmt
    assert to_model_space(torch.zeros(1, 8, 1, 1, 1)).shape == (1, 8, 1, 1, 1)


def test_leaving_the_registration_removes_the_family_and_its_format(tmp_path):
    path = save_test_backbone(tmp_path / "t.safetensors")
    with register(make_test_family()):
        pass
    assert len(FAMILIES) == 2 and format_for_channels(8) is None
    with pytest.raises(CheckpointError, match="is not a Wan2.1 text-to-video or Wan2.2 TI2V-5B transformer"):
        detect_family(path)


def test_a_second_family_of_the_same_name_is_refused(test_family):
    with pytest.raises(ValueError, match="a backbone family named 'Test8 T2V' is already registered"):
        register(make_test_family())
    assert len(FAMILIES) == 3


def test_a_family_whose_latents_cannot_be_told_apart_is_refused_and_leaves_nothing_behind():
    import dataclasses
    fam = make_test_family()
    clash = dataclasses.replace(fam.defaults.latent, mean=(0.0,) * 16, std=(1.0,) * 16)
    other = dataclasses.replace(fam, name="Clash", defaults=dataclasses.replace(fam.defaults, latent=clash))
    with pytest.raises(ValueError, match="latent format Test8 has 16 channels like Wan2.1"):
        register(other)
    assert len(FAMILIES) == 2 and len(formats()) == 2


def test_a_family_sharing_a_wan_format_keeps_it_when_removed():
    import dataclasses
    shared = dataclasses.replace(WAN21_T2V, name="Another Wan2.1 family")
    with register(shared):
        assert family("Another Wan2.1 family") is shared
    assert format_for_channels(16) is WAN21_T2V.defaults.latent


def test_the_wan2_1_t2v_and_wan2_2_ti2v_families_are_registered():
    assert [f.name for f in FAMILIES] == ["Wan2.1 text-to-video", "Wan2.2 TI2V-5B"]
    for family in FAMILIES:
        assert family.default_preset in family.presets and set(family.layout_presets.values()) <= set(family.presets)
        assert set(family.layout_defaults.values()) <= set(family.presets)
