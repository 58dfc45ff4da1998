"""Python sources the ComfyUI integration test (tests/integration/test_comfyui.py) runs in ComfyUI's interpreter
or writes into its custom_nodes folder."""

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
