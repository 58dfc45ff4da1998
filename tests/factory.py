"""The tiny models the tests build, and a third backbone family that exists only here.

``tiny_config`` / ``tiny_model`` / ``randomise``: core's tiny-model factory (``core/app/tiny.py``, shared with the
benchmarks and the demo): a random Wan transformer of 2 layers and 2 heads (any latent channel count).
``golden_config``: the architecture of the golden cases' tiny backbone (tests/data/golden/case.json).

``make_test_family(root)``: a family unlike both Wan ones — 8 latent channels with their own statistics, 4×
spatial and 2× temporal compression, 12 fps, blocks of 2 latent frames, window 10, sink 2 — built from the
modules under ``root`` ("core" for the library as the tests import it, "<pack>.core" for the copy the nodes
use: each copy has its own registry). ``register`` it (``with ...registry.register(make_test_family()):``) and
every lookup sees it; ``save_test_backbone`` writes a checkpoint of it that the loader recognises by its
channel count.
"""
from __future__ import annotations

import importlib
import json
from dataclasses import asdict
from pathlib import Path

from core.app.tiny import randomise, tiny_config, tiny_model  # noqa: F401  (the tests import them from here)
from core.model.transformer import WanConfig
from paths import GOLDEN

TEST_CHANNELS = 8
TEXT_DIM = 32


def golden_config() -> WanConfig:
    """The golden cases' tiny backbone, as their case.json states it."""
    arch = json.loads((GOLDEN / "case.json").read_text())["arch"]
    return WanConfig(dim=arch["dim"], ffn_dim=arch["ffn_dim"], num_layers=arch["num_layers"],
                     num_heads=arch["num_heads"], freq_dim=arch["freq_dim"], text_dim=arch["text_dim"],
                     in_dim=16, out_dim=16)


def make_test_family(root: str = "core"):
    """The test-only backbone family (a ``BackboneFamily`` of the modules under ``root``)."""
    mod = lambda name: importlib.import_module(f"{root}.{name}")      # noqa: E731
    fmt_mod, wan_arch, family_mod = mod("latents.format"), mod("families.wan_arch"), mod("families.family")
    transformer, defaults_mod, config = mod("model.transformer"), mod("sampling.defaults"), mod("sampling.config")
    c = TEST_CHANNELS
    latent = fmt_mod.LatentFormat(
        "Test8", "the test VAE", mean=tuple(0.1 * i - 0.3 for i in range(c)), std=tuple(0.5 + 0.1 * i for i in range(c)),
        stride=4, time_stride=2, fps=12, vae_file="test8_vae.safetensors", vae_original="Test8_VAE.pth",
        comfy_latent="Test8")
    pick = "pick a Test8 checkpoint (8 latent channels)"
    return family_mod.BackboneFamily(
        name="Test8 T2V", expected="a Test8 transformer (Wan names, 8 latent channels)", pick=pick,
        recognise=lambda sd: wan_arch.recognise(sd) and wan_arch.in_channels(sd) == c,
        refusals=(),
        read_sizes=lambda sd, path: wan_arch.read_sizes(sd, path, c, "Test8 latents", pick),
        shapes=wan_arch.expected_shapes, describe=wan_arch.describe,
        check_file_config=wan_arch.config_checker(c, ("t2v",), "Test8", pick),
        head_dim=32,
        make_config=lambda sizes, heads: transformer.WanConfig(**asdict(sizes), num_heads=heads),
        build=transformer.WanTransformer,
        defaults=defaults_mod.FamilyDefaults(latent, frames_per_block=2, window=10, sink=2, sampler="renoise",
                                             steps=(1000, 500), sampling_steps=2, shift=3.0,
                                             shots=config.ShotConfig(), switch="recache", start_block="short",
                                             latent_hw=(4, 6)),
        lora_file="no LoRA", presets=("Test8",), layout_presets={}, name_hints=(), layout_defaults={},
        default_preset="Test8")


def save_test_backbone(path: Path, seed: int = 0) -> Path:
    """A random tiny transformer of the test family (8 channels in and out) as bare-named safetensors, its head
    count in the metadata."""
    from core.formats import save_backbone_safetensors
    model = tiny_model(seed, channels=TEST_CHANNELS)
    return save_backbone_safetensors(model, path, model.cfg)
