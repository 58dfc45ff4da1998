"""The registry of backbone families the loader knows, and how a state dict is matched to one.

Adding a family is one entry in ``FAMILIES`` (a ``BackboneFamily``, see ``family.py``) plus its tests;
docs/adding-a-backbone-family.md walks through it.
"""
from __future__ import annotations

from .family import BackboneFamily, State, refusal
from ..files.safe_reader import CheckpointError
from .wan21_t2v import WAN21_T2V
from .wan22_ti2v import WAN22_TI2V

FAMILIES: tuple[BackboneFamily, ...] = (WAN21_T2V, WAN22_TI2V)

# Markers of models people pick by mistake, so the error can say what the file is instead.
_FOREIGN = (("double_blocks.", "a Flux-family image model"), ("joint_blocks.", "a Stable Diffusion 3 model"),
            ("input_blocks.", "a Stable Diffusion UNet"), ("down_blocks.", "a diffusers UNet"),
            ("encoder.conv_stack.", "a LongLive-RAG retrieval encoder (ae_latent_mem.pt; load it as the encoder)"),
            ("encoder.block.", "a T5 text encoder"), ("shared.weight", "a T5 text encoder"),
            ("token_embedding", "a CLIP text encoder"), ("decoder.", "a VAE"), ("encoder.", "a VAE or an encoder"),
            ("lora_A", "a LoRA (pass it as the LoRA, not as the backbone)"),
            ("lora_down", "a LoRA (pass it as the LoRA, not as the backbone)"),
            ("transformer_blocks.", "a transformer of another family (Flux / SD3 / CogVideoX / LTX / Hunyuan)"))


def describe_foreign(keys) -> str | None:
    """A guess at what a state dict of no known family is, e.g. "a Flux-family image model"."""
    text = " ".join(list(keys)[:2000])
    return next((what for marker, what in _FOREIGN if marker in text), None)


def expected_any() -> str:
    """What a backbone file of any registered family holds, for errors."""
    return " or ".join(f.expected for f in FAMILIES)


def identify(state: State, path) -> BackboneFamily:
    """The family whose names these are (bare names; meta tensors are fine). A family that recognises the
    names and refuses none of them wins; else the first refusal is raised (it names the neighbouring model);
    else the error says what the file looks like."""
    refused = None
    for family in FAMILIES:
        error = refusal(family, state, path)
        if error is None and family.recognise(state):
            return family
        refused = refused or error
    if refused is not None:
        raise refused
    what = describe_foreign(state)
    looks = f"it looks like {what}" if what else "it has no tensor names of a known backbone"
    kinds = " or ".join(f.name for f in FAMILIES)
    raise CheckpointError(f"backbone '{path}' is not a {kinds} transformer: {looks} (found {len(state)} tensors, "
                          f"e.g. {sorted(state)[:3]}); expected {expected_any()}. Fix: "
                          + "; or ".join(f.pick for f in FAMILIES))
