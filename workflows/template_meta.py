"""What makes a generated workflow look like an official ComfyUI template: model download metadata on
the loader nodes, a Markdown note, groups, and a left-to-right layout (models → prompt → retrieval →
sampling → output), applied by workflows/build.py to every graph it builds.
"""
from __future__ import annotations

import importlib

from load_pack import load_pack      # tools/, on the path of workflows/build.py

HF_LLRAG = "https://huggingface.co/qixinhu11/LongLive-RAG/resolve/main/checkpoints/"
HF_WAN = "https://huggingface.co/Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/main/split_files/"
HF_WAN22 = "https://huggingface.co/Comfy-Org/Wan_2.2_ComfyUI_Repackaged/resolve/main/split_files/"
HF_LONGLIVE2 = "https://huggingface.co/Efficient-Large-Model/LongLive-2.0-5B/resolve/main/"
HF_CAUSAL_FORCING = "https://huggingface.co/zhuhz22/Causal-Forcing/resolve/main/"

# file name → (public URL, ComfyUI models folder)
MODEL_FILES = {
    "self_forcing.pt": (HF_LLRAG + "self_forcing.pt", "diffusion_models"),
    "causal_forcing.pt": (HF_LLRAG + "causal_forcing.pt", "diffusion_models"),
    "longlive_base.pt": (HF_LLRAG + "longlive_base.pt", "diffusion_models"),
    "longlive_lora.pt": (HF_LLRAG + "longlive_lora.pt", "loras"),
    "ae_latent_mem.pt": (HF_LLRAG + "ae_latent_mem.pt", "retrieval_encoders"),
    "umt5_xxl_fp8_e4m3fn_scaled.safetensors": (HF_WAN + "text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors",
                                               "text_encoders"),
    "model_bf16.pt": (HF_LONGLIVE2 + "model_bf16.pt", "diffusion_models"),       # LongLive 2.0, LoRA merged
    # frame-wise Causal Forcing++ (released as causal-forcing++/framewise-2step.pt; the name tells the variant)
    "framewise-2step.pt": (HF_CAUSAL_FORCING + "causal-forcing%2B%2B/framewise-2step.pt", "diffusion_models"),
    "rolling_forcing_dmd.pt": ("https://huggingface.co/TencentARC/RollingForcing/resolve/main/checkpoints/"
                               "rolling_forcing_dmd.pt", "diffusion_models"),  # its name selects the rolling sampler
}
VAE_FOLDERS = {"Wan2.1": HF_WAN + "vae/", "Wan2.2": HF_WAN22 + "vae/"}    # latent format → where its VAE file is
# the VAE files by their names in the latent formats (core/latents/format.py)
MODEL_FILES.update({f.vae_file: (VAE_FOLDERS[f.name] + f.vae_file, "vae")
                    for f in importlib.import_module(f"{load_pack().__name__}.core.latents.format").formats()
                    if f.name in VAE_FOLDERS})
# files a user makes once from released ones (no download exists): name → ComfyUI models folder; the note names
# them with the command that makes them (``python -m core convert``), the missing-models dialog cannot offer them
MADE_FILES = {"longlive_base_bf16.safetensors": "diffusion_models", "longlive_lora.safetensors": "loras"}
LOADERS = {"LongLiveRAG_LoadBackbone", "LongLiveRAG_LoadLatentEncoder", "CLIPLoader", "VAELoader", "UNETLoader",
           "LoraLoaderModelOnly"}

# node type → column; columns left to right
COLUMNS = ("Models", "Prompt", "Retrieval", "Sampling", "Output")
ROLE = {"CLIPLoader": "Models", "VAELoader": "Models", "LongLiveRAG_LoadBackbone": "Models", "UNETLoader": "Models",
        "LoraLoaderModelOnly": "Models", "LongLiveRAG_ModelBackbone": "Models",
        "LongLiveRAG_LoadLatentEncoder": "Models", "CLIPTextEncode": "Prompt", "LongLiveRAG_PromptSchedule": "Prompt",
        "LongLiveRAG_LoadPromptEmbeds": "Prompt", "LoadImage": "Prompt", "ImageScale": "Prompt", "VAEEncode": "Prompt",
        "PreviewAny": "Prompt", "LongLiveRAG_HistoryPool": "Retrieval", "LongLiveRAG_RetrieveContext": "Retrieval",
        "LongLiveRAG_ContextStrategy": "Retrieval",
        "LongLiveRAG_ARBlockSampler": "Sampling"}
