"""What a backbone family is to the loader, and the checks every family gets from that description.

A family (e.g. Wan2.1 text-to-video) is one ``BackboneFamily`` value: how to recognise its tensor
names, which neighbouring models to refuse by name, how to read its sizes from weight shapes, the
exact key set and shapes those sizes imply, its documented head size, how to build its model and
how to name its presets. The registry of families is ``families.py``; the loader never branches on
a family by name.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from ..sampling.defaults import FamilyDefaults
from ..files.safe_reader import CheckpointError

State = Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class Refusal:
    """A neighbouring model that shares the family's names but cannot run here, refused by name."""
    applies: Callable[[State, Path], bool]  # sees bare names and shapes (meta tensors are fine) and the path
    found: Callable[[State], str]       # what the file is, e.g. "is a Wan VACE (control) model (vace_* keys)"
    fix: str = ""                       # the fix, when it is not the family's ``pick``


@dataclass(frozen=True)
class BackboneFamily:
    """One registry entry. ``sizes`` is the family's architecture without a head count (no weight shape
    depends on it); ``config`` is what the model is built from."""
    name: str                                   # "Wan2.1 T2V", used in errors
    expected: str                               # what a checkpoint of the family holds, for errors
    pick: str                                   # the fix when the user gave another kind of model
    recognise: Callable[[State], bool]          # do these bare names look like the family's?
    refusals: tuple[Refusal, ...]               # checked once per load, before anything else
    read_sizes: Callable[[State, Path], Any]    # weight shapes → sizes; raises CheckpointError
    shapes: Callable[[Any], dict[str, tuple[int, ...]]]   # sizes → every tensor name and its shape
    describe: Callable[[Any], str]              # sizes → "dim 1536, 30 layers, ..."
    check_file_config: Callable[[dict, Any, Path, str], None]  # (config, sizes, path, "config.json") → raise
    head_dim: int | None                        # documented head size: num_heads = dim / head_dim
    make_config: Callable[[Any, int], Any]      # sizes + head count → model config (may raise ValueError)
    build: Callable[[Any], torch.nn.Module]     # model config → module (called on the meta device)
    defaults: FamilyDefaults                    # how its backbones run unless told otherwise (published configs)
    lora_file: str                              # the LoRA released for it, for errors
    presets: tuple[str, ...]                    # the backbone names users know, e.g. "Self-Forcing"
    layout_presets: Mapping[str, str]           # file layout → preset, when the layout proves it
    name_hints: tuple[tuple[str, str], ...]     # (file-name fragment, preset)
    layout_defaults: Mapping[str, str]          # file layout → preset, when the name does not tell
    default_preset: str                         # when neither layout nor name tells
    released: Any = None                        # the sizes of its released checkpoints (memory estimates in docs)
    # presets trained to run otherwise (same weights' shapes, other run settings: frame-wise blocks, the rolling
    # sampler), told by name: preset → its FamilyDefaults; their name hints are checked before the layout's preset
    variants: Mapping[str, FamilyDefaults] = field(default_factory=dict)

    def as_variant(self, preset: str) -> "BackboneFamily":
        """This family as its variant ``preset`` runs (named after it, its defaults; no variants of its own): what
        the generated docs ask for a variant's numbers, as they ask a family."""
        return replace(self, name=preset, defaults=self.variants[preset], presets=(preset,), variants={})

    def defaults_for(self, preset: str | None) -> FamilyDefaults:
        """The run settings of a backbone of this family detected as ``preset``: its variant's, else the family's."""
        return self.variants.get(preset, self.defaults) if preset else self.defaults


def refusal(family: BackboneFamily, state: State, path) -> CheckpointError | None:
    """The error for a model of a neighbouring task, or None."""
    for r in family.refusals:
        if r.applies(state, Path(path)):
            return CheckpointError(f"backbone '{path}' {r.found(state)}, which is not supported: this node pack "
                                   f"runs {family.name} backbones ({', '.join(family.presets)}); {r.fix or family.pick}")
    return None


def check_keys(family: BackboneFamily, state: State, sizes, path) -> None:
    """The key set must be exactly that of a family model of these sizes, with matching shapes.
    Needs no head count: no weight shape depends on it."""
    expected = family.shapes(sizes)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(state[k].shape) != expected[k])
    if not (missing or unexpected or wrong):
        return
    found = []
    if missing:
        found.append(f"{len(missing)} missing (e.g. {', '.join(missing[:4])})")
    if unexpected:
        found.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:4])})")
    if wrong:
        found.append("wrong shapes: " + ", ".join(f"{k} {list(state[k].shape)} instead of {list(expected[k])}"
                                                  for k in wrong[:3]))
    raise CheckpointError(
        f"backbone '{path}' does not match a {family.name} transformer ({family.describe(sizes)}; {len(expected)} "
        f"tensors): {'; '.join(found)}. The file is incomplete or saved from a modified model — download it again "
        f"or {family.pick}")


def resolve_heads(family: BackboneFamily, sizes, num_heads: int | None, stated: int | None, path) -> tuple[int, str]:
    """(head count, where it came from): the caller's ``num_heads``, else the file's own config / metadata,
    else the family's documented head size. Never guessed: without any of these the error names the fix."""
    given = (int(num_heads), "num_heads") if num_heads is not None else \
        (stated, "the file's config") if stated is not None else None
    if given is not None:
        if given[0] < 1:
            raise CheckpointError(f"backbone '{path}': {given[0]} attention heads (from {given[1]}) is not a head "
                                  f"count; pass a positive num_heads that divides dim {sizes.dim}")
        return given
    if family.head_dim and sizes.dim % family.head_dim == 0:
        return sizes.dim // family.head_dim, f"the {family.name} head size {family.head_dim}"
    why = (f"not a multiple of the {family.name} head size {family.head_dim}" if family.head_dim
           else f"and {family.name} has no standard head size")
    raise CheckpointError(
        f"backbone '{path}' has dim {sizes.dim}, {why}, and the file does not state its number of attention heads; "
        "pass it (num_heads= / CLI --num-heads / node input num_heads), or store it in the file's metadata "
        "(save_backbone_safetensors(..., config) writes {\"config\": {\"num_heads\": N, ...}})")


def make_config(family: BackboneFamily, sizes, heads: int, source: str, path):
    """The model config; a head count that does not fit dim fails naming where it came from."""
    try:
        return family.make_config(sizes, heads)
    except ValueError as exc:
        raise CheckpointError(f"backbone '{path}': {heads} attention heads (from {source}) do not fit dim "
                              f"{sizes.dim} ({exc}); give a num_heads that divides {sizes.dim} with an even head "
                              "size") from exc


def preset_for(family: BackboneFamily, layout: str, path: Path) -> str:
    """A variant the file / folder name names (e.g. frame-wise Causal Forcing++, Rolling Forcing), else the preset
    the layout proves, else the one the name suggests, else the layout's usual one, else the default. (One family's
    checkpoints share an architecture: only layout and name differ.)"""
    name = "/".join(path.parts[-2:]).lower().replace("-", "_")
    variant = next((p for hint, p in family.name_hints if p in family.variants and hint in name), None)
    if variant is not None and layout != "longlive":      # a variant trains otherwise: its name wins over the layout
        return variant
    if layout in family.layout_presets:
        return family.layout_presets[layout]
    for hint, preset in family.name_hints:
        if hint in name:
            return preset
    return family.layout_defaults.get(layout, family.default_preset)
