"""The ComfyUI nodes without ComfyUI: inputs/outputs, LATENT normalisation, cancellation, caching
safety, and the example workflows against the node definitions."""
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
from load_pack import load_pack, pack_nodes
from safetensors.torch import load_file

from conftest import GOLDEN
from core.app.plan import sampling_config

ROOT = Path(__file__).resolve().parents[1]
PACK = load_pack("comfyui_longlive_rag_under_test")   # as ComfyUI imports it: a package (here a fixed name)
N = pack_nodes(PACK)                                  # {node id: V3 node class}, through comfy_entrypoint
bridge = sys.modules[f"{PACK.__name__}.nodes.bridge"]
latent_format = sys.modules[f"{PACK.__name__}.core.latents.format"]


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    for kind in ("diffusion_models", "loras", "retrieval_encoders"):
        (tmp_path / kind).mkdir()
    (tmp_path / "diffusion_models" / "tiny.safetensors").symlink_to(GOLDEN / "wan_tiny_t2v_bare.safetensors")
    (tmp_path / "retrieval_encoders" / "ae_latent_mem.pt").symlink_to(GOLDEN / "ae.pt")
    monkeypatch.setenv("LONGLIVE_RAG_MODELS", str(tmp_path))
    return tmp_path


def conditioning():
    return [[load_file(str(GOLDEN / "inputs.safetensors"))["prompt_embeds"], {"pooled_output": None}]]


def load(models_dir):
    backbone, info = N["LongLiveRAG_LoadBackbone"].execute("tiny.safetensors", "none", 1.0, "float32", "cpu",
                                                           "offload after sampling", num_heads=2).args
    return backbone, info


def sample(backbone, retrieval=None, length=189, seed=42, noise="reference"):
    # 189 video frames = 48 latent frames; 96x64 px = 8x12 latents; the golden cases' noise contract
    out = N["LongLiveRAG_ARBlockSampler"].execute(backbone, conditioning(), 96, 64, length, seed, 1, 12, 3,
                                                  "1000,750,500,250", 5.0, retrieval, noise_contract=noise)
    return out.args[:2]                                        # (latent, retrieval_log); [2] is the info text


def rag_retrieval(encoder_name="ae_latent_mem.pt", pool=None):
    (enc,) = N["LongLiveRAG_LoadLatentEncoder"].execute(encoder_name).args
    return N["LongLiveRAG_RetrieveContext"].execute(enc, 6, 5, pool).args[0]


NODE_IDS = ["LongLiveRAG_LoadBackbone", "LongLiveRAG_LoadLatentEncoder", "LongLiveRAG_HistoryPool",
            "LongLiveRAG_RetrieveContext", "LongLiveRAG_ARBlockSampler", "LongLiveRAG_Decode",
            "LongLiveRAG_RetrievalMap", "LongLiveRAG_LoadPromptEmbeds", "LongLiveRAG_PromptSchedule",
            "LongLiveRAG_ContextStrategy", "LongLiveRAG_CompareGrid", "LongLiveRAG_SamplerSettings"]


def schema(node_id):
    return N[node_id].GET_SCHEMA()


def test_the_pack_registers_its_nodes_through_comfy_entrypoint_under_their_saved_ids():
    """ComfyUI takes NODE_CLASS_MAPPINGS over comfy_entrypoint when a pack has both: the pack has only the V3
    entry point. The ids are the ones saved workflows name."""
    assert "comfy_entrypoint" in PACK.__all__ and not hasattr(PACK, "NODE_CLASS_MAPPINGS")
    assert list(N) == NODE_IDS
    assert all(issubclass(cls, sys.modules["comfy_api.latest"].io.ComfyNode) for cls in N.values())


def test_every_node_documents_itself_and_every_input():
    for name in N:
        s = schema(name)
        assert s.display_name.endswith("(LongLive-RAG)") and s.description, name
        assert s.category.startswith("LongLive-RAG") and s.outputs, name
        assert not s.is_output_node, name
        for item in s.inputs + s.outputs:
            assert item.tooltip, f"{name}.{item.id} has no tooltip"


def test_load_backbone_lists_files_and_reports_the_family(models_dir):
    assert "tiny.safetensors" in schema("LongLiveRAG_LoadBackbone").inputs[0].options
    backbone, info = load(models_dir)
    assert backbone.backbone.config.num_layers == 2 and "Wan2.1" in info and "2 layers" in info


def test_sampler_with_retrieval_reproduces_the_golden_case_through_latent_normalisation(models_dir):
    backbone, _ = load(models_dir)
    latent, log = sample(backbone, rag_retrieval())
    raw = latent["samples"]
    assert raw.shape == (1, 16, 48, 8, 12)
    ref = load_file(str(GOLDEN / "outputs.safetensors"))["latents_bcthw"]
    model_space = latent_format.to_model_space(raw)
    assert ((model_space - ref).norm() / ref.norm()) < 1e-4          # raw = model·std + mean, exactly invertible
    golden_log = json.loads((GOLDEN / "memory_log.json").read_text())
    assert [r["pool_indices"] for r in log.records] == [g["selected_pool_indices"][0] for g in golden_log]
    assert log.mode == "rag" and log.num_frames == 48


