"""Regenerates the example workflows (UI format, version 0.4) from the nodes' own definitions.

    python workflows/build.py            # from the repository root
    python workflows/build.py --check    # only list stale workflows (exit 1 if any is)

The test suite checks the committed .json files equal this script's output, so widget values and
links never drift from the nodes. Core ComfyUI nodes used here are described in CORE below.
"""
from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import NamedTuple

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tools"))
from load_pack import load_pack, pack_nodes  # noqa: E402
sys.path.insert(0, str(HERE))
from notes import note_for  # noqa: E402
from template_meta import decorate  # noqa: E402

TEXT_ENCODER = "umt5_xxl_fp8_e4m3fn_scaled.safetensors"
ENCODER = "ae_latent_mem.pt"
AVG_POOL = "avg_pool (no file)"
LL2_BACKBONE = "model_bf16.pt"          # LongLive 2.0 (Efficient-Large-Model/LongLive-2.0-5B), merged bf16
PROMPT = ("A red fox trots through a snowy birch forest at dawn, soft golden light, the camera follows it "
          "in one continuous tracking shot, cinematic, highly detailed")
SECONDS = 30                            # the length of the examples
# LongLive in ComfyUI's formats, as `python -m core convert --backbone longlive_base.pt --lora longlive_lora.pt
# --lora-out ...` writes it: the base for Load Diffusion Model, the LoRA for LoraLoaderModelOnly
COMFY_BACKBONE, COMFY_LORA = "longlive_base_bf16.safetensors", "longlive_lora.safetensors"


class Family(NamedTuple):
    """What a backbone family's workflows differ in: its VAE, its retrieval descriptors, its frame rate, the size a
    start image is scaled to, and a ``SECONDS`` length in video frames."""
    vae: str
    encoder: str
    fps: float
    size: tuple[int, int]
    frames: int


def pack_module(name: str):
    """A module of the pack, the copy its nodes use (e.g. "core.families.registry")."""
    return importlib.import_module(f"{load_pack().__name__}.{name}")


def workflow_family(family, encoder: str, frames: int) -> Family:
    """A registered backbone family's workflow values, read from its published settings and latent format;
    ``frames``: the example's length widget, which must be ``SECONDS`` at the family's rate."""
    defaults = family.defaults
    fmt = defaults.latent
    if abs(frames / fmt.fps - SECONDS) > 0.5:
        raise ValueError(f"{family.name}: a length of {frames} video frames is {frames / fmt.fps:.2f} s at {fmt.fps} "
                         f"fps, not {SECONDS} s; give about {SECONDS * fmt.fps}")
    return Family(fmt.vae_file, encoder, float(fmt.fps), fmt.video_size(defaults.latent_hw), frames)


WAN21 = workflow_family(pack_module("core.app.default_family").default_family(), ENCODER, 477)   # 120 latent frames
# LongLive 2.0: the Wan2.2 VAE, avg_pool (no released retrieval encoder), 24 fps, 1280x704
LL2 = workflow_family(pack_module("core.families.registry").family("Wan2.2 TI2V-5B"), AVG_POOL, 721)

