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
import urllib.request
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

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
    for name in ("wan_2.1_vae.safetensors", "wan2.2_vae.safetensors"):
        subprocess.run([PY, "-c", VAE_WRITER, COMFY, name, str(m / "vae" / name)], check=True, cwd=COMFY)
    (base / "input").mkdir(exist_ok=True)
    emb = torch.randn(1, 20, 64, generator=torch.Generator().manual_seed(4))
    save_file({"prompt_embeds": torch.cat([emb, torch.zeros(1, 492, 64)], 1)}, str(base / "input" / "prompt.safetensors"))
    from PIL import Image                 # the image workflow's LoadImage default
    pixels = torch.rand(64, 96, 3, generator=torch.Generator().manual_seed(5)).mul(255).byte().numpy()
    Image.fromarray(pixels).save(base / "input" / "example.png")


# ComfyUI builds its Wan VAEs at fixed sizes (comfy/sd.py: the Wan2.1 VAE's width is read from the file, but
# the Wan2.2 VAE is always dim 160 / decoder 256 / 48 channels, 704,688,668 weights) and loads a file
# non-strictly, leaving missing weights uninitialised: so each is written at the size ComfyUI builds, with its
# real key names and random weights (fp16: Wan2.1 ~250 MB at dim 96, Wan2.2 1.4 GB), built on the meta device.
VAE_WRITER = r"""
import sys, torch
comfy, name, out = sys.argv[1:4]
sys.argv = sys.argv[:1] + ["--cpu"]
sys.path.insert(0, comfy)
import comfy.options; comfy.options.enable_args_parsing()
from safetensors.torch import save_file
from comfy.ldm.wan import vae as wan21, vae2_2 as wan22
torch.manual_seed(0)
with torch.device("meta"):
    if name == "wan2.2_vae.safetensors":     # what comfy/sd.py builds for a Wan2.2 VAE
        v = wan22.WanVAE(dim=160, z_dim=48, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                         temperal_downsample=[False, True, True], dropout=0.0)
    else:
        v = wan21.WanVAE(dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                         temperal_downsample=[False, True, True], dropout=0.0)
def init(k, t):
    if k.endswith("gamma"):
        return torch.ones(t.shape)
    return torch.randn(t.shape) / max(1, t[0].numel()) ** 0.5 if t.dim() > 1 else torch.zeros(t.shape)
save_file({k: init(k, t).half().contiguous() for k, t in v.state_dict().items()}, out)
"""
TINY_CLIP_NODE = """
import torch


class TinyWanCLIP:
    # a stand-in for ComfyUI's CLIP with what CLIPTextEncode uses; tokens under umT5's key, 64-wide embeddings
    def tokenize(self, text):
        return {"umt5xxl": [[(ord(c), 1.0) for c in text]]}

    def encode_from_tokens_scheduled(self, tokens):
        text = "".join(chr(t) for t, _ in tokens["umt5xxl"][0])
        g = torch.Generator().manual_seed(sum(map(ord, text)))
        emb = torch.cat([torch.randn(1, 20, 64, generator=g), torch.zeros(1, 492, 64)], 1)
        return [[emb, {"pooled_output": None}]]


class LoadTinyWanCLIP:
    RETURN_TYPES = ("CLIP",)
    FUNCTION = "load"
    CATEGORY = "testing"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}

    def load(self):
        return (TinyWanCLIP(),)


NODE_CLASS_MAPPINGS = {"LLRAGTest_TinyWanCLIP": LoadTinyWanCLIP}
"""
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
                if getattr(i, name, None) is not None:
                    assert options[name] == getattr(i, name), (node_id, i.id, name)
        assert served["output"] == [o.io_type for o in schema.outputs], node_id
        assert served["output_name"] == [o.display_name for o in schema.outputs], node_id
        assert served["output_tooltips"] == [o.tooltip for o in schema.outputs], node_id
    assert "self_forcing.pt" in info["LongLiveRAG_LoadBackbone"]["input"]["required"]["backbone"][1]["options"]
    assert "ae_latent_mem.pt" in info["LongLiveRAG_LoadLatentEncoder"]["input"]["required"]["encoder"][1]["options"]


