"""ComfyUI-LongLive-RAG: retrieval-augmented long video generation for ComfyUI.

ComfyUI imports this folder as a package from custom_nodes/; everything inside uses relative imports.
"""
# Served at /extensions/<folder>/: node help pages in web/docs/<NodeId>.md (and <NodeId>/<locale>.md).
WEB_DIRECTORY = "./web"

if __package__:  # imported as a package (ComfyUI). Tools that load this file on its own (e.g. pytest
    # collecting the checkout as a directory whose name is not an identifier) get an empty module.
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

    __all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
