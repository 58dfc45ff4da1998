"""The AR Block Sampler without ComfyUI: the golden case through LATENT normalisation, the native window when
nothing is connected, outputs that a later run leaves alone, cancellation, progress with previews, the History
Pool node, and bad inputs named."""
import os
import json
import sys
import tempfile
import types

import pytest
import torch
from safetensors.torch import load_file

from pack import N, bridge, conditioning, latent_format, load, rag_retrieval, sample, schema
from paths import GOLDEN


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
    assert log.strategy == "rag" and log.num_frames == 48


def test_unconnected_retrieval_is_the_native_window(models_dir):
    backbone, _ = load(models_dir)
    latent, log = sample(backbone, None, length=49)
    assert log.strategy == "native" and log.records == ()
    assert latent["samples"].shape[2] == 15                        # 13 latent frames rounded up to 5 blocks


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


class Interrupted(Exception):
    pass


def test_cancel_stops_within_a_block_and_frees_the_pool_in_the_server_folder(models_dir, monkeypatch, tmp_path):
    """The disk tier writes only to the server's pool folder (LONGLIVE_RAG_POOL_DIR), whatever folder the pool
    settings name, and its files are gone after a cancelled run."""
    backbone, _ = load(models_dir)
    server = tmp_path / "server_pool"
    server.mkdir()
    monkeypatch.setenv(bridge.POOL_DIR_ENV, str(server))
    pool = N["LongLiveRAG_HistoryPool"].execute("host (RAM)", 0, "kv (exact)").args[0]
    disk_pool = type(pool)("host", 0.0001, "kv", str(tmp_path / "named" / "pool"))   # spills to disk at once
    seen = []

    def interrupt():                                         # Cancel pressed once the pool has a file on disk
        seen.append(sorted(p.name for p in server.iterdir()))
        if seen[-1]:
            raise Interrupted

    monkeypatch.setattr(bridge, "check_interrupted", interrupt)
    with pytest.raises(Interrupted):
        sample(backbone, rag_retrieval(pool=disk_pool))
    assert len(seen[-1]) == 1 and not any(seen[:-1])        # stopped at the first check after the file appeared
    assert seen[-1][0].startswith("longlive_rag_pool_")      # the pool was on disk, in the server's folder
    assert list(server.iterdir()) == []                      # pool files removed
    assert not (tmp_path / "named").exists()                 # nothing created where the settings pointed


def test_cancel_is_checked_between_the_model_calls_of_a_block(models_dir, monkeypatch):
    backbone, _ = load(models_dir)
    model, calls, checks = backbone.backbone.model, [], []
    forward = model.forward
    monkeypatch.setattr(model, "forward", lambda *a, **k: calls.append(1) or forward(*a, **k))

    def interrupt():                                         # Cancel pressed during the first denoising step
        checks.append(1)
        if calls:
            raise Interrupted

    monkeypatch.setattr(bridge, "check_interrupted", interrupt)
    with pytest.raises(Interrupted):
        sample(backbone)
    assert len(calls) == 1 and len(checks) == 2              # the block's second step never ran


def test_history_pool_node_validates_and_builds_settings():
    node = N["LongLiveRAG_HistoryPool"]
    (settings,) = node.execute("device (GPU)", 2048, "kv-half (approximate)").args
    assert (settings.location, settings.budget_mb, settings.storage, settings.directory) == \
        ("device", 2048, "kv-half", None)
    budgets = {b: node.execute("host (RAM)", b, "kv (exact)").args[0].budget_mb for b in (-1, 0, 512)}
    assert budgets == {-1: "auto", 0: None, 512: 512}         # -1 auto (the default), 0 unlimited, else MB
    assert schema("LongLiveRAG_HistoryPool").inputs[1].default == -1
    with pytest.raises(ValueError, match="disk"):
        node.execute("disk", 100, "kv (exact)")


def test_an_old_workflows_pool_directory_is_ignored_with_a_warning(caplog):
    """An API-format prompt saved before the folder became the server's still runs; its 'directory' is named in
    one warning line and not used."""
    node, hidden = N["LongLiveRAG_HistoryPool"], bridge.io.Hidden
    for directory, warned in (("/tmp/anywhere", True), ("", False)):
        prompt = {"7": {"class_type": "LongLiveRAG_HistoryPool",
                        "inputs": {"location": "disk", "budget_mb": 0, "storage": "kv (exact)",
                                   "directory": directory}}}
        clone = node.PREPARE_CLASS_CLONE({"hidden_inputs": {hidden.prompt: prompt, hidden.unique_id: "7"}})
        caplog.clear()
        (settings,) = clone.execute("disk", 0, "kv (exact)").args
        lines = [r.getMessage() for r in caplog.records if "'directory' is ignored" in r.getMessage()]
        assert len(lines) == warned and settings.directory is None and "\n" not in "".join(lines)


