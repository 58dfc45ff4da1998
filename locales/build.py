"""Regenerates locales/en/nodeDefs.json and locales/en/main.json from the nodes' own definitions.

    python locales/build.py        # from the repository root

English lives in the nodes' V3 schemas (display names, descriptions, input and output tooltips); the en files
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
from load_pack import load_pack, pack_nodes  # noqa: E402


def node_strings(schema) -> dict:
    """The translatable strings of one node's V3 schema (``io.Schema``; the only place that reads it)."""
    inputs = {i.id: {"name": i.id, "tooltip": i.tooltip or ""} for i in schema.inputs}
    outputs = {str(n): {"name": o.display_name, "tooltip": o.tooltip or ""} for n, o in enumerate(schema.outputs)}
    return {"display_name": schema.display_name or schema.node_id, "description": schema.description,
            "inputs": inputs, "outputs": outputs}


def build(nodes: dict) -> dict[str, dict]:
    """{path under locales/: content} of the English files, from {node id: node class}."""
    schemas = {node_id: cls.GET_SCHEMA() for node_id, cls in nodes.items()}
    segments = sorted({seg for schema in schemas.values() for seg in schema.category.split("/")})
    return {"en/nodeDefs.json": {node_id: node_strings(schema) for node_id, schema in schemas.items()},
            "en/main.json": {"nodeCategories": {s: s for s in segments}}}


def dump(content: dict) -> str:
    return json.dumps(content, indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    for rel, content in build(pack_nodes(load_pack())).items():
        path = HERE / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dump(content), encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