# type → (inputs [(name, type, widget default or None for links)], outputs [(name, type)])
CORE = {
    "CLIPLoader": ([("clip_name", "COMBO", TEXT_ENCODER), ("type", "COMBO", "wan"), ("device", "COMBO", "default")],
                   [("CLIP", "CLIP")]),
    "CLIPTextEncode": ([("text", "STRING", PROMPT), ("clip", "CLIP", None)], [("CONDITIONING", "CONDITIONING")]),
    "VAELoader": ([("vae_name", "COMBO", WAN21.vae)], [("VAE", "VAE")]),
    "CreateVideo": ([("images", "IMAGE", None), ("fps", "FLOAT", WAN21.fps), ("audio", "AUDIO", None)],
                    [("VIDEO", "VIDEO")]),
    "SaveVideo": ([("video", "VIDEO", None), ("filename_prefix", "STRING", "video/LongLiveRAG"),
                   ("format", "COMBO", "auto"), ("codec", "COMBO", "auto")], []),
    "ImageStitch": ([("image1", "IMAGE", None), ("direction", "COMBO", "right"), ("match_image_size", "BOOLEAN", True),
                     ("spacing_width", "INT", 8), ("spacing_color", "COMBO", "white"), ("image2", "IMAGE", None)],
                    [("IMAGE", "IMAGE")]),
    "SaveImage": ([("images", "IMAGE", None), ("filename_prefix", "STRING", "LongLiveRAG/retrieval_map")], []),
    "PreviewAny": ([("source", "*", None)], []),
    "LoadImage": ([("image", "COMBO", "example.png"), ("upload", "COMBO", "image")], [("IMAGE", "IMAGE"), ("MASK", "MASK")]),
    "ImageScale": ([("image", "IMAGE", None), ("upscale_method", "COMBO", "lanczos"), ("width", "INT", WAN21.size[0]),
                    ("height", "INT", WAN21.size[1]), ("crop", "COMBO", "center")], [("IMAGE", "IMAGE")]),
    "VAEEncode": ([("pixels", "IMAGE", None), ("vae", "VAE", None)], [("LATENT", "LATENT")]),
    "UNETLoader": ([("unet_name", "COMBO", COMFY_BACKBONE), ("weight_dtype", "COMBO", "default")], [("MODEL", "MODEL")]),
    "LoraLoaderModelOnly": ([("model", "MODEL", None), ("lora_name", "COMBO", COMFY_LORA),
                             ("strength_model", "FLOAT", 1.0)], [("MODEL", "MODEL")]),
}
IMAGE_PROMPT = ("The scene in the picture comes to life: the camera slowly pushes in as the light shifts and the "
                "subject moves naturally, one continuous shot, cinematic, highly detailed")
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}



def node_spec(cls):
    """(inputs, outputs) of one of our node classes in CORE's format, from its V3 schema."""
    schema = cls.GET_SCHEMA()
    inputs = []
    for i in schema.inputs:
        kind = i.get_io_type()
        default = getattr(i, "default", None)
        if kind == "COMBO" and default is None:
            default = i.options[0] if i.options else None
        inputs.append((i.id, kind, default if kind in WIDGET_TYPES else None))
    return inputs, [(o.display_name, o.io_type) for o in schema.outputs]


class Graph:
    def __init__(self, specs):
        self.specs, self.nodes, self.links = specs, [], []

    def add(self, type_, pos, widgets=None, size=(320, 160), title=None):
        inputs, outputs = self.specs[type_]
        widgets = widgets or {}
        unknown = set(widgets) - {n for n, k, _ in inputs if k in WIDGET_TYPES}
        if unknown:
            raise KeyError(f"{type_} has no widgets {unknown}")
        values = []
        for name, kind, default in inputs:
            if kind in WIDGET_TYPES:
                values.append(widgets.get(name, default))
                if name == "seed":
                    values.append("fixed")   # the frontend's control_after_generate value
        node = {"id": len(self.nodes) + 1, "type": type_, "pos": list(pos), "size": list(size), "flags": {},
                "order": len(self.nodes), "mode": 0,
                "inputs": [{"name": n, "type": k, "link": None} for n, k, _ in inputs if k not in WIDGET_TYPES],
                "outputs": [{"name": n, "type": k, "links": [], "slot_index": i} for i, (n, k) in enumerate(outputs)],
                "properties": {"Node name for S&R": type_}, "widgets_values": values}
        if title:
            node["title"] = title
        self.nodes.append(node)
        return node["id"]

    def link(self, src, out_name, dst, in_name):
        s, d = self.nodes[src - 1], self.nodes[dst - 1]
        oi = next(i for i, o in enumerate(s["outputs"]) if o["name"] == out_name)
        ii = next(i for i, x in enumerate(d["inputs"]) if x["name"] == in_name)
        lid = len(self.links) + 1
        kind = s["outputs"][oi]["type"]
        self.links.append([lid, src, oi, dst, ii, kind])
        s["outputs"][oi]["links"].append(lid)
        d["inputs"][ii]["link"] = lid

    def to_json(self, title):
        return {"last_node_id": len(self.nodes), "last_link_id": len(self.links), "nodes": self.nodes,
                "links": self.links, "groups": [], "config": {},
                "extra": {"ds": {"scale": 0.7, "offset": [60, 80]}, "info": {"title": title}}, "version": 0.4}


