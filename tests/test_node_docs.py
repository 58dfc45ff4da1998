"""Node help pages (web/docs) and translations (locales): every node has its pages, every input and
output its Chinese entry, the English locale is what the node classes say, and pages link only to
files that the ComfyUI frontend can load."""
import json
import re
import sys
from collections import Counter
from pathlib import Path

from pack import PACK, N, load_script
from paths import ROOT

LOCALES = ROOT / "locales"
CJK = re.compile(r"[\u4e00-\u9fff]")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".webp", ".svg"}


load = load_script     # the build scripts these tests read


BUILD = load("locales_build", LOCALES / "build.py")
DOCS = ROOT / PACK.WEB_DIRECTORY / "docs"


def read_json(rel: str) -> dict:
    return json.loads((LOCALES / rel).read_text(encoding="utf-8"))


def inputs_of(cls) -> list[str]:
    return [i.id for i in cls.GET_SCHEMA().inputs]


def outputs_of(cls) -> list[str]:
    return [o.display_name for o in cls.GET_SCHEMA().outputs]


def pages() -> dict[str, Path]:
    return {f"{node_id} {lang}": path for node_id in N
            for lang, path in (("en", DOCS / f"{node_id}.md"), ("zh", DOCS / node_id / "zh.md"))}


def test_web_directory_is_exported_and_holds_the_help_pages():
    assert "WEB_DIRECTORY" in PACK.__all__
    assert (ROOT / PACK.WEB_DIRECTORY).resolve() == DOCS.parent.resolve() and DOCS.is_dir()


def test_every_node_has_an_english_and_a_chinese_help_page():
    missing = [name for name, path in pages().items() if not path.is_file()]
    assert not missing, f"help pages missing: {missing} (web/docs/<NodeId>.md and web/docs/<NodeId>/zh.md)"
    for name, path in pages().items():
        text = path.read_text(encoding="utf-8")
        assert text.startswith("# "), f"{name}: a page begins with its node's title"
        if name.endswith(" zh"):
            assert CJK.search(text), f"{name} is not in Chinese"


def test_help_pages_name_every_input_and_output_of_their_node():
    for node_id, cls in N.items():
        for lang, path in (("en", DOCS / f"{node_id}.md"), ("zh", DOCS / node_id / "zh.md")):
            text = path.read_text(encoding="utf-8")
            undocumented = [n for n in inputs_of(cls) + outputs_of(cls) if f"**{n}**" not in text and f"`{n}`" not in text]
            assert not undocumented, f"{path.relative_to(ROOT)} does not describe {undocumented}"


def test_help_pages_link_only_to_images_that_exist():
    """The frontend prefixes a relative image with /extensions/<pack>/docs/ for every page of a pack (the
    zh page too) and leaves relative links alone (they would open inside the app): relative targets must
    be images, and they resolve against web/docs/."""
    target = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)[^)]*\)|<img[^>]*\ssrc=['\"]([^'\"]+)")
    for name, path in pages().items():
        for m in target.finditer(path.read_text(encoding="utf-8")):
            ref = m.group(1) or m.group(2)
            if re.match(r"https?://|#", ref):
                continue
            assert Path(ref).suffix.lower() in IMAGE_SUFFIXES, f"{name}: relative link {ref!r} would open inside the app"
            assert not ref.startswith("/") and (DOCS / ref).is_file(), f"{name}: {ref!r} is not a file under web/docs/"


def test_english_locale_is_generated_from_the_node_classes():
    built = BUILD.build(N)
    assert set(built) == {"en/nodeDefs.json", "en/main.json"}
    for rel, content in built.items():
        assert (LOCALES / rel).read_text(encoding="utf-8") == BUILD.dump(content), \
            f"locales/{rel} is stale: run python locales/build.py"


def test_every_output_has_an_english_tooltip():
    for node_id, entry in read_json("en/nodeDefs.json").items():
        for index, output in entry["outputs"].items():
            assert output["tooltip"], f"{node_id} output {index} ({output['name']}) has no tooltip"


def test_every_node_input_and_output_has_a_chinese_name_and_tooltip():
    zh = read_json("zh/nodeDefs.json")
    missing = []
    for node_id, cls in N.items():
        entry = zh.get(node_id, {})
        missing += [f"{node_id}.{key}" for key in ("display_name", "description") if not CJK.search(entry.get(key, ""))]
        for name in inputs_of(cls):
            item = entry.get("inputs", {}).get(name, {})
            missing += [f"{node_id}.inputs.{name}.{key}" for key in ("name", "tooltip") if not item.get(key)]
        for index in range(len(outputs_of(cls))):
            item = entry.get("outputs", {}).get(str(index), {})
            missing += [f"{node_id}.outputs.{index}.{key}" for key in ("name", "tooltip") if not item.get(key)]
    assert not missing, f"locales/zh/nodeDefs.json lacks {missing}"


def test_chinese_tooltips_are_translations_not_copies():
    zh, en = read_json("zh/nodeDefs.json"), read_json("en/nodeDefs.json")
    for node_id, entry in zh.items():
        assert node_id in en, f"locales/zh/nodeDefs.json translates {node_id}, which is not a node"
        for kind in ("inputs", "outputs"):
            for key, item in entry[kind].items():
                assert CJK.search(item["tooltip"]), f"{node_id}.{kind}.{key}.tooltip is not in Chinese"


def test_every_category_has_a_chinese_name():
    en, zh = read_json("en/main.json")["nodeCategories"], read_json("zh/main.json")["nodeCategories"]
    assert {seg for cls in N.values() for seg in cls.GET_SCHEMA().category.split("/")} == set(en)
    assert all(zh.get(seg) for seg in en), f"locales/zh/main.json lacks categories {set(en) - set(zh)}"


def test_the_window_diagram_draws_the_published_context():
    diagram = load("window_diagram", ROOT / "tools" / "window_diagram.py")
    kv_cache = sys.modules[f"{PACK.__name__}.core.context.kv_cache"]
    rag, native = Counter(diagram.row_kinds(True)), Counter(diagram.row_kinds(False))
    policy = kv_cache.CachePolicy.retrieval(diagram.WINDOW, diagram.SINK, diagram.TOP_K)
    assert (rag["sink"], rag["retrieved"], rag["local"] + rag["block"]) == (policy.sink, policy.top_k,
                                                                             policy.local_frames)
    assert native["local"] + native["block"] == kv_cache.CachePolicy.native(diagram.WINDOW, diagram.SINK).local_frames
    assert (DOCS / "images" / "ar_window.png").is_file()
