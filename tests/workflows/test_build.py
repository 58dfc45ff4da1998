"""The example workflows (workflows/build.py) against the node definitions: up to date, known nodes, valid widgets
and links, the published checkpoint files and template metadata."""
import importlib.util
import json

import pytest

from pack import N, schema
from paths import ROOT


def load_builder():
    spec = importlib.util.spec_from_file_location("workflow_build", ROOT / "workflows" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


WORKFLOWS = sorted((ROOT / "workflows").glob("*.json"))


def test_workflow_files_are_up_to_date_with_the_nodes():
    built = load_builder().build()
    assert sorted(built) == [p.name for p in WORKFLOWS]
    for p in WORKFLOWS:
        assert json.loads(p.read_text()) == built[p.name], f"{p.name} is stale: run python workflows/build.py"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflows_use_known_nodes_valid_widgets_and_consistent_links(path):
    builder = load_builder()
    wf = json.loads(path.read_text())
    specs = dict(builder.CORE)
    specs.update({k: builder.node_spec(v) for k, v in N.items()})
    by_id = {n["id"]: n for n in wf["nodes"]}
    for node in wf["nodes"]:
        if node["type"] == "MarkdownNote":       # a web-UI-only note (no backend node)
            continue
        assert node["type"] in specs, f"unknown node type {node['type']}"
        if node["type"] in N:
            widgets = [i for i in schema(node["type"]).inputs if i.get_io_type() in builder.WIDGET_TYPES]
            values = [v for v in node["widgets_values"] if v not in ("fixed", "randomize")] \
                if node["type"] != "LongLiveRAG_ARBlockSampler" else \
                node["widgets_values"][:4] + node["widgets_values"][5:]
            assert len(values) == len(widgets), node["type"]
            for widget, value in zip(widgets, values):
                if widget.get_io_type() == "COMBO":
                    if widget.id in ("backbone", "lora", "encoder"):
                        continue   # file lists depend on the user's model folders
                    assert value in widget.options, f"{node['type']}.{widget.id}={value!r}"
                elif widget.get_io_type() in ("INT", "FLOAT"):
                    low = widget.min if widget.min is not None else -1e18
                    high = widget.max if widget.max is not None else 1e18
                    assert low <= value <= high, f"{node['type']}.{widget.id}"
    for lid, src, so, dst, di, kind in wf["links"]:
        accepted = by_id[dst]["inputs"][di]["type"].split(",")      # "A,B": either; "*": anything
        assert by_id[src]["outputs"][so]["type"] == kind and (kind in accepted or accepted == ["*"])
        assert lid in by_id[src]["outputs"][so]["links"] and by_id[dst]["inputs"][di]["link"] == lid


def test_workflows_name_the_published_checkpoint_files():
    text = "".join(p.read_text() for p in WORKFLOWS)
    for name in ("self_forcing.pt", "causal_forcing.pt", "longlive_base.pt", "longlive_lora.pt", "ae_latent_mem.pt",
                 "umt5_xxl_fp8_e4m3fn_scaled.safetensors", "wan_2.1_vae.safetensors", "model_bf16.pt",
                 "wan2.2_vae.safetensors", "framewise-2step.pt"):
        assert name in text


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflows_carry_template_metadata_like_official_templates(path):
    meta = load_builder().decorate.__globals__      # workflows/template_meta.py
    wf = json.loads(path.read_text())
    loaders = [n for n in wf["nodes"] if n["type"] in meta["LOADERS"]]
    assert loaders
    used = []
    for node in loaders:
        names = [v for v in node["widgets_values"] if isinstance(v, str) and v.endswith((".pt", ".safetensors"))]
        models = node["properties"]["models"]
        made = [n for n in names if n in meta["MADE_FILES"]]        # made by `core convert`: no download exists
        assert [m["name"] for m in models] == [n for n in names if n not in made], node["type"]
        assert names or node["widgets_values"] == ["avg_pool (no file)"], node["type"]   # LongLive 2.0: no encoder file
        for m in models:
            url, folder = meta["MODEL_FILES"][m["name"]]
            assert m["url"] == url and m["url"].startswith("https://huggingface.co/") and m["url"].endswith(m["name"])
            assert m["directory"] == folder
        used += names
    notes = [n for n in wf["nodes"] if n["type"] == "MarkdownNote"]
    assert len(notes) == 1
    text = notes[0]["widgets_values"][0]
    assert all(f"`{name}`" in text for name in used) and "Change first" in text and "Expect" in text
    assert all("python -m core convert" in text for name in used if name in meta["MADE_FILES"])
    titles = [g["title"] for g in wf["groups"]]
    assert titles[0] == "Models" and "Sampling" in titles and "Output" in titles
    # left to right: every link goes from a column to the same or a later one
    col = {n["id"]: n["pos"][0] for n in wf["nodes"]}
    assert all(col[src] <= col[dst] for _, src, _, dst, _, _ in wf["links"])
