"""The environment shared by the builders: patched reference trees, the tiny backbone (strict load of the
repo's tests/data/golden/wan_tiny_t2v_bare.safetensors), stub text encoder / VAE, the RNG contract and a
tracer of every generator call.

Reference trees (git archive of the commits below, then patch_common.prepare):
  ll1  = github.com/NVlabs/LongLive 2462895575c579617af5089c9a05c7b500dc0036 (v1.0)
  rag  = github.com/qixinhu11/LongLive-RAG 973884a (the commit that produced /work/shared/golden/rag_ae)
"""
from __future__ import annotations

import json
import math
import os
import sys
import types
from pathlib import Path

import torch
from safetensors.torch import load_file

HERE = Path(__file__).resolve().parent
ROOT = Path(os.environ.get("GOLDEN_WORK", "/tmp/g21"))   # reference trees, pylib and scratch (outside the repo)
REPO = HERE.parents[4]                  # the repository (tests/data/golden_extra/builders/wan21 → root)
GOLDEN = REPO / "tests" / "data" / "golden"
EXTRA = REPO / "tests" / "data" / "golden_extra"

COMMITS = {
    "ll1": ("github.com/NVlabs/LongLive", "2462895575c579617af5089c9a05c7b500dc0036"),
    "rag": ("github.com/qixinhu11/LongLive-RAG", "973884a"),
}

ARCH = json.loads((GOLDEN / "case.json").read_text())["arch"]
SEEDS_WEIGHTS = 1001

# ---------------------------------------------------------------- patches per tree
def _sizes_patches(pipeline_file: str) -> list:
    return [
        (pipeline_file,
         "        self.num_transformer_blocks = 30\n        self.frame_seq_length = 1560\n",
         "        self.num_transformer_blocks = len(self.generator.model.blocks)  # CPU golden build: the model's\n"
         "        self.frame_seq_length = int(args.frame_seq_length)  # CPU golden build: (H/2)*(W/2) of the latents\n",
         "30 blocks / 1560 tokens per frame (Wan2.1-1.3B at 60x104) -> the tiny model's layers and the "
         "golden's tokens per frame (args.frame_seq_length = H*W/4)"),
        (pipeline_file,
         '                "k": torch.zeros([batch_size, kv_cache_size, 12, 128], dtype=dtype, device=device),\n'
         '                "v": torch.zeros([batch_size, kv_cache_size, 12, 128], dtype=dtype, device=device),\n',
         '                "k": torch.zeros([batch_size, kv_cache_size, *self._heads_hd()], dtype=dtype, device=device),\n'
         '                "v": torch.zeros([batch_size, kv_cache_size, *self._heads_hd()], dtype=dtype, device=device),\n',
         "_initialize_kv_cache 12 heads x 128 -> the model's 2 x 64"),
        (pipeline_file,
         '                "k": torch.zeros([batch_size, 512, 12, 128], dtype=dtype, device=device),\n'
         '                "v": torch.zeros([batch_size, 512, 12, 128], dtype=dtype, device=device),\n',
         '                "k": torch.zeros([batch_size, 512, *self._heads_hd()], dtype=dtype, device=device),\n'
         '                "v": torch.zeros([batch_size, 512, *self._heads_hd()], dtype=dtype, device=device),\n',
         "_initialize_crossattn_cache 12 x 128 -> 2 x 64"),
        (pipeline_file,
         "    def _initialize_kv_cache(self,",
         "    def _heads_hd(self):  # CPU golden build\n"
         "        m = self.generator.model\n"
         "        return m.num_heads, m.dim // m.num_heads\n\n"
         "    def _initialize_kv_cache(self,",
         "helper for the two cache patches above"),
    ]


RNG_PATCH_REASON = ("run-time torch.randn_like(denoised_pred.flatten(0, 1)) on the global generator (a strided "
                    "tensor: values differ from the contiguous draw) -> torch.randn(shape, generator=g) in the same "
                    "order and count (the RNG contract of every golden)")


def _rng_patch(file: str) -> tuple:
    return (file, "torch.randn_like(denoised_pred.flatten(0, 1)),",
            "torch.randn(denoised_pred.flatten(0, 1).shape, generator=self.golden_generator, "
            "dtype=denoised_pred.dtype),", RNG_PATCH_REASON)


def patches(tree: str) -> list:
    from patch_common import COMMON
    if tree == "ll1":
        return COMMON + _sizes_patches("pipeline/causal_inference.py") + [
            _rng_patch("pipeline/causal_inference.py"), _rng_patch("pipeline/interactive_causal_inference.py")]
    if tree == "rag":
        return COMMON + _sizes_patches("pipeline/causal_inference.py") + [
            _rng_patch("pipeline/causal_inference.py"),
            ("wan/modules/causal_model_latentmem.py",
             '                    evicted_k_frames = [f.to("cpu", non_blocking=True) for f in ev_k_split]\n'
             '                    evicted_v_frames = [f.to("cpu", non_blocking=True) for f in ev_v_split]\n',
             '                    evicted_k_frames = [f.to("cpu", non_blocking=True, copy=True) for f in ev_k_split]\n'
             '                    evicted_v_frames = [f.to("cpu", non_blocking=True, copy=True) for f in ev_v_split]\n',
             "pool copy: on CUDA .to('cpu') copies; on CPU it returns a view of temp_k that the roll right after "
             "overwrites (the pool would hold the rolled-in frames) -> copy=True")]
    raise KeyError(tree)