def add_prompt(g: Graph, story: bool) -> tuple[int, str]:
    """CLIPLoader + CLIPTextEncode, or + Prompt Schedule (its timeline shown by Preview as Text, added last
    by ``show_timeline``): (node, output) for the sampler's 'positive'."""
    clip = g.add("CLIPLoader", (0, 0), size=(320, 110))
    if story:
        sched = g.add("LongLiveRAG_PromptSchedule", (0, 160), size=(380, 260), title="Prompt Schedule (the story)")
        g.link(clip, "CLIP", sched, "clip")
        return sched, "schedule"
    text = g.add("CLIPTextEncode", (0, 160), size=(380, 200))
    g.link(clip, "CLIP", text, "clip")
    return text, "CONDITIONING"


def show_timeline(g: Graph, prompt: tuple[int, str], story: bool, pos) -> None:
    if story:
        preview = g.add("PreviewAny", pos, size=(420, 160), title="Where each prompt begins")
        g.link(prompt[0], "timeline", preview, "source")


def show_info(g: Graph, sampler: int, pos, title="What the sampler did") -> None:
    """Preview as Text of the sampler's info: rounding of the length, a start, a continued run."""
    preview = g.add("PreviewAny", pos, size=(380, 140), title=title)
    g.link(sampler, "info", preview, "source")


def add_retrieval(g: Graph, encoder: str = ENCODER) -> int:
    """Load Latent Encoder + History Pool → Retrieve Context (its node)."""
    enc = g.add("LongLiveRAG_LoadLatentEncoder", (420, 0), {"encoder": encoder}, size=(340, 80))
    pool = g.add("LongLiveRAG_HistoryPool", (420, 130), size=(340, 160))
    ret = g.add("LongLiveRAG_RetrieveContext", (420, 340), size=(340, 160))
    g.link(enc, "encoder", ret, "encoder")
    g.link(pool, "pool", ret, "pool")
    return ret


def add_outputs(g: Graph, sampler: int, vae: int, x: int, prefix: str, fps: float = WAN21.fps) -> None:
    """Decode → CreateVideo (at the backbone's rate) → SaveVideo, and Retrieval Map → SaveImage, right of ``x``."""
    dec = g.add("LongLiveRAG_Decode", (x, 0), size=(320, 120))
    g.link(vae, "VAE", dec, "vae")
    g.link(sampler, "latent", dec, "samples")
    video = g.add("CreateVideo", (x, 170), {"fps": fps}, size=(260, 80))
    g.link(dec, "images", video, "images")
    save = g.add("SaveVideo", (x + 360, 0), {"filename_prefix": prefix}, size=(420, 420))
    g.link(video, "VIDEO", save, "video")
    rmap = g.add("LongLiveRAG_RetrievalMap", (x, 300), size=(320, 110))
    g.link(sampler, "retrieval_log", rmap, "retrieval_log")
    img = g.add("SaveImage", (x, 460), size=(420, 380))
    g.link(rmap, "image", img, "images")