def test_the_workflows_are_listed_as_templates(server):
    templates = get(server, "/api/workflow_templates")
    assert sorted(templates["ComfyUI-LongLive-RAG"]) == sorted(p.stem for p in WORKFLOWS)


def for_test(wf: dict, embeds: Path) -> dict:
    """Swap CLIPLoader + CLIPTextEncode for Load Prompt Embeds, or (stories) CLIPLoader for the tiny test CLIP
    and the schedule for one that fits the tiny video; make the video tiny."""
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
        text.update(type="LongLiveRAG_LoadPromptEmbeds", inputs=[], widgets_values=[str(embeds)],
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
            length = 189 if is_longlive2(wf) else 41 if n["id"] in feeds_a_start else 81
            start = any(l[3] == n["id"] and by_id[l[3]]["inputs"][l[4]]["name"] == "start" for l in wf["links"])
            n["widgets_values"][:3] = [0, 0, length] if start and is_longlive2(wf) else [*size, length]
        if n["type"] == "ImageScale":
            n["widgets_values"][1:3] = size
        if n["type"] == "LongLiveRAG_Decode":
            n["widgets_values"] = [4]
    return wf


def is_longlive2(wf: dict) -> bool:
    return any(n["type"] == "LongLiveRAG_LoadBackbone" and n["widgets_values"][0] == "model_bf16.pt"
               for n in wf["nodes"])


SAMPLER_INFO = {   # what each workflow's sampler says about its start (shown by Preview as Text)
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
    "longlive_rag_longlive2_i2v": ["48 latent frames = 189 video frames (7.88 s at 24 fps)",
                                   "starts from the given 1 latent frames (an image), kept as given, held clean inside "
                                   "the first block", "LongLive 2.0: 32x32 px (Wan2.2 latents"],
}


def shown_texts(server) -> list[str]:
    return [t for item in get(server, "/history").values() for out in item.get("outputs", {}).values()
            for t in out.get("text", [])]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_runs_in_comfyui(server, path, tmp_path):
    wf = for_test(json.loads(path.read_text()), server["base"] / "input" / "prompt.safetensors")
    f = tmp_path / path.name
    f.write_text(json.dumps(wf))
    before = set((server["base"] / "output").rglob("*")) if (server["base"] / "output").exists() else set()
    comfy = os.environ.get("COMFY_CLI") or shutil.which("comfy") or str(Path(PY).with_name("comfy"))
    t0 = time.time()
    proc = subprocess.run([comfy, "--skip-prompt", "--workspace", COMFY, "run", "--workflow", str(f), "--wait",
                           "--host", "127.0.0.1", "--port", str(server["port"]), "--where", "local", "--no-watch",
                           "--timeout", "900"], capture_output=True, text=True, timeout=1200)
    elapsed = time.time() - t0
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
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
    embeds = str(server["base"] / "input" / "prompt.safetensors")
    prompt = {
        "1": {"class_type": "LongLiveRAG_LoadPromptEmbeds", "inputs": {"path": embeds}},
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


DECODE_CHECK = r"""
import importlib.util, sys, torch
comfy_dir, root, vae_path, channels, stride = sys.argv[1:6]
channels, stride = int(channels), int(stride)
sys.argv = sys.argv[:1] + ["--cpu"]
sys.path.insert(0, comfy_dir)
import comfy.options; comfy.options.enable_args_parsing()
import comfy.sd, comfy.utils
spec = importlib.util.spec_from_file_location("llrag_pack", root + "/__init__.py", submodule_search_locations=[root])
pack = importlib.util.module_from_spec(spec); sys.modules["llrag_pack"] = pack; spec.loader.exec_module(pack)
from llrag_pack.nodes.decode import decode_video
vae = comfy.sd.VAE(sd=comfy.utils.load_torch_file(vae_path))
h, w = 32 // stride, 48 // stride
z = torch.randn(1, channels, 7, h, w, generator=torch.Generator().manual_seed(0))
whole = vae.decode(z).reshape(-1, 32, 48, 3)
for chunk in (1, 3, 7):
    got = decode_video(vae, z, chunk)
    assert got.shape == whole.shape == (25, 32, 48, 3), (got.shape, whole.shape)
    print(chunk, float((got - whole).abs().max()))
"""


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