def setup_tree(tree: str):
    """Patched copy under ROOT/<tree>_cpu, put first on sys.path (one tree per process)."""
    from patch_common import prepare
    src = ROOT / f"{tree}_ref"
    dst = ROOT / f"{tree}_cpu"
    records, diff = prepare(src, dst, patches(tree))
    shim = ROOT / "shims"
    shim.mkdir(exist_ok=True)
    (shim / "easydict.py").write_text(
        "class EasyDict(dict):\n"
        "    def __init__(self, d=None, **kw):\n"
        "        super().__init__(d or {}, **kw)\n"
        "        for k, v in list(self.items()):\n"
        "            if isinstance(v, dict) and not isinstance(v, EasyDict):\n"
        "                self[k] = EasyDict(v)\n"
        "    def __getattr__(self, k):\n"
        "        try:\n            return self[k]\n"
        "        except KeyError:\n            raise AttributeError(k)\n"
        "    def __setattr__(self, k, v):\n        self[k] = v\n")
    sys.path[:0] = [str(dst), str(shim)]
    return records, diff


# ---------------------------------------------------------------- model, stubs, args
def make_args(cfg: dict):
    from easydict import EasyDict
    return EasyDict(cfg)


def tiny_causal_model(cls, **kw):
    """The reference's own causal model class at the golden architecture, strict load of the golden weights."""
    a = ARCH
    model = cls(model_type="t2v", patch_size=tuple(a["patch_size"]), text_len=a["text_len"], in_dim=a["in_dim"],
                dim=a["dim"], ffn_dim=a["ffn_dim"], freq_dim=a["freq_dim"], text_dim=a["text_dim"],
                out_dim=a["out_dim"], num_heads=a["num_heads"], num_layers=a["num_layers"],
                qk_norm=a["qk_norm"], cross_attn_norm=a["cross_attn_norm"], eps=a["eps"], **kw)
    model.load_state_dict(load_file(str(GOLDEN / "wan_tiny_t2v_bare.safetensors")), strict=True)
    return model.eval().requires_grad_(False)


def make_wrapper(model, timestep_shift: float):
    """utils.wan_wrapper.WanDiffusionWrapper without from_pretrained (its __init__ body otherwise)."""
    from utils.wan_wrapper import WanDiffusionWrapper
    from utils.scheduler import FlowMatchScheduler
    w = WanDiffusionWrapper.__new__(WanDiffusionWrapper)
    torch.nn.Module.__init__(w)
    w.model = model
    w.uniform_timestep = False
    w.scheduler = FlowMatchScheduler(shift=timestep_shift, sigma_min=0.0, extra_one_step=True)
    w.scheduler.set_timesteps(1000, training=True)
    w.seq_len = 32760
    w.post_init()
    return w


class StubTextEncoder(torch.nn.Module):
    """Maps each prompt string to its embedding rows ([L, 64]); the reference pads to text_len itself."""

    def __init__(self, table: dict):
        super().__init__()
        self.table = table

    def forward(self, text_prompts):
        return {"prompt_embeds": torch.stack([self.table[p] for p in text_prompts])}


class StubVAE(torch.nn.Module):
    def decode_to_pixel(self, latent, use_cache=False):
        return torch.zeros(1)

    def decode_to_pixel_chunk(self, latent, use_cache=False, chunk_size=60):
        return torch.zeros(1)


def contract_noise(seed: int, t: int, h: int, w: int, batch: int = 1):
    g = torch.Generator("cpu").manual_seed(seed)
    noise = torch.randn((batch, 16, t, h, w), generator=g, dtype=torch.float32)
    return noise, g


def rel(a, b) -> float:
    return ((a - b).norm() / b.norm()).item()


def prompt_rows() -> dict:
    """p0 (tests/data/golden, 20 rows), p1 (seed 4005, 20 rows), p2 (seed 4006, 12 rows), p3 (seed 4007, 31 rows),
    as stored in the longlive_switch_* cases ([.., 32, 64]: rows beyond the prompt are 0)."""
    a = load_file(str(EXTRA / "longlive_switch_sink3_gs" / "inputs.safetensors"))["prompt_embeds"]
    b = load_file(str(EXTRA / "longlive_switch_sink1_nogs_three" / "inputs.safetensors"))["prompt_embeds"]
    full = load_file(str(GOLDEN / "inputs.safetensors"))["prompt_embeds"][0]
    assert torch.equal(a[0], full[:32]) and not full[32:].any()
    assert torch.equal(b[0], a[0]) and torch.equal(b[1], a[1])
    return {"p0": a[0], "p1": a[1], "p2": a[2], "p3": b[3]}