def image_to_video(specs, backbone="self_forcing.pt", family=WAN21,
                   title="Image to long video: Self-Forcing + LongLive-RAG, starting from a picture",
                   prefix="video/LongLiveRAG_i2v"):
    """LoadImage → Upscale Image (to the video's size) → VAE Encode (the family's VAE) → the sampler's start; the
    sampler's width and height stay 0: the start's size."""
    g = Graph(specs)
    clip = g.add("CLIPLoader", (0, 0), size=(320, 110))
    text = g.add("CLIPTextEncode", (0, 160), {"text": IMAGE_PROMPT}, size=(380, 200))
    g.link(clip, "CLIP", text, "clip")
    bb = g.add("LongLiveRAG_LoadBackbone", (0, 420), {"backbone": backbone}, size=(380, 220))
    image = g.add("LoadImage", (0, 720), size=(320, 320), title="Start image")
    width, height = family.size
    scale = g.add("ImageScale", (0, 1090), {"width": width, "height": height}, size=(320, 130),
                  title="Scale to the video's width x height")
    g.link(image, "IMAGE", scale, "image")
    ret = add_retrieval(g, family.encoder)
    vae = g.add("VAELoader", (420, 560), {"vae_name": family.vae}, size=(320, 80))
    enc = g.add("VAEEncode", (420, 680), size=(240, 60))
    g.link(scale, "IMAGE", enc, "pixels")
    g.link(vae, "VAE", enc, "vae")
    sampler = g.add("LongLiveRAG_ARBlockSampler", (800, 0), {"length": family.frames}, size=(360, 400))
    g.link(bb, "backbone", sampler, "backbone")
    g.link(text, "CONDITIONING", sampler, "positive")
    g.link(ret, "retrieval", sampler, "retrieval")
    g.link(enc, "LATENT", sampler, "start")
    add_outputs(g, sampler, vae, 1200, prefix, family.fps)
    show_info(g, sampler, (800, 460))
    return g.to_json(title)


def extend_video(specs, backbone="self_forcing.pt", first=161, total=WAN21.frames):
    """Two samplers chained, same seed: the second starts from the first's whole video and extends it."""
    g = Graph(specs)
    text = add_prompt(g, story=False)
    bb = g.add("LongLiveRAG_LoadBackbone", (0, 420), {"backbone": backbone}, size=(380, 220))
    ret = add_retrieval(g)
    short = g.add("LongLiveRAG_ARBlockSampler", (800, 0), {"length": first}, size=(360, 400),
                  title="1: the first 10 s")
    longer = g.add("LongLiveRAG_ARBlockSampler", (800, 460), {"length": total}, size=(360, 400),
                   title="2: extended to 30 s (same seed)")
    for s in (short, longer):
        g.link(bb, "backbone", s, "backbone")
        g.link(*text, s, "positive")
        g.link(ret, "retrieval", s, "retrieval")
    g.link(short, "latent", longer, "start")
    vae = g.add("VAELoader", (420, 560), size=(320, 80))
    add_outputs(g, longer, vae, 1200, "video/LongLiveRAG_extended")
    show_info(g, longer, (800, 920))
    return g.to_json("Extend a video: 10 s, then the same video continued to 30 s")


def text_to_video(specs, backbone, lora, title, story=False, family=WAN21, prefix=None):
    g = Graph(specs)
    text = add_prompt(g, story)
    bb = g.add("LongLiveRAG_LoadBackbone", (0, 420), {"backbone": backbone, "lora": lora}, size=(380, 220))
    if story:                                   # the schedule's timeline at the backbone's rate and blocks
        g.link(bb, "backbone", text[0], "backbone")
    ret = add_retrieval(g, family.encoder)
    sampler = g.add("LongLiveRAG_ARBlockSampler", (800, 0), {"length": family.frames}, size=(360, 380))
    g.link(bb, "backbone", sampler, "backbone")
    g.link(*text, sampler, "positive")
    g.link(ret, "retrieval", sampler, "retrieval")
    vae = g.add("VAELoader", (800, 440), {"vae_name": family.vae}, size=(320, 80))
    add_outputs(g, sampler, vae, 1200, prefix or ("video/LongLiveRAG_story" if story else "video/LongLiveRAG"),
                family.fps)
    show_timeline(g, text, story, (0, 680))
    show_info(g, sampler, (800, 560))
    return g.to_json(title)