def test_unconnected_retrieval_is_the_native_window(models_dir):
    backbone, _ = load(models_dir)
    latent, log = sample(backbone, None, length=49)
    assert log.mode == "native" and log.records == ()
    assert latent["samples"].shape[2] == 15                        # 13 latent frames rounded up to 5 blocks


def test_latent_normalisation_round_trip():
    z = torch.randn(2, 16, 5, 4, 6, dtype=torch.float64)
    assert torch.allclose(latent_format.to_raw_space(latent_format.to_model_space(z)), z)
    assert latent_format.WAN21.video_to_latent_frames(477) == 120
    assert latent_format.WAN21.latent_to_video_frames(120) == 477


def test_outputs_are_not_mutated_by_a_later_run(models_dir):
    backbone, _ = load(models_dir)
    weights = {k: v.clone() for k, v in backbone.backbone.model.state_dict().items()}
    retrieval = rag_retrieval()
    first, log1 = sample(backbone, retrieval, length=97)
    kept = first["samples"].clone()
    second, log2 = sample(backbone, retrieval, length=97, seed=7)
    assert torch.equal(first["samples"], kept) and not torch.equal(second["samples"], kept)
    assert all(torch.equal(v, weights[k]) for k, v in backbone.backbone.model.state_dict().items())
    assert isinstance(log1.records, tuple) and log1 != log2


def test_cancel_stops_within_a_block_and_frees_the_pool(models_dir, monkeypatch, tmp_path):
    backbone, _ = load(models_dir)
    pool = N["LongLiveRAG_HistoryPool"].execute("host (RAM)", 0, "kv (exact)", "").args[0]
    disk_pool = type(pool)("host", 0.0001, "kv", str(tmp_path / "pool"))   # spills to disk at once
    calls = []

    class Interrupted(Exception):
        pass

    def interrupt():
        calls.append(1)
        if len(calls) == 8:
            raise Interrupted

    monkeypatch.setattr(bridge, "check_interrupted", interrupt)
    with pytest.raises(Interrupted):
        sample(backbone, rag_retrieval(pool=disk_pool))
    assert len(calls) == 8                                   # checked after every block, stopped at block 8
    assert list((tmp_path / "pool").rglob("*")) == []       # pool files removed


def test_history_pool_node_validates_and_builds_settings():
    node = N["LongLiveRAG_HistoryPool"]
    (settings,) = node.execute("device (GPU)", 2048, "kv-half (approximate)", "").args
    assert (settings.location, settings.budget_mb, settings.storage) == ("device", 2048, "kv-half")
    with pytest.raises(ValueError, match="disk"):
        node.execute("disk", 100, "kv (exact)", "")


def test_bad_sampler_inputs_fail_clearly(models_dir):
    backbone, _ = load(models_dir)
    sampler = N["LongLiveRAG_ARBlockSampler"]
    with pytest.raises(ValueError, match="multiples of 16"):
        sampler.execute(backbone, conditioning(), 100, 64, 17, 0, 1, 12, 3, "1000,750,500,250", 5.0)
    with pytest.raises(ValueError, match="CLIPLoader type 'wan'"):
        sampler.execute(backbone, [[torch.zeros(1, 77, 768), {}]], 96, 64, 17, 0, 1, 12, 3, "1000", 5.0)
    with pytest.raises(ValueError, match="local_attn_size"):
        sampler.execute(backbone, conditioning(), 96, 64, 17, 0, 1, 8, 3, "1000", 5.0, rag_retrieval())
    with pytest.raises(ValueError, match="steps"):
        sampler.execute(backbone, conditioning(), 96, 64, 17, 0, 1, 12, 3, "1000,abc", 5.0)


def test_decode_without_the_wan_vae_uses_the_vae_and_returns_frames():
    class FakeVAE:
        def decode(self, z):   # ComfyUI VAE.decode: [B, T_video, H, W, 3]
            b, _, t, h, w = z.shape
            return torch.rand(b, 4 * (t - 1) + 1, 8 * h, 8 * w, 3)

    (images,) = N["LongLiveRAG_Decode"].execute(FakeVAE(), {"samples": torch.zeros(1, 16, 5, 4, 6)}, 2).args
    assert images.shape == (17, 32, 48, 3)
    with pytest.raises(ValueError, match=r"Wan video latent \[B, 16 or 48, T, H, W\]"):
        N["LongLiveRAG_Decode"].execute(FakeVAE(), {"samples": torch.zeros(1, 4, 8, 8)}, 2)


