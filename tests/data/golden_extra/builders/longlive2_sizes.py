"""Build the LongLive 2.0 golden cases at more latent sizes and lengths (``longlive2_<case>`` folders).

Runs the published code (github.com/NVlabs/LongLive 7860ad9) on CPU with the tiny backbone and LoRA of
``longlive2_model/``. Not collected by pytest; run it by hand:

    git --git-dir=<mirror of NVlabs/LongLive> archive 7860ad9 -- pipeline model utils wan_5b configs inference.py \
        | tar -x -C ref_cpu
    (cd ref_cpu && patch -p1 < tests/data/golden_extra/builders/longlive2_cpu.patch)
    pip install --target pylib --no-deps transformers==4.57.1 diffusers==0.31.0 huggingface_hub==0.36.0 \
        tokenizers==0.22.1 peft==0.17.1 omegaconf==2.3.0 antlr4-python3-runtime==4.9.3 accelerate psutil regex pyyaml
    LONGLIVE_TREE=ref_cpu LONGLIVE_PYLIB=pylib .venv/bin/python tests/data/golden_extra/builders/longlive2_sizes.py

The patch is the three CPU patches of longlive2_README.md (SDPA instead of flash-attn, no bf16 cast in the
SDPA fallback, cache heads/head_dim from the model). Everything else is the reference's own code: its
Triton kernels are switched off by its own environment switches, torchvision (imported, unused) is an empty
module, ``CausalWanModel.from_pretrained`` builds the tiny architecture. The trace wrappers only count keys.
"""
import importlib.machinery
import json
import os
import sys
import types
from pathlib import Path

os.environ.setdefault("LLV2_TRITON_ROPE", "0")
os.environ.setdefault("LLV2_TRITON_ADALN", "0")
HERE = Path(__file__).resolve().parent
GOLDEN = HERE.parent
MODEL = GOLDEN / "longlive2_model"
TREE = Path(os.environ["LONGLIVE_TREE"]).resolve()
sys.path[:0] = [str(Path(os.environ["LONGLIVE_PYLIB"]).resolve()), str(TREE)]
os.chdir(TREE)
for name in ["torchvision", "torchvision.transforms", "torchvision.transforms.functional", "torchvision.io"]:
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    sys.modules[name] = module
sys.modules["torchvision"].transforms = sys.modules["torchvision.transforms"]
sys.modules["torchvision.transforms"].functional = sys.modules["torchvision.transforms.functional"]
sys.modules["torchvision"].io = sys.modules["torchvision.io"]
sys.modules["torchvision.io"].write_video = sys.modules["torchvision.io"].read_video = None

import peft  # noqa: E402
import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

import utils.wan_5b_wrapper as wrapper  # noqa: E402
import wan_5b.modules.causal_model as causal_model  # noqa: E402
from pipeline import CausalDiffusionInferencePipeline  # noqa: E402
from utils.config import normalize_config  # noqa: E402
from utils.lora_utils import configure_lora_for_model  # noqa: E402

torch.set_num_threads(1)
torch.set_grad_enabled(False)
COMMIT = "7860ad9685686bc3edfd407eb4d12579ca47d689"
ARCH = dict(model_type="ti2v", patch_size=(1, 2, 2), in_dim=48, out_dim=48, dim=128, ffn_dim=256, num_heads=2,
            num_layers=2, freq_dim=256, text_dim=64, text_len=512, qk_norm=True, cross_attn_norm=True, eps=1e-6)
PROMPT_SEEDS = {"p0": (4100, 20), "p1": (4101, 14), "p2": (4102, 25),
                "The scene transitions. p1": (4111, 19), "The scene transitions. p2": (4112, 30)}
CUT1, CUT2 = "The scene transitions. p1", "The scene transitions. p2"
# name: (config, latent H, W, latent frames, window, sink, multi_shot_sink, noise seed, block prompts, i2v)
CASES = {
    "longlive2_t2v_8x12": ("inference.yaml", 8, 12, 48, 32, 8, True, 54, ["p0"] * 6, False),
    "longlive2_t2v_10x6_win24_sink4": ("inference.yaml", 10, 6, 56, 24, 4, False, 55, ["p0"] * 7, False),
    "longlive2_i2v_8x12": ("inference_i2v.yaml", 8, 12, 40, 32, 8, True, 56, ["p0"] * 5, True),
    "longlive2_multishot_10x6": ("inference.yaml", 10, 6, 56, 32, 8, True, 57,
                                 ["p0", "p0", CUT1, "p1", CUT2, "p2", "p2"], False),
}


def prompt_row(text: str) -> torch.Tensor:
    seed, rows = PROMPT_SEEDS[text]
    row = torch.randn([512, 64], generator=torch.Generator("cpu").manual_seed(seed))
    row[rows:] = 0
    return row


class StubTextEncoder(torch.nn.Module):
    def forward(self, text_prompts):
        return {"prompt_embeds": torch.stack([prompt_row(t) for t in text_prompts])}


