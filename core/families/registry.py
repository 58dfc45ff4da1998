"""The registry of backbone families the loader knows, and how a state dict is matched to one.

Adding a family is one entry in ``FAMILIES`` (a ``BackboneFamily``, see ``family.py``) plus its tests;
docs/adding-a-backbone-family.md walks through it. ``register(family)`` adds one at run time (a test
family, a plugin), as a context manager that removes it again: every lookup (``identify``, the loader,
``family``, the latent formats' channel lookups) reads the one live registry, so nothing holds a stale copy.
"""
from __future__ import annotations

from typing import Iterator, Sequence

from .family import BackboneFamily, State, refusal
from ..files.safe_reader import CheckpointError
from ..latents.format import add_format, remove_format
from .wan21_t2v import WAN21_T2V
from .wan22_ti2v import WAN22_TI2V


class Registration:
    """A family added by ``register``; leaving its ``with`` block (or ``remove()``) takes it out again, with
    the latent format it brought."""

    def __init__(self, registry: "FamilyRegistry", family: BackboneFamily, added_format: bool):
        self.registry, self.family, self.added_format = registry, family, added_format

    def remove(self) -> None:
        self.registry._remove(self.family)
        if self.added_format:
            remove_format(self.family.defaults.latent)
            self.added_format = False

    def __enter__(self) -> BackboneFamily:
        return self.family

    def __exit__(self, *exc) -> None:
        self.remove()


class FamilyRegistry(Sequence[BackboneFamily]):
    """The known families in lookup order (a live sequence: ``FAMILIES[i]``, ``for f in FAMILIES``)."""

    def __init__(self, families: Sequence[BackboneFamily]):
        self._families = list(families)

    def __getitem__(self, i):
        return self._families[i]

    def __len__(self) -> int:
        return len(self._families)

    def __iter__(self) -> Iterator[BackboneFamily]:
        return iter(tuple(self._families))

    def named(self, name: str) -> BackboneFamily:
        """The family called ``name`` (``BackboneFamily.name``); an error lists the names."""
        found = next((f for f in self._families if f.name == name), None)
        if found is None:
            raise KeyError(f"no backbone family named '{name}'; the registered ones are "
                           f"{', '.join(repr(f.name) for f in self._families)}")
        return found

    def register(self, family: BackboneFamily) -> Registration:
        """Add ``family`` (last in lookup order) and its latent format; returns a context manager that removes
        both. A second family of the same name is an error."""
        if any(f.name == family.name for f in self._families):
            raise ValueError(f"a backbone family named '{family.name}' is already registered; give the new one "
                             "another name or remove the old one first")
        added = add_format(family.defaults.latent)      # its channel count must tell its latents apart
        self._families.append(family)
        return Registration(self, family, added)

    def _remove(self, family: BackboneFamily) -> None:
        if family in self._families:
            self._families.remove(family)


FAMILIES = FamilyRegistry((WAN21_T2V, WAN22_TI2V))


def register(family: BackboneFamily) -> Registration:
    """Add a backbone family to ``FAMILIES`` (see ``FamilyRegistry.register``): ``with register(f): ...``."""
    return FAMILIES.register(family)


def family(name: str) -> BackboneFamily:
    """The registered family called ``name``, e.g. ``family("Wan2.2 TI2V-5B")``."""
    return FAMILIES.named(name)


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