def test_retrieval_map_is_the_rendered_log_as_an_image(models_dir):
    render = sys.modules[f"{PACK.__name__}.core.retrieval.map"].render_retrieval_map
    backbone, _ = load(models_dir)
    _, log = sample(backbone, rag_retrieval("avg_pool (no file)"), length=97)
    assert len(log.records) > 0
    (img,) = N["LongLiveRAG_RetrievalMap"].execute(log, 600, 400).args
    expected = render(list(log.records), log.num_frames, log.sink, log.window, log.frames_per_block,
                      title="LongLive-RAG retrieval map", size_px=(600, 400))
    assert img.shape == (1, 400, 600, 3) and img.dtype == torch.float32
    assert torch.equal((img[0] * 255).round().to(torch.uint8), torch.from_numpy(expected))
    empty = render([], log.num_frames, log.sink, log.window, log.frames_per_block, title="LongLive-RAG retrieval map",
                   size_px=(600, 400))
    assert (torch.from_numpy(expected).float() - torch.from_numpy(empty).float()).abs().sum() > 0  # the points


def test_load_prompt_embeds_gives_conditioning(tmp_path):
    from safetensors.torch import save_file
    save_file({"prompt_embeds": torch.ones(1, 7, 64)}, str(tmp_path / "e.safetensors"))
    (cond,) = N["LongLiveRAG_LoadPromptEmbeds"].execute(str(tmp_path / "e.safetensors")).args
    assert cond[0][0].shape == (1, 7, 64) and isinstance(cond[0][1], dict)


# ------------------------------------------------------------------------------------------ workflows
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
                 "wan2.2_vae.safetensors"):
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
        assert [m["name"] for m in models] == names, node["type"]
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
    titles = [g["title"] for g in wf["groups"]]
    assert titles[0] == "Models" and "Sampling" in titles and "Output" in titles
    # left to right: every link goes from a column to the same or a later one
    col = {n["id"]: n["pos"][0] for n in wf["nodes"]}
    assert all(col[src] <= col[dst] for _, src, _, dst, _, _ in wf["links"])


def test_progress_bar_advances_per_block_with_a_latent_preview(models_dir, monkeypatch):
    """With ComfyUI present, each block updates ComfyUI's ProgressBar with a preview of its newest frame."""
    import types
    calls, previews = [], []

    class ProgressBar:
        def __init__(self, total):
            self.total = total

        def update_absolute(self, value, total=None, preview=None):
            calls.append((value, total, preview))

    class Previewer:
        def decode_latent_to_preview_image(self, fmt, x0):
            previews.append(tuple(x0.shape))
            return (fmt, "image", 512)

    fake = {"comfy": types.ModuleType("comfy"), "comfy.utils": types.ModuleType("comfy.utils"),
            "comfy.latent_formats": types.ModuleType("comfy.latent_formats"),
            "latent_preview": types.ModuleType("latent_preview")}
    fake["comfy.utils"].ProgressBar = ProgressBar
    fake["comfy"].utils, fake["comfy"].latent_formats = fake["comfy.utils"], fake["comfy.latent_formats"]
    fake["comfy.latent_formats"].Wan21 = object
    fake["latent_preview"].get_previewer = lambda device, fmt: Previewer()
    for name, module in fake.items():
        monkeypatch.setitem(sys.modules, name, module)
    backbone, _ = load(models_dir)
    sample(backbone, None, length=37)                        # 10 latent frames → 4 blocks
    assert [(v, t) for v, t, _ in calls] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert all(p == ("JPEG", "image", 512) for *_, p in calls)
    assert previews == [(1, 16, 1, 8, 12)] * 4               # newest latent frame of each block


def test_vram_estimate_for_the_real_model_at_480p():
    from core.sampling.budget import device_bytes_needed
    from core.model.transformer import WanConfig, WanTransformer
    cfg = WanConfig(dim=1536, ffn_dim=8960, num_layers=30, num_heads=12)
    with torch.device("meta"):
        model = WanTransformer(cfg)
    native = device_bytes_needed(model, sampling_config(), (60, 104), 1, torch.bfloat16)
    rag = device_bytes_needed(model, sampling_config(strategy="rag"), (60, 104), 1, torch.bfloat16)
    per_frame = 2 * 30 * 1560 * 1536 * 2
    params = 1_418_996_800                                           # the real 1.3B key set's total
    assert native == int(1.25 * (params * 2 + 12 * per_frame))       # ~7.9 GB: weights + 12-frame cache
    assert abs(rag - native - 1.25 * 12 * per_frame) < 2             # + context buffers of the window's size
    memrope = device_bytes_needed(model, sampling_config(strategy="memrope"), (60, 104), 1, torch.bfloat16)
    assert memrope == rag                                            # the same cache layout, nothing retrieved