def test_the_pool_folder_is_the_servers_and_must_exist(monkeypatch, tmp_path):
    monkeypatch.delenv(bridge.POOL_DIR_ENV, raising=False)
    assert bridge.pool_directory() == tempfile.gettempdir()              # without ComfyUI
    monkeypatch.setenv(bridge.POOL_DIR_ENV, str(tmp_path))
    assert bridge.pool_directory() == str(tmp_path)
    monkeypatch.setenv(bridge.POOL_DIR_ENV, str(tmp_path / "typo" / "pool"))
    with pytest.raises(FileNotFoundError, match=bridge.POOL_DIR_ENV) as refused:
        bridge.pool_directory()
    assert "typo" not in str(refused.value) and not (tmp_path / "typo").exists()


def test_the_pool_folder_under_comfyui_is_its_temp_folder_or_the_extra_paths_one(monkeypatch, tmp_path):
    monkeypatch.delenv(bridge.POOL_DIR_ENV, raising=False)
    fp = types.SimpleNamespace(folder_names_and_paths={}, get_temp_directory=lambda: str(tmp_path / "temp"))
    monkeypatch.setattr(bridge, "_folder_paths", lambda: fp)
    assert bridge.pool_directory() == str(tmp_path / "temp") and (tmp_path / "temp").is_dir()
    (tmp_path / "fast").mkdir()
    fp.folder_names_and_paths[bridge.POOL_FOLDER] = ([str(tmp_path / "fast")], set())
    assert bridge.pool_directory() == str(tmp_path / "fast")
    monkeypatch.setenv(bridge.POOL_DIR_ENV, str(tmp_path))               # the environment comes first
    assert bridge.pool_directory() == str(tmp_path)


def test_the_sampler_widgets_stop_at_the_bounds_of_one_run():
    from importlib import import_module
    limits = import_module(f"{bridge.__name__.rsplit('.', 2)[0]}.core.sampling.limits")
    inputs = {i.id: i for i in schema("LongLiveRAG_ARBlockSampler").inputs}
    assert inputs["width"].max == inputs["height"].max == limits.MAX_SIDE_PX
    assert inputs["local_attn_size"].max == limits.MAX_WINDOW
    assert inputs["length"].max == limits.max_video_frames() == limits.MAX_SECONDS * 24 + 1     # the fastest fps
    strategy = {i.id: i for i in schema("LongLiveRAG_ContextStrategy").inputs}
    assert strategy["window"].max == limits.MAX_WINDOW


def test_the_sampler_refuses_sizes_beyond_the_bounds_or_the_memory_before_running(models_dir, monkeypatch):
    backbone, _ = load(models_dir)
    sampler = N["LongLiveRAG_ARBlockSampler"]
    plan = sys.modules[f"{bridge.__name__.rsplit('.', 2)[0]}.core.app.plan"]
    with pytest.raises(ValueError, match="steps text of .* characters is beyond the bound"):
        sampler.execute(backbone, conditioning(), 96, 64, 17, 0, 1, 12, 3, "1000," * 5000, 5.0)
    monkeypatch.setattr(plan, "host_available", lambda: 2**30)
    with pytest.raises(ValueError, match=r"this run needs .* of RAM .* but 1\.0 GiB is free: make the video shorter"):
        sampler.execute(backbone, conditioning(), 4096, 4096, 4001, 0, 1, 12, 3, "1000,750,500,250", 5.0)


def test_the_sampler_says_when_retrieval_retrieved_nothing(models_dir):
    backbone, _ = load(models_dir)
    out = N["LongLiveRAG_ARBlockSampler"].execute(backbone, conditioning(), 96, 64, 37, 42, 1, 12, 3,
                                                  "1000,750,500,250", 5.0, rag_retrieval())
    assert out.args[1].records == ()
    assert "retrieval: no block retrieved a past frame; no frame left the KV cache window" in out.args[2]


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


# ------------------------------------------------------------------------------------------ workflows


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


def test_the_sampler_sweeps_pool_files_killed_runs_left_in_the_server_folder(monkeypatch, tmp_path):
    """A pool file whose run is gone is deleted before a retrieval run; a live run's file stays."""
    from pack import PACK
    host = sys.modules[f"{PACK.__name__}.core.files.owners"].host
    server_pool = sys.modules[f"{PACK.__name__}.nodes.sampling"].server_pool
    strategy_config = sys.modules[f"{PACK.__name__}.core.app.plan"].strategy_config
    monkeypatch.setenv(bridge.POOL_DIR_ENV, str(tmp_path))
    dead = tmp_path / f"longlive_rag_pool_{2 ** 22 + 12345}@{host()}.abcd1234.bin"   # no such pid
    live = tmp_path / f"longlive_rag_pool_{os.getpid()}@{host()}.efgh5678.bin"
    dead.write_bytes(b"x")
    live.write_bytes(b"y")
    cfg = server_pool(strategy_config("rag"))
    assert cfg.retrieval.pool.directory == str(tmp_path)
    assert not dead.exists() and live.exists()
