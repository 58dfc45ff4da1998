"""Numbers users read are rendered from their owners: the family registry, the strategy registry, the memory
estimate (core/sampling/budget.py) and the history pool's accounting (core/app/facts.py and its text modules).
Every generated block of a help page or the README, every generated Chinese tooltip and every workflow note
equals what the sources give now, and a changed source changes them."""
import dataclasses
import importlib
import json
import re

import pytest
import torch

from pack import PACK, N, load_script
from paths import DATA, ROOT


def module(name: str):
    return importlib.import_module(f"{PACK.__name__}.{name}")


load = load_script     # the build scripts these tests read


F, X, T = module("core.app.facts"), module("core.app.fact_text"), module("core.app.fact_tables")
REGISTRY = module("core.families.registry")
BUILD = load("locales_build", ROOT / "locales" / "build.py")
RENDER = BUILD.renderer(PACK)
FIX = "run python locales/build.py"

# The generated blocks a page must keep (the numbers they replace must not come back as hand-typed text).
REQUIRED = {
    "README.md": {"family-table", "strategy-table", "strategy-memory", "sampler-memory", "device-memory:wan21",
                  "device-memory:longlive2", "pool-memory:wan21", "pool-memory:longlive2", "lengths"},
    "web/docs/LongLiveRAG_ContextStrategy.md": {"strategy-table", "strategy-windows", "strategy-sinks",
                                                 "strategy-options"},
    "web/docs/LongLiveRAG_ContextStrategy/zh.md": {"strategy-table", "strategy-windows", "strategy-sinks",
                                                    "strategy-options"},
    "web/docs/LongLiveRAG_ARBlockSampler.md": {"family-table", "sampler-memory", "lengths", "block-lengths"},
    "web/docs/LongLiveRAG_ARBlockSampler/zh.md": {"family-table", "sampler-memory", "lengths", "block-lengths"},
    "web/docs/LongLiveRAG_HistoryPool.md": {"pool-memory:wan21", "pool-memory:longlive2"},
    "web/docs/LongLiveRAG_HistoryPool/zh.md": {"pool-memory:wan21", "pool-memory:longlive2"},
    "web/docs/LongLiveRAG_LoadBackbone.md": {"backbone-memory", "heads"},
    "web/docs/LongLiveRAG_LoadBackbone/zh.md": {"backbone-memory", "heads"},
}


def blocks(text: str) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in BUILD.MARKER.finditer(text)]


def family(key: str):
    return F.family_by_key(key)


# ------------------------------------------------------------------------------------------ committed text
@pytest.mark.parametrize("path,lang", BUILD.generated_files(), ids=lambda v: str(v).split("/")[-1])
def test_every_generated_block_of_a_page_is_what_the_registries_give(path, lang):
    for name, held in blocks(path.read_text(encoding="utf-8")):
        want = RENDER(name, lang)
        got = held.strip("\n") if held.startswith("\n") else held
        assert got == want, f"{path.relative_to(ROOT)}: generated block '{name}' is stale: {FIX}"


def test_pages_keep_their_generated_blocks():
    for rel, names in REQUIRED.items():
        held = {name for name, _ in blocks((ROOT / rel).read_text(encoding="utf-8"))}
        assert names <= held, f"{rel} lost its generated blocks {sorted(names - held)}; put the markers back"


def test_chinese_tooltips_that_quote_numbers_are_rendered_from_their_templates():
    committed = json.loads((ROOT / "locales" / "zh" / "nodeDefs.json").read_text(encoding="utf-8"))
    assert committed == BUILD.zh_node_defs(RENDER), f"locales/zh/nodeDefs.json is stale: {FIX}"


def test_every_chinese_number_template_is_a_real_entry_with_known_fragments():
    templates = json.loads((ROOT / "locales" / "zh" / "numbers.json").read_text(encoding="utf-8"))
    for node_id, entry in templates.items():
        schema = N[node_id].GET_SCHEMA()
        assert set(entry.get("inputs", {})) <= {i.id for i in schema.inputs}, node_id
        assert {int(k) for k in entry.get("outputs", {})} <= set(range(len(schema.outputs))), node_id
    names = set(BUILD.PLACEHOLDER.findall(json.dumps(templates, ensure_ascii=False)))
    assert names and names <= set(X.FRAGMENTS), f"unknown fragments {names - set(X.FRAGMENTS)}"