def test_load_backbone_compile_option_compiles_the_layers(models_dir, monkeypatch):
    compiled = []
    model_cls = sys.modules[PACK.__name__ + ".core.model.transformer"].WanTransformer   # the pack's own class
    monkeypatch.setattr(model_cls, "compile_blocks", lambda self, **kw: compiled.append(self) or self)
    load(models_dir)
    assert compiled == []                           # off by default
    backbone, info = N["LongLiveRAG_LoadBackbone"].execute("tiny.safetensors", "none", 1.0, "float32", "cpu",
                                                           "offload after sampling", num_heads=2, compile=True).args
    assert compiled == [backbone.backbone.model] and info.splitlines()[0].endswith("; compiled")


def strategy(name, window=0, sink=-1, switch="strategy default", options=""):
    return N["LongLiveRAG_ContextStrategy"].execute(name, window, sink, switch, options).args


def test_context_strategy_reproduces_the_infinity_rope_golden_through_the_sampler(models_dir):
    """The ∞-RoPE golden case (its published window 6 and sink 1 come from the strategy, not the sampler's 12/1)."""
    case = ROOT / "tests" / "data" / "golden_extra" / "infinity_rope_win6"
    inputs = load_file(str(case / "inputs.safetensors"))
    ref = load_file(str(case / "outputs.safetensors"))["latents_bcthw"]
    value, info = strategy("infinity-rope")
    assert "strategy infinity-rope (∞-RoPE): window 6, sink 1, prompt switch 'flush'" in info
    backbone, _ = load(models_dir)
    # 36 latent frames = 141 video frames; the case's noise is the reference contract's draw for seed 42
    out = N["LongLiveRAG_ARBlockSampler"].execute(backbone, [[inputs["prompt_embeds"][:1], {}]], 96, 64, 141, 42, 1, 12,
                                                  3, "1000,750,500,250", 5.0, None, noise_contract="reference",
                                                  strategy=value)
    latent, log, text = out.args
    got = latent_format.to_model_space(latent["samples"])
    assert ((got - ref).norm() / ref.norm()) < 1e-4
    assert log.mode == "infinity-rope" and log.window == 6 and log.records == ()
    assert "strategy infinity-rope" in text


def test_context_strategy_options_and_bad_choices_are_named(models_dir):
    value, info = strategy("deep-forcing", options="compressed_frames=4\nrecent_frames=3")
    assert value.options == (("compressed_frames", 4), ("recent_frames", 3)) and "compressed_frames=4" in info
    assert "window 21, sink 10" in info and "per the paper; no reference code" in info
    with pytest.raises(ValueError, match="at least 8 frames, but the window is 7"):
        strategy("memrope", window=7)
    with pytest.raises(ValueError, match="has no option alpha; its options are"):
        strategy("memrope", options="alpha=0.2")
    with pytest.raises(ValueError, match="must read name=number"):
        strategy("memrope", options="alpha_long")
    with pytest.raises(ValueError, match="switch 'recache' does not apply to strategy 'memrope'"):
        strategy("memrope", switch="recache")
    backbone, _ = load(models_dir)
    with pytest.raises(ValueError, match="Retrieve Context is connected but the Context Strategy is 'memrope'"):
        N["LongLiveRAG_ARBlockSampler"].execute(backbone, conditioning(), 96, 64, 49, 0, 1, 12, 3, "1000,750,500,250",
                                                5.0, rag_retrieval(), strategy=strategy("memrope")[0])


def test_rag_strategy_without_retrieve_context_uses_avg_pool(models_dir):
    backbone, _ = load(models_dir)
    out = N["LongLiveRAG_ARBlockSampler"].execute(backbone, conditioning(), 96, 64, 97, 0, 1, 12, 3, "1000,750,500,250",
                                                  5.0, None, strategy=strategy("rag")[0])
    _, log, _ = out.args
    assert log.mode == "rag" and len(log.records) > 0


def test_compare_grid_tiles_labelled_videos():
    a, b = torch.rand(5, 32, 48, 3), torch.rand(3, 32, 48, 3)
    (grid,) = N["LongLiveRAG_CompareGrid"].execute("native\nmemrope\n", 0, images_1=a, images_2=b).args
    assert grid.shape == (5, 16 + 32, 2 * 48 + 4, 3) and grid.dtype == torch.float32
    assert torch.allclose(grid[:, 16:, :48], (a * 255).round() / 255, atol=1e-6)
    assert torch.allclose(grid[4, 16:, 52:], (b[2] * 255).round() / 255, atol=1e-6)   # held last frame
    with pytest.raises(ValueError, match="2 videos are connected but 'labels' has 1 lines"):
        N["LongLiveRAG_CompareGrid"].execute("native", 0, images_1=a, images_2=b)
