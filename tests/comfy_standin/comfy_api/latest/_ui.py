"""``comfy_api.latest.ui`` (stand-in): the UI outputs the pack uses."""
from __future__ import annotations


class PreviewText:
    """Text shown on the node (the executed message's ``text``)."""

    def __init__(self, value: str, **kwargs):
        self.value = value

    def as_dict(self) -> dict:
        return {"text": (self.value,)}
