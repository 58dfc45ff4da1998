"""Regenerates the text that mirrors code: locales/en/ from the nodes' own definitions, the Chinese tooltips that
quote numbers, and the generated blocks of the help pages (web/docs) and the README.

    python locales/build.py            # from the repository root: rewrite what is stale
    python locales/build.py --check    # only list what is stale (exit 1 if anything is)

English lives in the nodes' V3 schemas (display names, descriptions, input and output tooltips); the en files
only mirror it in ComfyUI's i18n format, so a translator sees every string there is. Other languages
(locales/zh/) are written by hand against them, except the entries of locales/zh/numbers.json: tooltips that
quote numbers, written with ``{fragment}`` placeholders (core/app/fact_text.py ``FRAGMENTS``) and filled into
locales/zh/nodeDefs.json here — edit those there. Help pages and the README keep numbers between
``<!-- generated:NAME -->`` and ``<!-- /generated -->`` markers (core/app/fact_tables.py ``render``); the prose
around them is hand-written. tests/test_node_docs.py and tests/test_facts.py fail while anything is stale.

Format (ComfyUI frontend: ``nodeDefs.<id>.inputs.<input>.name`` etc.; categories are translated one
``/``-separated segment at a time from ``nodeCategories.<segment>`` in main.json):
    nodeDefs.json  {"<NodeId>": {"display_name", "description",
                                 "inputs": {"<input>": {"name", "tooltip"}},
                                 "outputs": {"0": {"name", "tooltip"}, ...}}}
    main.json      {"nodeCategories": {"<segment>": "<segment>"}}
"""
from __future__ import annotations

import importlib
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tools"))
from load_pack import load_pack, pack_nodes  # noqa: E402

MARKER = re.compile(r"<!-- generated:([a-z][a-z0-9:-]*) -->(.*?)<!-- /generated -->", re.S)   # names: lower case
PLACEHOLDER = re.compile(r"\{([a-z][\w-]*)\}")
DOCS = ROOT / "web" / "docs"


def node_strings(schema) -> dict:
    """The translatable strings of one node's V3 schema (``io.Schema``; the only place that reads it)."""
    inputs = {i.id: {"name": i.display_name or i.id, "tooltip": i.tooltip or ""} for i in schema.inputs}
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


def renderer(pack=None):
    """``render(name, lang)`` of the pack's core/app/fact_tables.py."""
    pack = pack or load_pack()
    return importlib.import_module(f"{pack.__name__}.core.app.fact_tables").render


def regenerate(text: str, lang: str, render, where: str = "") -> str:
    """``text`` with every generated block re-rendered: a block whose content starts on its own line stays a
    block (its lines between the markers, blank lines around them so that Markdown ends a table or a list
    before the closing marker), any other is inline."""
    def one(m: re.Match) -> str:
        name, old = m.group(1), m.group(2)
        try:
            new = render(name, lang)
        except KeyError as exc:
            raise KeyError(f"{where}: generated block '{name}': {exc.args[0]}") from None
        if old.startswith("\n"):
            new = f"\n\n{new}\n\n"
        return f"<!-- generated:{name} -->{new}<!-- /generated -->"
    return MARKER.sub(one, text)


def generated_files() -> list[tuple[Path, str]]:
    """(file, language) of every page that may hold generated blocks."""
    return ([(p, "en") for p in sorted(DOCS.glob("*.md"))] + [(p, "zh") for p in sorted(DOCS.glob("*/zh.md"))]
            + [(ROOT / "README.md", "en")])


def fill(template, render):
    """A numbers.json template (nested dicts of strings) with every {fragment} rendered in Chinese."""
    if isinstance(template, dict):
        return {k: fill(v, render) for k, v in template.items()}
    return PLACEHOLDER.sub(lambda m: render(m.group(1), "zh"), template)


def merge(into: dict, part: dict) -> dict:
    out = dict(into)
    for k, v in part.items():
        out[k] = merge(into.get(k, {}), v) if isinstance(v, dict) else v
    return out


def zh_node_defs(render) -> dict:
    """locales/zh/nodeDefs.json with the entries of locales/zh/numbers.json filled in."""
    hand = json.loads((HERE / "zh" / "nodeDefs.json").read_text(encoding="utf-8"))
    templates = json.loads((HERE / "zh" / "numbers.json").read_text(encoding="utf-8"))
    return merge(hand, fill(templates, render))


def expected(pack=None) -> dict[Path, str]:
    """{file: the text it should hold} for every file this script writes."""
    pack = pack or load_pack()
    render = renderer(pack)
    out = {HERE / rel: dump(content) for rel, content in build(pack_nodes(pack)).items()}
    out[HERE / "zh" / "nodeDefs.json"] = dump(zh_node_defs(render))
    for path, lang in generated_files():
        out[path] = regenerate(path.read_text(encoding="utf-8"), lang, render, str(path.relative_to(ROOT)))
    return out


def main(argv: list[str] | None = None) -> int:
    check = "--check" in (argv if argv is not None else sys.argv[1:])
    stale = []
    for path, text in expected().items():
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(path.relative_to(ROOT))
        if not check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}")
    if check and stale:
        print("stale (run python locales/build.py): " + ", ".join(map(str, stale)))
    return 1 if check and stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
