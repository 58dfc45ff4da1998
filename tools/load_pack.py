"""Import this checkout as a ComfyUI pack (a package, the way ComfyUI imports custom_nodes/ folders), for
the scripts that read the nodes' own definitions (workflows/build.py, locales/build.py) and the tests.

The nodes are ComfyUI V3 nodes (``comfy_api.latest``). Without ComfyUI (CI: it is not on PyPI) the test
stand-in in tests/comfy_standin provides ``comfy_api``; the node definitions read through it are checked
against a real ComfyUI by tests/integration/test_comfyui.py.
"""
from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAME = "comfyui_longlive_rag"
STANDIN = ROOT / "tests" / "comfy_standin"


def ensure_comfy_api() -> str:
    """Make ``comfy_api`` importable: ComfyUI's own when it is on the path, else the stand-in. Returns its folder."""
    if importlib.util.find_spec("comfy_api") is None:
        sys.path.append(str(STANDIN))
    return str(Path(importlib.util.find_spec("comfy_api").origin).parent)


def load_pack(name: str = NAME):
    """The pack's top-level module (``comfy_entrypoint``, ``WEB_DIRECTORY``), imported as package ``name``."""
    if name in sys.modules:
        return sys.modules[name]
    ensure_comfy_api()
    spec = importlib.util.spec_from_file_location(name, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def pack_nodes(pack) -> dict:
    """{node id: node class}, from the pack's ``comfy_entrypoint`` as ComfyUI registers them."""
    async def node_list():
        extension = await pack.comfy_entrypoint()
        return await extension.get_node_list()

    return {cls.GET_SCHEMA().node_id: cls for cls in asyncio.run(node_list())}