def pipeline(config_name, h, w, t, window, sink, shot_sink):
    causal_model.CausalWanModel.from_pretrained = classmethod(lambda cls, path, **kw: cls(**ARCH, **kw))
    wrapper.CausalWanModel = causal_model.CausalWanModel
    cfg = OmegaConf.load(f"configs/{config_name}")
    cfg.data.image_or_video_shape = [1, t, 48, h, w]
    cfg.adapter.rank, cfg.adapter.alpha = 16, 16
    cfg.model_kwargs.local_attn_size = window
    cfg.inference.sink_size = sink
    cfg.inference.multi_shot_sink = shot_sink
    config = normalize_config(cfg)
    gen = wrapper.WanDiffusionWrapper(**config.model_kwargs, is_causal=True)
    pipe = CausalDiffusionInferencePipeline(config, device="cpu", generator=gen, text_encoder=StubTextEncoder(),
                                            vae=torch.nn.Module())
    pipe.generator.load_state_dict(load_file(str(MODEL / "generator.safetensors")), strict=True)
    pipe.generator.model = configure_lora_for_model(pipe.generator.model, "generator", config.adapter)
    peft.set_peft_model_state_dict(pipe.generator.model, torch.load(MODEL / "lora.pt")["generator_lora"])
    return pipe, OmegaConf.to_container(cfg)


def traced_run(pipe, noise, prompts, initial):
    """The reference's latents, the keys each block's first call attends (layer 0) and its evictions."""
    keys, evictions = [], []
    attention, apply = causal_model.attention, causal_model.CausalWanModel._apply_cache_updates

    def counting_attention(q, k, v, *args, **kw):
        keys.append(k.shape[1])
        return attention(q, k, v, *args, **kw)

    def counting_apply(self, kv_cache, infos):
        _, (_, _, info) = infos[0]
        if info is not None and info["action"] == "roll_and_insert":
            evictions.append((len(keys), info["sink_tokens"], info["num_evicted_tokens"]))
        return apply(self, kv_cache, infos)

    causal_model.attention, causal_model.CausalWanModel._apply_cache_updates = counting_attention, counting_apply
    try:
        extra = {"initial_latent": initial.permute(0, 2, 1, 3, 4)} if initial is not None else {}
        latents = pipe.inference(noise=noise.permute(0, 2, 1, 3, 4), text_prompts=[prompts], return_latents=True,
                                 **extra)
    finally:
        causal_model.attention, causal_model.CausalWanModel._apply_cache_updates = attention, apply
    return latents.permute(0, 2, 1, 3, 4).contiguous(), keys, evictions


def build(name, spec):
    config_name, h, w, t, window, sink, shot_sink, seed, prompts, i2v = spec
    pipe, cfg = pipeline(config_name, h, w, t, window, sink, shot_sink)
    noise = torch.randn((1, 48, t, h, w), generator=torch.Generator("cpu").manual_seed(seed))
    initial = (torch.randn((1, 48, 1, h, w), generator=torch.Generator("cpu").manual_seed(seed + 1000))
               if i2v else None)
    latents, keys, evictions = traced_run(pipe, noise, prompts, initial)
    tokens, calls = (h // 2) * (w // 2), 2 * (4 + 1)          # 2 layers × (4 steps + the context pass)
    rows = {text: i for i, text in enumerate(dict.fromkeys(prompts))}
    out = GOLDEN / name
    out.mkdir(exist_ok=True)
    inputs = {"prompt_embeds": torch.stack([prompt_row(text) for text in rows])}
    if initial is not None:
        inputs["initial_latent_bcthw"] = initial
    save_file(inputs, str(out / "inputs.safetensors"))
    save_file({"latents_bcthw": latents}, str(out / "outputs.safetensors"))
    case = {
        "case": name, "reference": {"repo": "github.com/NVlabs/LongLive", "commit": COMMIT,
                                    "source_config": f"configs/{config_name}"},
        "config_overrides": {"data.image_or_video_shape": [1, t, 48, h, w], "adapter.rank": 16, "adapter.alpha": 16,
                             "model_kwargs.local_attn_size": window, "inference.sink_size": sink,
                             "inference.multi_shot_sink": shot_sink},
        "effective": {"num_frame_per_block": 8, "local_attn_size": window, "sink_size": sink,
                      "multi_shot_sink": shot_sink, "multi_shot_rope_offset": cfg["inference"]["multi_shot_rope_offset"],
                      "sampling_steps": 4, "timestep_shift": 5.0, "frame_seq_length": tokens},
        "latent_shape_bcthw": [1, 48, t, h, w], "tokens_per_frame": tokens,
        "block_prompts": prompts, "prompt_rows": rows,
        "scene_cuts_at_blocks": [b for b, p in enumerate(prompts) if b and p.startswith("The scene transitions. ")],
        "seeds": {"noise": seed, "initial_latent": seed + 1000 if i2v else None,
                  "prompts": {p: PROMPT_SEEDS[p][0] for p in rows}},
        "rng_contract": "noise_bcthw = torch.randn((1,48,T,H,W), generator=torch.Generator('cpu').manual_seed("
                        "seeds.noise)) (not stored: the project's 'reference' noise contract draws it); i2v: "
                        "initial_latent_bcthw = torch.randn((1,48,1,H,W), generator=...manual_seed(seed + 1000))",
        "attended_frames_first_call": [keys[b * calls] // tokens for b in range(len(prompts))],
        "patches": "builders/longlive2_cpu.patch", "builder": "builders/longlive2_sizes.py",
        "precision": "float32, CPU, torch.set_num_threads(1)", "torch": torch.__version__, "tolerance_hint": 1e-4,
    }
    (out / "case.json").write_text(json.dumps(case, indent=1) + "\n")
    trace = {"evictions": [{"block": (call - 2) // calls, "effective_sink_frames": sink_tokens // tokens,
                            "evicted_frames": evicted // tokens} for call, sink_tokens, evicted in evictions]}
    (out / "trace.json").write_text(json.dumps(trace, indent=1) + "\n")
    print(name, tuple(latents.shape), case["attended_frames_first_call"], trace["evictions"])


if __name__ == "__main__":
    for case_name in sys.argv[1:] or CASES:
        build(case_name, CASES[case_name])