def test_the_build_check_passes_on_the_committed_files():
    assert BUILD.main(["--check"]) == 0, FIX


# ------------------------------------------------------------------------------------------ generated from the sources
def test_sampler_tooltips_quote_every_familys_own_settings():
    inputs = {i.id: i.tooltip for i in N["LongLiveRAG_ARBlockSampler"].GET_SCHEMA().inputs}
    for f in F.families():
        d, label = f.defaults, F.label(f)
        w, h = F.size_px(d)
        assert f"{label} {w}" in inputs["width"] and f"{label} {h}" in inputs["height"]
        assert f"{label} {d.window}" in inputs["local_attn_size"] and f"{label} {d.sink}" in inputs["sink_size"]
        assert f"{label} {d.frames_per_block}" in inputs["frames_per_block"]
        assert f"{F.length_for(d, 30)} ≈" in inputs["length"]


def test_context_strategy_tooltips_quote_every_strategys_defaults():
    inputs = {i.id: i.tooltip for i in N["LongLiveRAG_ContextStrategy"].GET_SCHEMA().inputs}
    for name in F.STRATEGIES:
        options = F.strategy_defaults(name, family("wan21"))["options"]
        for option, value in options.items():
            assert f"{option}={value}" in inputs["options"], (name, option)
        for f in F.families():
            assert X.strategy_defaults_text(name, f) in inputs["strategy"], (name, f.name)


def test_strategy_defaults_are_what_a_run_resolves():
    """The one function the texts read (facts.strategy_defaults) agrees with the plan a run gets, and every
    strategy runs on every family with its defaults."""
    plan = module("core.app.plan")
    request = module("core.sampling.request").SamplingRequest
    for f in F.families():
        for name in F.STRATEGIES:
            assert F.strategy_runs(name, f), (f.name, name)
            d = F.strategy_defaults(name, f)
            sampling = request(strategy=name, retrieval=F.RETRIEVAL if name == "rag" else None)
            cfg = plan.plan_run(plan.RunRequest(sampling, frames=f.defaults.frames_per_block), f.defaults).config
            assert (cfg.window, cfg.sink, cfg.switch.mode, dict(cfg.strategy_options)) == \
                (d["window"], d["sink"], d["switch"], d["options"]), (f.name, name)


def test_lengths_are_whole_blocks_of_at_least_the_duration():
    for f in F.families():
        d = f.defaults
        for seconds in F.DURATIONS:
            n = F.length_for(d, seconds)
            latent = F.latent_frames_for(d, seconds)
            assert latent % d.frames_per_block == 0 and (n - 1) % F.time_stride(d) == 0
            assert (n - 1) / d.latent.fps >= seconds - F.block_seconds(d) and latent * F.time_stride(d) >= \
                seconds * d.latent.fps


@pytest.mark.parametrize("key,keys_file", [("wan21", "wan2.1_t2v_1.3b_keys.json"),
                                           ("longlive2", "wan2.2_ti2v_5b_keys.json")])
def test_released_sizes_are_the_released_checkpoints_key_set(key, keys_file):
    """The memory figures use the family's released sizes: exactly the real checkpoint's tensors."""
    real = json.loads((DATA / keys_file).read_text())["base_keys"]
    f = family(key)
    assert {k: list(v) for k, v in f.shapes(f.released).items()} == real
    assert F.released(f).parameters == sum(torch.Size(v).numel() for v in real.values())


def test_device_memory_is_the_budget_of_the_released_model():
    budget = module("core.sampling.budget")
    for f in F.families():
        model = F._model(f)
        for name in ("native", "rag"):
            cfg = module("core.app.plan").sampling_config(f, strategy=name,
                                                          retrieval=F.RETRIEVAL if name == "rag" else None)
            need = budget.device_bytes_needed(model, cfg, f.defaults.latent_hw, 1, torch.bfloat16)
            assert F.device_memory(f, name).needed == need