def rolling_video(specs, backbone="rolling_forcing_dmd.pt", seconds=60):
    """One prompt → a minute of video with the rolling sampler (Rolling Forcing's file brings it; no retrieval)."""
    g = Graph(specs)
    text = add_prompt(g, False)
    bb = g.add("LongLiveRAG_LoadBackbone", (0, 420), {"backbone": backbone, "lora": "none"}, size=(380, 220))
    rolling = pack_module("core.app.default_family").default_family().defaults_for("Rolling Forcing")
    length = pack_module("core.app.facts").length_for(rolling, seconds)
    sampler = g.add("LongLiveRAG_ARBlockSampler", (800, 0), {"length": length}, size=(360, 380))
    g.link(bb, "backbone", sampler, "backbone")
    g.link(*text, sampler, "positive")
    vae = g.add("VAELoader", (800, 440), {"vae_name": WAN21.vae}, size=(320, 80))
    add_outputs(g, sampler, vae, 1200, "video/LongLiveRAG_rolling_forcing", WAN21.fps)
    show_info(g, sampler, (800, 560))
    return g.to_json("Rolling Forcing: text to a minute-long video")


def comfy_loaders_t2v(specs, title):
    """Load Diffusion Model → LoraLoaderModelOnly (LongLive's LoRA; more LoRAs chain after it) → the sampler's
    backbone: ComfyUI's loaders and memory management instead of Load Backbone."""
    g = Graph(specs)
    text = add_prompt(g, False)
    unet = g.add("UNETLoader", (0, 420), size=(380, 110), title="Load Diffusion Model (converted LongLive base)")
    lora = g.add("LoraLoaderModelOnly", (0, 560), size=(380, 110), title="LoraLoaderModelOnly (LongLive's LoRA)")
    g.link(unet, "MODEL", lora, "model")
    ret = add_retrieval(g)
    sampler = g.add("LongLiveRAG_ARBlockSampler", (800, 0), {"length": WAN21.frames}, size=(360, 380))
    g.link(lora, "MODEL", sampler, "backbone")
    g.link(*text, sampler, "positive")
    g.link(ret, "retrieval", sampler, "retrieval")
    vae = g.add("VAELoader", (800, 440), size=(320, 80))
    add_outputs(g, sampler, vae, 1200, "video/LongLiveRAG_comfy_loaders")
    show_info(g, sampler, (800, 560))
    return g.to_json(title)


