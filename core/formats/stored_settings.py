"""The settings a converted file carries (core/formats/convert.py writes them): its safetensors metadata entry
``SETTINGS_KEY`` holds JSON with the family, the preset, the file's kind and the family's run settings. Read here
for the loader (the preset of a renamed converted file) and for front ends (``read_settings``)."""
from __future__ import annotations

import json
from dataclasses import dataclass

from ..families.family import BackboneFamily
from ..families.registry import FAMILIES

SETTINGS_KEY = "longlive_rag"        # the metadata entry that marks a file this pack converted


@dataclass(frozen=True)
class StoredSettings:
    """What a converted file's ``SETTINGS_KEY`` metadata says: the family (``BackboneFamily.name``), the preset
    (e.g. "LongLive"), the file's kind ("backbone" | "lora") and the family's run settings when converted
    (frames_per_block, window, sink, sampler, steps, sampling_steps, shift, ...) as plain JSON values."""
    family: str
    preset: str
    kind: str
    settings: dict
    source: dict

    def backbone_family(self) -> BackboneFamily | None:
        """The registered family of that name (its ``defaults``: the run settings), None when not registered."""
        return next((f for f in FAMILIES if f.name == self.family), None)


def read_settings(metadata: dict | None) -> StoredSettings | None:
    """A safetensors metadata dict (str → str) → the settings a converted file carries, or None when the file
    was not converted by this pack (no ``SETTINGS_KEY``, or another tool's text under it)."""
    text = (metadata or {}).get(SETTINGS_KEY)
    try:
        data = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("family"), str):
        return None
    return StoredSettings(family=data["family"], preset=str(data.get("preset", "")), kind=str(data.get("kind", "")),
                          settings=dict(data.get("settings") or {}), source=dict(data.get("source") or {}))
