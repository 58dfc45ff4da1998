"""``comfy_api.latest`` (stand-in): ``ComfyExtension``, ``io`` and ``ui``."""
from __future__ import annotations

from abc import ABC, abstractmethod

from . import _io as io
from . import _ui as ui


class ComfyExtension(ABC):
    async def on_load(self) -> None:
        """Initialises the extension's global resources."""

    @abstractmethod
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        """The extension's node classes."""


IO, UI = io, ui
__all__ = ["ComfyExtension", "io", "IO", "ui", "UI"]