@pytest.mark.parametrize("storage", ["kv", "kv-half", "kv-fp8", "latent"])
def test_pool_frame_bytes_are_what_a_pool_counts(storage):
    """frame_bytes (meta tensors, nothing stored) is the pool's own bytes_per_frame."""
    pool_mod = module("core.retrieval.pool")
    k = [torch.randn(1, 6, 2, 8, dtype=torch.bfloat16) for _ in range(3)]
    latent = torch.randn(1, 4, 2, 3, dtype=torch.bfloat16)
    pool = pool_mod.HistoryPool(module("core.retrieval.config").PoolConfig(storage=storage),
                                recompute=lambda lat: (lat, lat))
    pool.append(k, k, latent=latent)
    meta = [t.to("meta") for t in k]
    assert pool_mod.frame_bytes(storage, meta, meta, latent.to("meta")) == pool.bytes_per_frame
    pool.close()


def changed_family(monkeypatch, **defaults):
    """The registry with Wan2.1's defaults changed (as a fix to its module would change them)."""
    old = family("wan21")
    new = dataclasses.replace(old, defaults=dataclasses.replace(old.defaults, **defaults))
    monkeypatch.setattr(REGISTRY.FAMILIES, "_families", [new if f is old else f for f in REGISTRY.FAMILIES])
    return new


def test_a_changed_family_number_makes_every_page_that_quotes_it_stale(monkeypatch):
    before = {p: p.read_text(encoding="utf-8") for p, _ in BUILD.generated_files()}
    changed_family(monkeypatch, window=16)
    assert "Wan 1.3B 16" in X.fragment("window") and "| 3 / 16 / 1 |" in T.render("family-table")
    stale = {p.relative_to(ROOT).as_posix() for p, lang in BUILD.generated_files()
             if BUILD.regenerate(before[p], lang, RENDER) != before[p]}
    assert {"README.md", "web/docs/LongLiveRAG_ARBlockSampler.md", "web/docs/LongLiveRAG_ARBlockSampler/zh.md",
            "web/docs/LongLiveRAG_ContextStrategy.md", "web/docs/LongLiveRAG_HistoryPool.md"} <= stale
    tooltip = {i.id: i.tooltip for i in N["LongLiveRAG_ARBlockSampler"].GET_SCHEMA().inputs}["local_attn_size"]
    assert "Wan 1.3B 16" in tooltip


def test_a_changed_family_number_changes_the_workflow_notes(monkeypatch):
    notes = load("workflow_notes_for_facts", ROOT / "workflows" / "notes.py")
    wf = json.loads((ROOT / "workflows" / "longlive_rag_self_forcing_t2v.json").read_text())
    before = notes.note_for(wf)
    assert "(12 frames)" in before
    if notes.F is not F:                       # notes.py reads the pack it loads itself
        monkeypatch.setattr(notes.F.registry.FAMILIES, "_families", [
            dataclasses.replace(f, defaults=dataclasses.replace(f.defaults, window=16))
            if notes.F.key(f) == "wan21" else f for f in notes.F.registry.FAMILIES])
    else:
        changed_family(monkeypatch, window=16)
    after = notes.note_for(wf)
    assert "(16 frames)" in after and "(12 frames)" not in after


# ------------------------------------------------------------------------------------------ the marker rewriter
def test_regenerate_keeps_blocks_as_blocks_and_inline_inline():
    text = "a <!-- generated:top-k -->9<!-- /generated --> b\n<!-- generated:lengths -->\nold\n<!-- /generated -->\n"
    out = BUILD.regenerate(text, "en", RENDER)
    assert f"a <!-- generated:top-k -->{F.RETRIEVAL.top_k}<!-- /generated --> b" in out
    assert f"<!-- generated:lengths -->\n\n{X.fragment('lengths')}\n\n<!-- /generated -->" in out
    assert BUILD.regenerate(out, "en", RENDER) == out


def test_an_unknown_generated_block_names_the_file_and_the_known_names():
    with pytest.raises(KeyError, match=r"README\.md: generated block 'windw'.*known:.*window"):
        BUILD.regenerate("<!-- generated:windw --><!-- /generated -->", "en", RENDER, "README.md")
    with pytest.raises(KeyError, match="pool-memory:<wan21|longlive2>"):
        T.render("pool-memory")


def test_chinese_fragments_are_chinese_and_keep_the_numbers():
    for name in ("lengths", "block-lengths", "window", "strategy-windows", "retrieval-window"):
        en, zh = X.fragment(name), X.fragment(name, "zh")
        assert re.search(r"[\u4e00-\u9fff]", zh), name
        assert re.findall(r"\d+(?:\.\d+)?", en) == re.findall(r"\d+(?:\.\d+)?", zh), name
