"""Regenerates locales/en/nodeDefs.json and locales/en/main.json from the nodes' own definitions.

    python locales/build.py        # from the repository root

English lives in the node classes (display names, DESCRIPTION, tooltips, OUTPUT_TOOLTIPS); the en files
only mirror it in ComfyUI's i18n format, so a translator sees every string there is. Other languages
(locales/zh/) are written by hand against them. tests/test_node_docs.py fails when the en files are
stale and when a translation lacks an entry for any node, input, output or category.

Format (ComfyUI frontend: ``nodeDefs.<id>.inputs.<input>.name`` etc.; categories are translated one
``/``-separated segment at a time from ``nodeCategories.<segment>`` in main.json):
    nodeDefs.json  {"<NodeId>": {"display_name", "description",
                                 "inputs": {"<input>": {"name", "tooltip"}},
                                 "outputs": {"0": {"name", "tooltip"}, ...}}}
    main.json      {"nodeCategories": {"<segment>": "<segment>"}}
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tools"))
from load_pack import load_pack  # noqa: E402


def node_strings(cls, display_name: str) -> dict:
    """The translatable strings of one node class (the only place that reads the node API)."""
    inputs = {}
    types = cls.INPUT_TYPES()
    for section in ("required", "optional"):
        for name, spec in types.get(section, {}).items():
            options = spec[1] if len(spec) > 1 else {}
            inputs[name] = {"name": name, "tooltip": options.get("tooltip", "")}
    names = getattr(cls, "RETURN_NAMES", None) or cls.RETURN_TYPES
    tooltips = getattr(cls, "OUTPUT_TOOLTIPS", None) or ()
    outputs = {str(i): {"name": name, "tooltip": tooltips[i] if i < len(tooltips) else ""}
               for i, name in enumerate(names)}
    return {"display_name": display_name, "description": cls.DESCRIPTION, "inputs": inputs, "outputs": outputs}


def build(mappings: dict, display_names: dict) -> dict[str, dict]:
    """{path under locales/: content} of the English files."""
    node_defs = {node_id: node_strings(cls, display_names.get(node_id, node_id)) for node_id, cls in mappings.items()}
    segments = sorted({seg for cls in mappings.values() for seg in cls.CATEGORY.split("/")})
    return {"en/nodeDefs.json": node_defs, "en/main.json": {"nodeCategories": {s: s for s in segments}}}


def dump(content: dict) -> str:
    return json.dumps(content, indent=2, ensure_ascii=False) + "\n"


def pack_module():
    """The pack, imported as a package (as ComfyUI does)."""
    return load_pack()


def main() -> None:
    pack = pack_module()
    for rel, content in build(pack.NODE_CLASS_MAPPINGS, pack.NODE_DISPLAY_NAME_MAPPINGS).items():
        path = HERE / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dump(content), encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