def ab_compare(specs, frames=WAN21.frames, story=False, backbone="causal_forcing.pt", lora=None,
               title="A/B: native window vs LongLive-RAG"):
    g = Graph(specs)
    text = add_prompt(g, story)
    widgets = {"backbone": backbone, **({"lora": lora} if lora else {})}
    bb = g.add("LongLiveRAG_LoadBackbone", (0, 420), widgets, size=(380, 220))
    if story:
        g.link(bb, "backbone", text[0], "backbone")
    enc = g.add("LongLiveRAG_LoadLatentEncoder", (420, 0), {"encoder": ENCODER}, size=(340, 80))
    ret = g.add("LongLiveRAG_RetrieveContext", (420, 130), size=(340, 160))
    g.link(enc, "encoder", ret, "encoder")
    native = g.add("LongLiveRAG_ARBlockSampler", (800, 0), {"length": frames}, size=(360, 380),
                   title="A: native sliding window")
    rag = g.add("LongLiveRAG_ARBlockSampler", (800, 420), {"length": frames}, size=(360, 380),
                title="B: LongLive-RAG (same seed)")
    for s in (native, rag):
        g.link(bb, "backbone", s, "backbone")
        g.link(*text, s, "positive")
    g.link(ret, "retrieval", rag, "retrieval")
    vae = g.add("VAELoader", (420, 340), size=(320, 80))
    decs = []
    for i, s in enumerate((native, rag)):
        d = g.add("LongLiveRAG_Decode", (1200, 420 * i), size=(320, 120))
        g.link(vae, "VAE", d, "vae")
        g.link(s, "latent", d, "samples")
        decs.append(d)
    stitch = g.add("ImageStitch", (1560, 0), size=(300, 160), title="native | retrieval")
    g.link(decs[0], "images", stitch, "image1")
    g.link(decs[1], "images", stitch, "image2")
    video = g.add("CreateVideo", (1560, 200), size=(260, 80))
    g.link(stitch, "IMAGE", video, "images")
    prefix = "video/LongLiveRAG_story_AB" if story else "video/LongLiveRAG_AB"
    save = g.add("SaveVideo", (1900, 0), {"filename_prefix": prefix}, size=(420, 420))
    g.link(video, "VIDEO", save, "video")
    rmap = g.add("LongLiveRAG_RetrievalMap", (1560, 340), size=(320, 110))
    g.link(rag, "retrieval_log", rmap, "retrieval_log")
    img = g.add("SaveImage", (1900, 460), size=(420, 380))
    g.link(rmap, "image", img, "images")
    show_timeline(g, text, story, (0, 680))
    return g.to_json(title)


STRATEGY_RUNS = ("native", "rag", "infinity-rope", "memrope", "deep-forcing")


def compare_strategies(specs, frames=WAN21.frames, backbone="self_forcing.pt"):
    """One prompt, one seed, every long-context strategy: five samplers, decoded into one labelled grid, plus
    the retrieval map of the rag run."""
    g = Graph(specs)
    text = add_prompt(g, story=False)
    bb = g.add("LongLiveRAG_LoadBackbone", (0, 420), {"backbone": backbone}, size=(380, 220))
    enc = g.add("LongLiveRAG_LoadLatentEncoder", (420, 0), {"encoder": ENCODER}, size=(340, 80))
    vae = g.add("VAELoader", (420, 340), size=(320, 80))
    decs, rag = [], None
    for name in STRATEGY_RUNS:
        if name == "rag":
            ret = g.add("LongLiveRAG_RetrieveContext", (420, 130), size=(340, 160), title="rag: Retrieve Context")
            g.link(enc, "encoder", ret, "encoder")
        else:
            strat = g.add("LongLiveRAG_ContextStrategy", (420, 130), {"strategy": name}, size=(340, 200),
                          title=f"Context Strategy: {name}")
        s = g.add("LongLiveRAG_ARBlockSampler", (800, 0), {"length": frames}, size=(360, 380), title=f"{name} (same seed)")
        g.link(bb, "backbone", s, "backbone")
        g.link(*text, s, "positive")
        if name == "rag":
            g.link(ret, "retrieval", s, "retrieval")
            rag = s
        else:
            g.link(strat, "strategy", s, "strategy")
        d = g.add("LongLiveRAG_Decode", (1200, 0), size=(320, 120), title=f"Decode {name}")
        g.link(vae, "VAE", d, "vae")
        g.link(s, "latent", d, "samples")
        decs.append(d)
    grid = g.add("LongLiveRAG_CompareGrid", (1560, 0), {"labels": "\n".join(STRATEGY_RUNS)}, size=(320, 260))
    for i, d in enumerate(decs, 1):
        g.link(d, "images", grid, f"images_{i}")
    video = g.add("CreateVideo", (1560, 300), size=(260, 80))
    g.link(grid, "images", video, "images")
    save = g.add("SaveVideo", (1900, 0), {"filename_prefix": "video/LongLiveRAG_strategies"}, size=(420, 420))
    g.link(video, "VIDEO", save, "video")
    rmap = g.add("LongLiveRAG_RetrievalMap", (1560, 420), size=(320, 110))
    g.link(rag, "retrieval_log", rmap, "retrieval_log")
    img = g.add("SaveImage", (1900, 460), size=(420, 380))
    g.link(rmap, "image", img, "images")
    return g.to_json("Every long-context strategy side by side: one prompt, one seed, five memories")


