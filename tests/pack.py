"""The pack as ComfyUI imports it, and the node calls the node tests share.

``PACK`` is this checkout imported as a package under a fixed name (tools/load_pack.py), ``N`` its nodes by id
(through ``comfy_entrypoint``); ``bridge`` and ``latent_format`` are the pack's own copies of those modules. The
calls run the golden tiny backbone (``load`` after the ``models_dir`` fixture) at the golden case's settings, and
``FakeCLIP`` / ``build`` run the Prompt Schedule node on a stand-in text encoder.
"""
import importlib.util
import itertools
import sys

import torch
from safetensors.torch import load_file

from load_pack import load_pack, pack_nodes
from paths import GOLDEN


PACK = load_pack("comfyui_longlive_rag_under_test")   # as ComfyUI imports it: a package (here a fixed name)
N = pack_nodes(PACK)                                  # {node id: V3 node class}, through comfy_entrypoint
bridge = sys.modules[f"{PACK.__name__}.nodes.bridge"]
latent_format = sys.modules[f"{PACK.__name__}.core.latents.format"]

STORY = "0s: a red fox in the snow\n# a comment\n1.5s: the fox at a frozen lake\n12f: the ice cracks"
_NODE_IDS = itertools.count(1)


def load_script(name: str, path):
    """A build script of the repository (locales/build.py, workflows/notes.py, …) imported as module ``name``, once."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


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


def schema(node_id):
    return N[node_id].GET_SCHEMA()


class FakeCLIP:
    """What CLIPTextEncode uses of a CLIP: tokenize(text) → {name: tokens}, encode_from_tokens_scheduled(tokens) →
    CONDITIONING. Embeddings [1, 512, width] depend on the text only; every call is recorded."""

    def __init__(self, key="umt5xxl", width=64):
        self.key, self.width, self.calls = key, width, []

    def tokenize(self, text):
        self.calls.append(("tokenize", text))
        return {self.key: [[(ord(c), 1.0) for c in text]]}

    def encode_from_tokens_scheduled(self, tokens):
        text = "".join(chr(t) for t, _ in tokens[self.key][0])
        self.calls.append(("encode", text))
        g = torch.Generator().manual_seed(sum(map(ord, text)))
        emb = torch.cat([torch.randn(1, 12, self.width, generator=g), torch.zeros(1, 500, self.width)], 1)
        return [[emb, {"pooled_output": None}]]


def schedule_node(unique_id=None):
    """The Prompt Schedule class as ComfyUI runs one node of a graph: a copy carrying the node's id (hidden input)."""
    unique_id = unique_id or f"test-{next(_NODE_IDS)}"
    return N["LongLiveRAG_PromptSchedule"].PREPARE_CLASS_CLONE({"hidden_inputs": {"UNIQUE_ID": unique_id}})


def build(clip, text=STORY, switch="recache", global_sink=True, scope="all", node=None):
    """(node, schedule, timeline, ui) of one run of ``node`` (default: a new node)."""
    node = node or schedule_node()
    out = node.execute(clip, text, switch, global_sink, scope)
    return node, out.args[0], out.args[1], out.ui.as_dict()
