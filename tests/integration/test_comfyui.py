"""The pack inside a real ComfyUI: nodes registered, templates listed, every example workflow executed
with tiny checkpoints written under the workflows' real file names.

Runs only when COMFYUI_PATH points to a ComfyUI checkout (COMFYUI_PYTHON: its Python, default this one;
the `comfy` command of comfy-cli must be on PATH or in COMFY_CLI). The Wan umT5-XXL text encoder
cannot be made tiny (ComfyUI builds it from a fixed config), so each workflow's CLIPLoader +
CLIPTextEncode pair is swapped for this pack's Load Prompt Embeds node, and in the story workflows the
CLIPLoader feeding the Prompt Schedule node is swapped for a test-only node (written into the test's
custom_nodes) whose CLIP has the two methods CLIPTextEncode uses; everything else runs as shipped.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from comfy_scripts import DECODE_CHECK, TINY_CLIP_NODE, VAE_WRITER
from paths import ROOT

COMFY = os.environ.get("COMFYUI_PATH")
pytestmark = pytest.mark.skipif(not COMFY, reason="set COMFYUI_PATH to a ComfyUI checkout to run this test")
PY = os.environ.get("COMFYUI_PYTHON", sys.executable)
WORKFLOWS = sorted((ROOT / "workflows").glob("*.json"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_models(base: Path) -> None:
    """Tiny checkpoints in the released formats, under the names the workflows use."""
    from core.retrieval.encoder import EncoderConfig, RetrievalEncoder
    from core.app.tiny import tiny_model
    m = base / "models"
    for d in ("diffusion_models", "loras", "retrieval_encoders", "vae", "text_encoders"):
        (m / d).mkdir(parents=True, exist_ok=True)
    model = tiny_model(0, dim=128, heads=1, text_dim=64, freq_dim=256, bias_std=0.05)
    sd = model.state_dict()
    torch.save({"generator_ema": {f"model._fsdp_wrapped_module.{k}": v for k, v in sd.items()},
                "generator": {f"model.{k}": v for k, v in sd.items()}}, m / "diffusion_models" / "self_forcing.pt")
    torch.save({"generator": {f"model.{k}": v for k, v in sd.items()}}, m / "diffusion_models" / "causal_forcing.pt")
    torch.save({"generator": {f"model.{k}": v for k, v in sd.items()}}, m / "diffusion_models" / "longlive_base.pt")
    # Rolling Forcing's release: Self-Forcing's layout; its name brings the rolling sampler's settings
    torch.save({"generator_ema": {f"model._fsdp_wrapped_module.{k}": v for k, v in sd.items()},
                "generator": {f"model.{k}": v for k, v in sd.items()}}, m / "diffusion_models" / "rolling_forcing_dmd.pt")
    torch.save({"generator_ema": {f"model.{k}": v for k, v in sd.items()}},          # frame-wise Causal Forcing++
               m / "diffusion_models" / "framewise-2step.pt")
    lora = {}
    for k, w in sd.items():
        if k.startswith("blocks.") and k.endswith(".weight") and w.dim() == 2:
            mod = k[: -len(".weight")]
            lora[f"base_model.model.{mod}.lora_A.weight"] = torch.randn(4, w.shape[1]) * 0.01
            lora[f"base_model.model.{mod}.lora_B.weight"] = torch.randn(w.shape[0], 4) * 0.01
    torch.save({"generator_lora": lora}, m / "loras" / "longlive_lora.pt")
    cfg = EncoderConfig(spatial_h=8, spatial_w=12, latent_dim=16, hidden_dims=[8, 16])
    torch.save({"model": RetrievalEncoder(cfg).state_dict(), "config": cfg.__dict__},
               m / "retrieval_encoders" / "ae_latent_mem.pt")
    # the tiny LongLive 2.0: a Wan2.2-TI2V-5B-style backbone (48 latent channels) in model_bf16.pt's layout
    ll2 = tiny_model(1, dim=128, heads=1, text_dim=64, freq_dim=256, channels=48, bias_std=0.05)
    torch.save({"generator": {f"model.{k}": v.to(torch.bfloat16) for k, v in ll2.state_dict().items()}},
               m / "diffusion_models" / "model_bf16.pt")
    write_comfy_models(m)
    for name in ("wan_2.1_vae.safetensors", "wan2.2_vae.safetensors"):
        subprocess.run([PY, "-c", VAE_WRITER, COMFY, name, str(m / "vae" / name)], check=True, cwd=COMFY)
    (base / "input").mkdir(exist_ok=True)
    emb = torch.randn(1, 20, 64, generator=torch.Generator().manual_seed(4))
    save_file({"prompt_embeds": torch.cat([emb, torch.zeros(1, 492, 64)], 1)}, str(base / "input" / "prompt.safetensors"))
    wide = torch.randn(1, 20, 4096, generator=torch.Generator().manual_seed(6))
    save_file({"prompt_embeds": torch.cat([wide, torch.zeros(1, 492, 4096)], 1)},
              str(base / "input" / WIDE_EMBEDS))
    from PIL import Image                 # the image workflow's LoadImage default
    pixels = torch.rand(64, 96, 3, generator=torch.Generator().manual_seed(5)).mul(255).byte().numpy()
    Image.fromarray(pixels).save(base / "input" / "example.png")


WIDE_EMBEDS = "prompt_4096.safetensors"     # the Wan text width ComfyUI's own Wan model is built with


def write_comfy_models(m: Path) -> None:
    """The ComfyUI-loaders template's files: a LongLive base and LoRA in the released layout, converted with
    `core convert` (base for Load Diffusion Model, LoRA for LoraLoaderModelOnly); large enough for ComfyUI's model
    detection (heads of 128, text width 4096)."""
    from core.app.tiny import tiny_model
    from core.formats.convert import convert_checkpoint
    src = m / "released"
    src.mkdir(exist_ok=True)
    sd = {k: v.to(torch.bfloat16) for k, v in tiny_model(3, dim=256, heads=2, text_dim=4096, freq_dim=256,
                                                          bias_std=0.05).state_dict().items()}
    torch.save({"generator": {f"model.{k}": v for k, v in sd.items()}}, src / "longlive_base.pt")
    lora = {}
    for k, w in sd.items():
        if k.startswith("blocks.") and k.endswith(".weight") and w.dim() == 2:
            lora[f"base_model.model.{k[:-len('.weight')]}.lora_A.weight"] = torch.randn(4, w.shape[1]) * 0.01
            lora[f"base_model.model.{k[:-len('.weight')]}.lora_B.weight"] = torch.randn(w.shape[0], 4) * 0.01
    torch.save({"generator_lora": lora}, src / "longlive_lora.pt")
    convert_checkpoint(src / "longlive_base.pt", m / "diffusion_models", lora=src / "longlive_lora.pt",
                       lora_out=m / "loras")


STORY = "0s: a red fox in the snow\n1.5s: the fox at a frozen lake\n3.5s: the ice cracks"   # blocks 0, 6, 15


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("comfy")
    write_models(base)
    (base / "custom_nodes").mkdir()
    (base / "custom_nodes" / "ComfyUI-LongLive-RAG").symlink_to(ROOT)
    (base / "custom_nodes" / "llrag_test_clip").mkdir()
    (base / "custom_nodes" / "llrag_test_clip" / "__init__.py").write_text(TINY_CLIP_NODE)
    port = free_port()
    log = open(base / "server.log", "w")
    proc = subprocess.Popen([PY, "main.py", "--cpu", "--disable-auto-launch", "--listen", "127.0.0.1", "--port",
                             str(port), "--base-directory", str(base)], cwd=COMFY, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            urllib.request.urlopen(url + "/object_info", timeout=5)
            break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError((base / "server.log").read_text()[-3000:])
            time.sleep(0.5)
    yield {"url": url, "port": port, "base": base, "proc": proc}
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


def get(server, path):
    with urllib.request.urlopen(server["url"] + path, timeout=30) as r:
        return json.loads(r.read())


SCHEMA_FIELDS = ("tooltip", "default", "min", "max", "step", "options", "multiline")


def test_every_pack_node_is_served_as_its_v3_schema_reads(server, monkeypatch):
    """What this checkout reads from the nodes' V3 schemas (the builders of locales/ and workflows/, the tests;
    without ComfyUI through tests/comfy_standin) is what the real ComfyUI serves: ids, names, categories,
    descriptions, input types, defaults, limits, options, tooltips, outputs, hidden inputs."""
    info = get(server, "/object_info")
    from pack import N
    monkeypatch.setenv("LONGLIVE_RAG_MODELS", str(server["base"] / "models"))    # the same model files listed
    for node_id, cls in N.items():
        schema, served = cls.GET_SCHEMA(), info[node_id]
        assert (served["display_name"], served["category"], served["description"], served["output_node"]) == \
            (schema.display_name, schema.category, schema.description, schema.is_output_node), node_id
        order = served["input_order"]
        assert order["required"] + order.get("optional", []) == [i.id for i in schema.inputs], node_id
        assert sorted(served["input"].get("hidden", {})) == sorted(h.name for h in schema.hidden), node_id
        for i in schema.inputs:
            kind, options = served["input"]["optional" if i.optional else "required"][i.id]
            assert kind == i.get_io_type(), (node_id, i.id)
            for name in SCHEMA_FIELDS:
                if (node_id, i.id, name) == ("LongLiveRAG_LoadPromptEmbeds", "path", "options"):
                    continue      # ComfyUI's input folder: no such folder without ComfyUI (checked below)
                if getattr(i, name, None) is not None:
                    assert options[name] == getattr(i, name), (node_id, i.id, name)
        assert served["output"] == [o.io_type for o in schema.outputs], node_id
        assert served["output_name"] == [o.display_name for o in schema.outputs], node_id
        assert served["output_tooltips"] == [o.tooltip for o in schema.outputs], node_id
    assert "self_forcing.pt" in info["LongLiveRAG_LoadBackbone"]["input"]["required"]["backbone"][1]["options"]
    assert "ae_latent_mem.pt" in info["LongLiveRAG_LoadLatentEncoder"]["input"]["required"]["encoder"][1]["options"]
    assert sorted(embeds_options(server)) == sorted(["prompt.safetensors", WIDE_EMBEDS])   # input/'s .safetensors


def embeds_options(server) -> list[str]:
    return get(server, "/object_info/LongLiveRAG_LoadPromptEmbeds")["LongLiveRAG_LoadPromptEmbeds"]["input"][
        "required"]["path"][1]["options"]


def test_the_workflows_are_listed_as_templates(server):
    templates = get(server, "/api/workflow_templates")
    assert sorted(templates["ComfyUI-LongLive-RAG"]) == sorted(p.stem for p in WORKFLOWS)


def for_test(wf: dict, embeds: str) -> dict:
    """Swap CLIPLoader + CLIPTextEncode for Load Prompt Embeds (``embeds``: a file of the input folder), or (stories)
    CLIPLoader for the tiny test CLIP and the schedule for one that fits the tiny video; make the video tiny."""
    wf = json.loads(json.dumps(wf))
    loader = next(n for n in wf["nodes"] if n["type"] == "CLIPLoader")
    story = next((n for n in wf["nodes"] if n["type"] == "LongLiveRAG_PromptSchedule"), None)
    if story is not None:
        loader.update(type="LLRAGTest_TinyWanCLIP", widgets_values=[],
                      properties={"Node name for S&R": "LLRAGTest_TinyWanCLIP"})
        story["widgets_values"][0] = STORY
    else:
        text = next(n for n in wf["nodes"] if n["type"] == "CLIPTextEncode")
        wf["links"] = [l for l in wf["links"] if l[1] != loader["id"]]
        wf["nodes"] = [n for n in wf["nodes"] if n["id"] != loader["id"]]
        text.update(type="LongLiveRAG_LoadPromptEmbeds", inputs=[], widgets_values=[embeds],
                    properties={"Node name for S&R": "LongLiveRAG_LoadPromptEmbeds"})
        text["outputs"][0]["name"] = "conditioning"
    by_id = {n["id"]: n for n in wf["nodes"]}
    feeds_a_start = {l[1] for l in wf["links"] if by_id[l[3]]["inputs"][l[4]]["name"] == "start"}
    size = [32, 32] if is_longlive2(wf) else [48, 32]      # Wan2.2 latents: multiples of 32 px (2x2 latents)
    for n in wf["nodes"]:
        if n["type"] == "LongLiveRAG_ARBlockSampler":
            # Wan2.1: 6x4 latents, 21 latent frames: block 18 retrieves; a sampler that starts another one: 12 frames.
            # LongLive 2.0: 48 latent frames = 6 blocks of 8: block 4 evicts, block 5 retrieves; an image start
            # keeps width x height at 0 (the start's size)
            # frame-wise Causal Forcing++: window 21, so 121 video frames (31 latent frames) evict and retrieve
            length = 189 if is_longlive2(wf) else 41 if n["id"] in feeds_a_start else 121 if is_framewise(wf) else 81
            start = any(l[3] == n["id"] and by_id[l[3]]["inputs"][l[4]]["name"] == "start" for l in wf["links"])
            n["widgets_values"][:3] = [0, 0, length] if start and is_longlive2(wf) else [*size, length]
        if n["type"] == "ImageScale":
            n["widgets_values"][1:3] = size
        if n["type"] == "LongLiveRAG_Decode":
            n["widgets_values"] = [4]
    return wf


def is_framewise(wf: dict) -> bool:
    return any(n["type"] == "LongLiveRAG_LoadBackbone" and n["widgets_values"][0] == "framewise-2step.pt"
               for n in wf["nodes"])


def is_longlive2(wf: dict) -> bool:
    return any(n["type"] == "LongLiveRAG_LoadBackbone" and n["widgets_values"][0] == "model_bf16.pt"
               for n in wf["nodes"])


SAMPLER_INFO = {   # what each workflow's sampler says about its start (shown by Preview as Text)
    "longlive_rag_comfy_loaders_lora": ["ComfyUI loaded the MODEL in RAM (the CPU computes)",
                                        "strategy rag (LongLive-RAG retrieval): window 12, sink 1, top_k 6"],
    "longlive_rag_image_to_video": ["starts from the given 1 latent frames (an image), kept as given",
                                    "length 81 rounded up to 85 video frames (a first block of the start's 1 latent "
                                    "frame, then whole blocks of 3 latent frames)"],
    "longlive_rag_extend_video": ["21 latent frames = 81 video frames",
                                  "starts from the given 12 latent frames (45 video frames), kept as given"],
    "longlive_rag_longlive2_t2v": ["48 latent frames = 189 video frames (7.88 s at 24 fps)",
                                   "strategy rag (LongLive-RAG retrieval): window 32, sink 8, top_k 6",
                                   "LongLive 2.0: 32x32 px (Wan2.2 latents, 48 channels, 2x2) at 24 fps; blocks of 8 "
                                   "latent frames, window 32, sink 8, UniPC 4 steps, shift 5; a cut line starts a new shot (RoPE offset "
                                   "8, multi-shot sink off with retrieval)"],
    "longlive_rag_causal_forcing_pp_framewise_t2v": [
        "blocks of 1 latent frame, window 21, sink 1, steps 1000,500 (the first block 1000,750,500,250), shift 5"],
    "longlive_rag_longlive2_i2v": ["48 latent frames = 189 video frames (7.88 s at 24 fps)",
                                   "starts from the given 1 latent frames (an image), kept as given, held clean inside "
                                   "the first block", "LongLive 2.0: 32x32 px (Wan2.2 latents"],
}


def shown_texts(server) -> list[str]:
    return [t for item in get(server, "/history").values() for out in item.get("outputs", {}).values()
            for t in out.get("text", [])]


def run_workflow(server, wf: dict, f: Path) -> subprocess.CompletedProcess:
    """Run the UI-format workflow ``wf`` (written to ``f``) with comfy-cli, as a user would; it must succeed."""
    f.write_text(json.dumps(wf))
    comfy = os.environ.get("COMFY_CLI") or shutil.which("comfy") or str(Path(PY).with_name("comfy"))
    proc = subprocess.run([comfy, "--skip-prompt", "--workspace", COMFY, "run", "--workflow", str(f), "--wait",
                           "--host", "127.0.0.1", "--port", str(server["port"]), "--where", "local", "--no-watch",
                           "--timeout", "900"], capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_runs_in_comfyui(server, path, tmp_path):
    wf = json.loads(path.read_text())
    wf = for_test(wf, WIDE_EMBEDS if any(n["type"] == "UNETLoader" for n in wf["nodes"]) else "prompt.safetensors")
    before = set((server["base"] / "output").rglob("*")) if (server["base"] / "output").exists() else set()
    t0 = time.time()
    proc = run_workflow(server, wf, tmp_path / path.name)
    elapsed = time.time() - t0
    new = set((server["base"] / "output").rglob("*")) - before
    videos = [p for p in new if p.suffix == ".mp4"]
    maps = [p for p in new if p.suffix == ".png" and "retrieval_map" in p.name]
    assert videos and maps, f"outputs: {sorted(map(str, new))}\n{proc.stdout[-1500:]}"
    shown = shown_texts(server)
    for line in SAMPLER_INFO.get(path.stem, []):
        assert any(line in t for t in shown), (line, shown)
    if any(n["type"] == "LongLiveRAG_PromptSchedule" for n in wf["nodes"]):
        assert any("Prompt Schedule line 3 '3.5s: the ice cracks': asks for frame 14 (3.5 s), inside a block: "
                   "rounded up to the next block start, block 5 = frame 15" in t for t in shown), shown
    if any(n["type"] == "LongLiveRAG_CompareGrid" for n in wf["nodes"]):
        from core.files.video import read_video
        from core.files.grid import GAP, LABEL_H
        grid = read_video(videos[0])            # five 48x32 videos under their labels, 3 + 2
        assert grid.shape[1:3] == (2 * (LABEL_H + 32) + GAP, 3 * 48 + 2 * GAP), grid.shape
    print(f"{path.name}: {elapsed:.1f} s -> {[p.name for p in videos + maps]}")


def post(server, path, body=None):
    req = urllib.request.Request(server["url"] + path, data=json.dumps(body or {}).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        text = r.read()
    return json.loads(text) if text.strip() else None


def wait_for(server, prompt_id, timeout=600) -> dict:
    for _ in range(int(timeout / 0.25)):
        entry = get(server, f"/history/{prompt_id}").get(prompt_id)
        if entry and entry.get("status", {}).get("completed") is not None:
            return entry
        time.sleep(0.25)
    raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout} s")


CANCEL_AFTER = r"""
import json, sys, urllib.request, uuid, websocket
host, prompt, blocks = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
client = str(uuid.uuid4())
ws = websocket.create_connection(f"ws://{host}/ws?clientId={client}", timeout=600)
def post(path, body):
    req = urllib.request.Request(f"http://{host}{path}", data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    return urllib.request.urlopen(req, timeout=30).read()
prompt_id = json.loads(post("/prompt", {"prompt": prompt, "client_id": client}))["prompt_id"]
while True:
    msg = ws.recv()
    if isinstance(msg, str):
        m = json.loads(msg)
        if m["type"] == "progress" and m["data"].get("prompt_id") == prompt_id and m["data"]["value"] >= blocks:
            post("/interrupt", {})
            print(prompt_id, m["data"]["value"], m["data"]["max"])
            break
"""


def test_cancel_then_queue_again_continues_where_the_run_stopped(server):
    """Cancel (POST /interrupt, as the Cancel button) after some blocks, queue the same graph again: the
    sampler continues from the cancelled run's finished blocks (its info says so) and completes."""
    prompt = {
        "1": {"class_type": "LongLiveRAG_LoadPromptEmbeds", "inputs": {"path": "prompt.safetensors"}},
        "2": {"class_type": "LongLiveRAG_LoadBackbone", "inputs": {
            "backbone": "causal_forcing.pt", "lora": "none", "lora_strength": 1.0, "weight_dtype": "auto",
            "device": "auto", "offload": "offload after sampling"}},
        "3": {"class_type": "LongLiveRAG_ARBlockSampler", "inputs": {
            "backbone": ["2", 0], "positive": ["1", 0], "width": 48, "height": 32, "length": 2397, "seed": 11,
            "sink_size": 1, "local_attn_size": 12, "frames_per_block": 3, "steps": "1000,750,500,250",
            "shift": 5.0}},
        "4": {"class_type": "PreviewAny", "inputs": {"source": ["3", 2]}},
    }
    host = f"127.0.0.1:{server['port']}"
    proc = subprocess.run([PY, "-c", CANCEL_AFTER, host, json.dumps(prompt), "5"], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    first, seen, total = proc.stdout.split()
    assert int(seen) >= 5 and int(total) == 200                  # 600 latent frames = 200 blocks
    stopped = wait_for(server, first)
    assert stopped["status"]["status_str"] == "error", stopped["status"]
    assert any(m[0] == "execution_interrupted" for m in stopped["status"]["messages"]), stopped["status"]
    second = wait_for(server, post(server, "/prompt", {"prompt": prompt})["prompt_id"])
    assert second["status"]["status_str"] == "success", second["status"]
    info = second["outputs"]["4"]["text"][0]
    assert info.startswith("600 latent frames = 2397 video frames") and "rounded" not in info, info
    assert "continued from the run that stopped (cancelled or failed) of this graph: its first" in info, info
    done = int(info.split("its first ")[1].split()[0])
    assert 15 <= done < 600, info
    print(f"cancelled after block {seen}; the next queue continued from {done} latent frames")


@pytest.mark.parametrize("vae, channels, stride", [("wan_2.1_vae.safetensors", 16, 8),
                                                   ("wan2.2_vae.safetensors", 48, 16)], ids=["wan2.1", "wan2.2"])
def test_chunked_decode_equals_comfyui_whole_video_decode(server, vae, channels, stride):
    """Decode Long Video streams ComfyUI's own Wan2.1 and Wan2.2 VAEs chunk by chunk: the same frames as their
    one-call decode, for any chunk size."""
    proc = subprocess.run([PY, "-c", DECODE_CHECK, COMFY, str(ROOT), str(server["base"] / "models" / "vae" / vae),
                           str(channels), str(stride)], capture_output=True, text=True, cwd=COMFY, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    diffs = [float(line.split()[1]) for line in proc.stdout.strip().splitlines()]
    assert len(diffs) == 3 and max(diffs) < 1e-5, proc.stdout


def test_a_longlive2_story_reads_seconds_at_24_fps_and_cut_lines_start_shots(server):
    """The Prompt Schedule with the LongLive 2.0 backbone connected: its timeline at 24 fps and blocks of 8, the
    sampler (native: shot sink on) begins the cut line's shot there."""
    prompt = {
        "1": {"class_type": "LLRAGTest_TinyWanCLIP", "inputs": {}},
        "2": {"class_type": "LongLiveRAG_LoadBackbone", "inputs": {
            "backbone": "model_bf16.pt", "lora": "none", "lora_strength": 1.0, "weight_dtype": "auto",
            "device": "auto", "offload": "offload after sampling"}},
        "3": {"class_type": "LongLiveRAG_PromptSchedule", "inputs": {
            "clip": ["1", 0], "schedule": "0s: a red fox in the snow\n2s cut: a lighthouse at night", "switch": "auto",
            "global_sink": True, "retrieval_scope": "all", "backbone": ["2", 0]}},
        "4": {"class_type": "LongLiveRAG_ARBlockSampler", "inputs": {
            "backbone": ["2", 0], "positive": ["3", 0], "width": 32, "height": 32, "length": 97, "seed": 5,
            "sink_size": -1, "local_attn_size": 0, "frames_per_block": 0, "steps": "auto", "shift": 0.0}},
        "5": {"class_type": "PreviewAny", "inputs": {"source": ["3", 1]}},
        "6": {"class_type": "PreviewAny", "inputs": {"source": ["4", 2]}},
        "7": {"class_type": "PreviewAny", "inputs": {"source": ["2", 1]}},
    }
    done = wait_for(server, post(server, "/prompt", {"prompt": prompt})["prompt_id"])
    assert done["status"]["status_str"] == "success", done["status"]
    timeline, info, loaded = (done["outputs"][k]["text"][0] for k in ("5", "6", "7"))
    assert timeline.splitlines()[1] == ("Prompt Schedule line 2 '2s cut: a lighthouse at night': asks for frame 12 "
                                        "(2 s), inside a block: rounded up to the next block start, block 2 = frame "
                                        "16 (2.66667 s)")
    assert "strategy native" in info and "multi-shot sink on" in info and "the Prompt Schedule at" not in info
    assert "Wan2.2 TI2V-5B family" in loaded and "1280x704 px (Wan2.2 latents, 48 channels, 44x80) at 24 fps" in loaded


OUTSIDE = "outside_the_folders"      # under the server's base folder, beside input/ and models/


def refused(server, path: str) -> tuple[str, bool]:
    """ComfyUI's answer (JSON text) to a prompt whose Load Prompt Embeds names ``path``, and whether ComfyUI refused
    it before running (HTTP 400: ComfyUI checks a V3 combo's value against its options from 0.8 on). An older
    ComfyUI runs the prompt and the pack's own check refuses the name when the node executes, before any file is
    opened: the answer is then the run's error."""
    prompt = {"1": {"class_type": "LongLiveRAG_LoadPromptEmbeds", "inputs": {"path": path}},
              "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}
    try:
        queued = post(server, "/prompt", {"prompt": prompt})
    except urllib.error.HTTPError as answer:
        assert answer.code == 400
        text = answer.read().decode()
        errors = json.loads(text)["node_errors"]["1"]["errors"]
        assert [e["type"] for e in errors] == ["value_not_in_list"] and f"'{path}'" in errors[0]["details"], text
        return text, True
    entry = wait_for(server, queued["prompt_id"])
    assert entry["status"]["status_str"] == "error" and not entry.get("outputs"), entry
    return json.dumps(entry["status"]["messages"]), False


def test_prompt_embeds_outside_comfyuis_folders_are_refused(server):
    """A workflow's Load Prompt Embeds cannot read a file outside ComfyUI's folders: a path with '..', an absolute
    path and a link leading out of the input folder are refused before anything runs (an older ComfyUI: before
    the file is opened), and the answer is the same whether the file outside exists or not (nor does it show the
    file's keys)."""
    base = server["base"]
    (base / OUTSIDE).mkdir(exist_ok=True)
    secret = base / OUTSIDE / "secret.safetensors"
    save_file({"prompt_embeds": torch.zeros(1, 4, 64), "secret_key": torch.zeros(1)}, str(secret))
    link = base / "input" / "link.safetensors"
    link.symlink_to(secret)
    try:
        assert sorted(embeds_options(server)) == sorted(["prompt.safetensors", WIDE_EMBEDS])   # the link is not offered
        for path in (f"../{OUTSIDE}/secret.safetensors", f"../../{base.name}/{OUTSIDE}/secret.safetensors",
                     str(secret), "link.safetensors"):
            answer, validated = refused(server, path)
            assert "secret_key" not in answer
            if not validated:          # the pack's own check, when the node ran
                assert "PermissionError" in answer and "prompt_embeds" in answer, answer
                continue
            missing = path.replace("secret", "nothing").replace("link", "nothing")
            assert refused(server, missing)[0].replace(missing, path) == answer
    finally:
        link.unlink()


def test_an_old_workflows_pool_directory_is_ignored_and_nothing_is_created_outside(server, tmp_path):
    """A History Pool saved with the earlier 'directory' input (here '..' and absolute paths, in a UI-format
    workflow run by comfy-cli and in an API prompt) still runs with its pool on disk: the value is ignored with a
    warning, nothing is created where it pointed, and no pool file is left behind."""
    base = server["base"]
    targets = [base / OUTSIDE / "pool_rel", base / OUTSIDE / "pool_abs"]
    relative = os.path.relpath(targets[0], COMFY)                         # from ComfyUI's working folder
    assert relative.startswith("..")
    wf = for_test(json.loads((ROOT / "workflows" / "longlive_rag_causal_forcing_t2v.json").read_text()),
                  "prompt.safetensors")
    pool = next(n for n in wf["nodes"] if n["type"] == "LongLiveRAG_HistoryPool")
    pool["widgets_values"] = ["disk", 0, "kv (exact)", relative]         # as saved before
    run_workflow(server, wf, tmp_path / "old_pool.json")
    prompt = {
        "1": {"class_type": "LongLiveRAG_LoadPromptEmbeds", "inputs": {"path": "prompt.safetensors"}},
        "2": {"class_type": "LongLiveRAG_LoadBackbone", "inputs": {
            "backbone": "causal_forcing.pt", "lora": "none", "lora_strength": 1.0, "weight_dtype": "auto",
            "device": "auto", "offload": "offload after sampling"}},
        "3": {"class_type": "LongLiveRAG_LoadLatentEncoder", "inputs": {"encoder": "avg_pool (no file)"}},
        "4": {"class_type": "LongLiveRAG_HistoryPool", "inputs": {
            "location": "disk", "budget_mb": 0, "storage": "kv (exact)", "directory": str(targets[1])}},
        "5": {"class_type": "LongLiveRAG_RetrieveContext", "inputs": {
            "encoder": ["3", 0], "top_k": 2, "recent_exclude": 1, "pool": ["4", 0]}},
        "6": {"class_type": "LongLiveRAG_ARBlockSampler", "inputs": {
            "backbone": ["2", 0], "positive": ["1", 0], "retrieval": ["5", 0], "width": 48, "height": 32,
            "length": 81, "seed": 3, "sink_size": -1, "local_attn_size": 0, "frames_per_block": 0, "steps": "auto",
            "shift": 0.0}},
        "7": {"class_type": "PreviewAny", "inputs": {"source": ["6", 2]}},
    }
    done = wait_for(server, post(server, "/prompt", {"prompt": prompt})["prompt_id"])
    assert done["status"]["status_str"] == "success", done["status"]
    assert not any(t.exists() for t in targets), targets
    assert not list(base.rglob("longlive_rag_pool_*")), list(base.rglob("longlive_rag_pool_*"))
    assert "History Pool: the workflow's 'directory' is ignored" in (base / "server.log").read_text()
