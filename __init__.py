"""ComfyUI-LongLive-RAG: retrieval-augmented long video generation for ComfyUI.

ComfyUI imports this package from custom_nodes/; everything inside uses relative imports.
"""
from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