COLORS = {"Models": "#3f789e", "Prompt": "#8A8", "Retrieval": "#a1309b", "Sampling": "#b58b2a", "Output": "#88A"}
COLUMN_W, GAP, TOP, PAD = 440, 30, 60, 20
NOTE_W = 460


def files_used(wf: dict) -> list[str]:
    """The model files the workflow's loader nodes name, in node order."""
    seen = []
    for node in wf["nodes"]:
        if node["type"] in LOADERS:
            seen += [v for v in node["widgets_values"] if v in MODEL_FILES and v not in seen]
    return seen


def add_model_metadata(wf: dict) -> None:
    """``properties.models`` on each loader node: what the web UI offers to download, and where to."""
    for node in wf["nodes"]:
        if node["type"] in LOADERS:
            files = [v for v in node["widgets_values"] if v in MODEL_FILES]
            node["properties"]["models"] = [{"name": f, "url": MODEL_FILES[f][0], "directory": MODEL_FILES[f][1]}
                                            for f in files]


def lay_out(wf: dict) -> None:
    """Nodes stacked in their column (in the order they were added), columns left to right; one group per column."""
    y = {c: TOP for c in COLUMNS}
    boxes: dict[str, list[float]] = {}
    source = {dst: src for _, src, _, dst, _, _ in wf["links"]}
    cols: dict[int, str] = {}
    for node in wf["nodes"]:
        # a preview sits in its source's column (the schedule's timeline: Prompt; the sampler's info: Sampling)
        col = cols.get(source.get(node["id"])) if node["type"] == "PreviewAny" else None
        col = cols[node["id"]] = col or ROLE.get(node["type"], "Output")
        x = NOTE_W + 40 + COLUMNS.index(col) * (COLUMN_W + 40)
        node["pos"] = [x, y[col]]
        w, h = node["size"]
        y[col] += h + GAP + 30              # room for the title bar
        box = boxes.setdefault(col, [x, node["pos"][1], x + w, node["pos"][1] + h])
        box[2], box[3] = max(box[2], x + w), max(box[3], node["pos"][1] + h)
    strategies = any(n["type"] == "LongLiveRAG_ContextStrategy" for n in wf["nodes"])
    title = {"Retrieval": "Memory strategies"} if strategies else {}
    wf["groups"] = [{"title": title.get(col, col), "bounding": [b[0] - PAD, b[1] - PAD - 40, b[2] - b[0] + 2 * PAD, b[3] - b[1] + 2 * PAD + 40],
                     "color": COLORS[col], "font_size": 24, "flags": {}}
                    for col in COLUMNS if (b := boxes.get(col))]


def add_note(wf: dict, text: str) -> None:
    """A MarkdownNote at the left: what the workflow does, which files, what to expect, what to change first."""
    files = "\n".join(f"- `{f}` → `ComfyUI/models/{MODEL_FILES[f][1]}/`" for f in files_used(wf))
    made = [v for n in wf["nodes"] if n["type"] in LOADERS for v in n["widgets_values"] if v in MADE_FILES]
    files += "".join(f"\n- `{f}` → `ComfyUI/models/{MADE_FILES[f]}/` (made with `python -m core convert`, above)"
                     for f in made)
    body = f"{text.strip()}\n\n**Files** (the missing-models dialog offers each download):\n{files}\n"
    nid = len(wf["nodes"]) + 1
    wf["nodes"].append({"id": nid, "type": "MarkdownNote", "pos": [0, TOP], "size": [NOTE_W - 20, 640], "flags": {},
                        "order": len(wf["nodes"]), "mode": 0, "inputs": [], "outputs": [],
                        "properties": {}, "widgets_values": [body], "color": "#432", "bgcolor": "#653",
                        "title": "Read me"})
    wf["last_node_id"] = nid


def decorate(wf: dict, note: str) -> dict:
    lay_out(wf)
    add_model_metadata(wf)
    add_note(wf, note)
    return wf