def build() -> dict[str, dict]:
    """Every shipped workflow, laid out and annotated like an official template (template_meta.py)."""
    return {name: decorate(wf, note_for(wf)) for name, wf in graphs().items()}


def graphs() -> dict[str, dict]:
    specs = dict(CORE)
    specs.update({name: node_spec(cls) for name, cls in pack_nodes(load_pack()).items()})
    return {
        "longlive_rag_self_forcing_t2v.json": text_to_video(specs, "self_forcing.pt", "none",
                                                            "Self-Forcing + LongLive-RAG: text to long video"),
        "longlive_rag_causal_forcing_t2v.json": text_to_video(specs, "causal_forcing.pt", "none",
                                                              "Causal-Forcing + LongLive-RAG: text to long video"),
        "longlive_rag_longlive_t2v.json": text_to_video(specs, "longlive_base.pt", "longlive_lora.pt",
                                                        "LongLive (base + LoRA) + LongLive-RAG: text to long video"),
        "longlive_rag_ab_native_vs_retrieval.json": ab_compare(specs),
        "longlive_rag_comfy_loaders_lora.json": comfy_loaders_t2v(
            specs, "LongLive with ComfyUI's loaders: Load Diffusion Model + LoRA stack + LongLive-RAG"),
        "longlive_rag_longlive_story.json": text_to_video(
            specs, "longlive_base.pt", "longlive_lora.pt",
            "LongLive story: timed prompts with KV re-cache + LongLive-RAG", story=True),
        "longlive_rag_story_ab_native_vs_retrieval.json": ab_compare(
            specs, story=True, backbone="longlive_base.pt", lora="longlive_lora.pt",
            title="Story A/B: native window vs LongLive-RAG (same schedule, same seed)"),
        "longlive_rag_image_to_video.json": image_to_video(specs),
        "longlive_rag_extend_video.json": extend_video(specs),
        "longlive_rag_compare_strategies.json": compare_strategies(specs),
        "longlive_rag_rolling_forcing_t2v.json": rolling_video(specs),
        "longlive_rag_longlive2_t2v.json": text_to_video(
            specs, LL2_BACKBONE, "none", "LongLive 2.0 (Wan2.2-TI2V-5B, 720p) + LongLive-RAG: text to long video",
            family=LL2, prefix="video/LongLiveRAG_longlive2"),
        "longlive_rag_causal_forcing_pp_framewise_t2v.json": text_to_video(
            specs, "framewise-2step.pt", "none", "Causal Forcing++ frame-wise (2-step) + LongLive-RAG: text to long video",
            prefix="video/LongLiveRAG_cfpp_framewise"),
        "longlive_rag_longlive2_i2v.json": image_to_video(
            specs, LL2_BACKBONE, LL2, "LongLive 2.0 (Wan2.2-TI2V-5B, 720p) + LongLive-RAG: image to long video",
            "video/LongLiveRAG_longlive2_i2v"),
    }


def main(argv: list[str] | None = None) -> int:
    """Write every workflow; with --check only list the stale ones (exit 1 if any is)."""
    check = "--check" in (argv if argv is not None else sys.argv[1:])
    stale = []
    for name, wf in build().items():
        text = json.dumps(wf, indent=1) + "\n"
        path = HERE / name
        if path.is_file() and path.read_text() == text:
            continue
        stale.append(name)
        if not check:
            path.write_text(text)
            print(f"wrote workflows/{name}")
    if check and stale:
        print("stale (run python workflows/build.py): " + ", ".join(stale))
    return 1 if check and stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
