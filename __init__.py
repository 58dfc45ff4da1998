"""ComfyUI-LongLive-RAG: retrieval-augmented long video generation for ComfyUI.

ComfyUI imports this folder as a package from custom_nodes/; everything inside uses relative imports. The nodes
are V3 nodes (``comfy_api.latest``): ComfyUI registers them through ``comfy_entrypoint``.
"""
# Served at /extensions/<folder>/: node help pages in web/docs/<NodeId>.md (and <NodeId>/<locale>.md).
WEB_DIRECTORY = "./web"

if __package__:  # imported as a package (ComfyUI). Tools that load this file on its own (e.g. pytest
    # collecting the checkout as a directory whose name is not an identifier) get an empty module.
    from .nodes import comfy_entrypoint

    __all__ = ["comfy_entrypoint", "WEB_DIRECTORY"]
