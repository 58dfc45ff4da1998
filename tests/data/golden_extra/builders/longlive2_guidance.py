"""Build the LongLive 2.0 guidance and shot_clean_recache golden cases (``guidance_ll2_*``, ``cleanrecache_ll2_*``).

Runs the published code (github.com/NVlabs/LongLive 7860ad9) on CPU with the tiny backbone and LoRA of
``longlive2_model/``, through ``longlive2_sizes.py`` (same environment, patches, stub text encoder, prompt rows
and RNG contract). Not collected by pytest; run it by hand, after the steps in ``longlive2_sizes.py``'s docstring:

    LONGLIVE_TREE=ref_cpu LONGLIVE_PYLIB=pylib .venv/bin/python tests/data/golden_extra/builders/longlive2_guidance.py

What it sets, all through the reference's own config keys (``inference.*``, read by
``CausalDiffusionInferencePipeline.__init__``): ``guidance_scale`` (3.0: the value LongLive 2.0's training configs
give, ``configs/nvfp4/train_ar_nvfp4.yaml``; the inference configs ship 1.0), the negative prompt left at what
``utils.config.normalize_config`` puts in every config (``DEFAULT_NEGATIVE_PROMPT``, Wan's Chinese negative prompt,
the one the NVFP4 configs spell out), ``shot_clean_recache``. The stub text encoder maps that negative prompt to
its own random row like every other prompt string.
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import longlive2_sizes as base  # noqa: E402  (sets up the reference tree, the environment and the stubs)

import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

import wan_5b.modules.causal_model as causal_model  # noqa: E402
from utils.config import DEFAULT_NEGATIVE_PROMPT  # noqa: E402

NEG = DEFAULT_NEGATIVE_PROMPT
base.PROMPT_SEEDS[NEG] = (4190, 33)
CUT1, CUT2 = base.CUT1, base.CUT2
# name: (latent H, W, latent frames, guidance, shot_clean_recache, noise seed, block prompts)
CASES = {
    "guidance_ll2_t2v_6x8": (6, 8, 48, 3.0, False, 60, ["p0"] * 6),
    "guidance_ll2_multishot_10x6": (10, 6, 56, 3.0, False, 61, ["p0", "p0", CUT1, "p1", CUT2, "p2", "p2"]),
    "cleanrecache_ll2_multishot_8x12": (8, 12, 56, 1.0, True, 62, ["p0", CUT1, "p1", "p1", "p1", CUT2, "p2"]),
    "guidance_ll2_cleanrecache_4x8": (4, 8, 48, 3.0, True, 63, ["p0", "p0", "p0", CUT1, "p1", CUT2]),
}
LAYERS, STEPS = 2, 4


def pipeline(h, w, t, guidance, clean):
    pipe, cfg = base.pipeline("inference.yaml", h, w, t, 32, 8, True)
    # the same keys a config would set, applied after construction exactly as __init__ reads them
    cfg["inference"].update(guidance_scale=guidance, shot_clean_recache=clean)
    pipe.guidance_scale, pipe.shot_clean_recache = guidance, clean
    assert pipe.negative_prompt == NEG, pipe.negative_prompt
    return pipe, cfg


def traced_run(pipe, noise, prompts):
    """Latents, the keys of every attention call of layer 0 (both caches, in call order), the evictions and the
    clean re-caches, each with the cache it touched (pos / neg)."""
    keys, evictions, cleans = [], [], []
    attention, apply, zero = causal_model.attention, causal_model.CausalWanModel._apply_cache_updates, pipe._zero_kv_data

    def counting_attention(q, k, v, *args, **kw):
        keys.append(k.shape[1])
        return attention(q, k, v, *args, **kw)

    def counting_apply(self, kv_cache, infos):
        _, (_, _, info) = infos[0]
        if info is not None and info["action"] == "roll_and_insert":
            which = "pos" if kv_cache is pipe.kv_cache_pos else "neg"
            evictions.append((len(keys), which, info["sink_tokens"], info["num_evicted_tokens"]))
        return apply(self, kv_cache, infos)

    def recording_zero(kv_cache, start_tokens):
        cleans.append((len(keys), "pos" if kv_cache is pipe.kv_cache_pos else "neg", start_tokens))
        return zero(kv_cache, start_tokens)

    causal_model.attention, causal_model.CausalWanModel._apply_cache_updates = counting_attention, counting_apply
    pipe._zero_kv_data = recording_zero
    try:
        latents = pipe.inference(noise=noise.permute(0, 2, 1, 3, 4), text_prompts=[prompts], return_latents=True)
    finally:
        causal_model.attention, causal_model.CausalWanModel._apply_cache_updates = attention, apply
        del pipe._zero_kv_data
    return latents.permute(0, 2, 1, 3, 4).contiguous(), keys, evictions, cleans


def build(name, spec):
    h, w, t, guidance, clean, seed, prompts = spec
    pipe, cfg = pipeline(h, w, t, guidance, clean)
    noise = torch.randn((1, 48, t, h, w), generator=torch.Generator("cpu").manual_seed(seed))
    latents, keys, evictions, cleans = traced_run(pipe, noise, prompts)
    branches = 2 if guidance != 1.0 else 1
    tokens, calls = (h // 2) * (w // 2), LAYERS * (STEPS + 1) * branches
    context_call = LAYERS * STEPS * branches          # the block's first context-pass call (positive cache, layer 0)
    assert len(keys) == calls * len(prompts)
    rows = {text: i for i, text in enumerate(dict.fromkeys(prompts))}
    out = base.GOLDEN / name
    out.mkdir(exist_ok=True)
    inputs = {"prompt_embeds": torch.stack([base.prompt_row(text) for text in rows])}
    if guidance != 1.0:
        inputs["negative_prompt_embeds"] = base.prompt_row(NEG).unsqueeze(0)
    save_file(inputs, str(out / "inputs.safetensors"))
    save_file({"latents_bcthw": latents}, str(out / "outputs.safetensors"))
    block = lambda call: call // calls                # noqa: E731
    case = {
        "case": name, "reference": {"repo": "github.com/NVlabs/LongLive", "commit": base.COMMIT,
                                    "source_config": "configs/inference.yaml"},
        "config_overrides": {"data.image_or_video_shape": [1, t, 48, h, w], "adapter.rank": 16, "adapter.alpha": 16,
                             "model_kwargs.local_attn_size": 32, "inference.sink_size": 8,
                             "inference.multi_shot_sink": True, "inference.guidance_scale": guidance,
                             "inference.shot_clean_recache": clean},
        "effective": {"num_frame_per_block": 8, "local_attn_size": 32, "sink_size": 8, "multi_shot_sink": True,
                      "multi_shot_rope_offset": cfg["inference"]["multi_shot_rope_offset"], "sampling_steps": STEPS,
                      "timestep_shift": 5.0, "frame_seq_length": tokens, "guidance_scale": guidance,
                      "shot_clean_recache": clean,
                      "negative_prompt": NEG if guidance != 1.0 else None},
        "latent_shape_bcthw": [1, 48, t, h, w], "tokens_per_frame": tokens,
        "block_prompts": prompts, "prompt_rows": rows,
        "scene_cuts_at_blocks": [b for b, p in enumerate(prompts) if b and p.startswith("The scene transitions. ")],
        "seeds": {"noise": seed, "prompts": {p: base.PROMPT_SEEDS[p][0] for p in rows},
                  "negative_prompt": base.PROMPT_SEEDS[NEG][0] if guidance != 1.0 else None},
        "rng_contract": "noise_bcthw = torch.randn((1,48,T,H,W), generator=torch.Generator('cpu').manual_seed("
                        "seeds.noise)) (not stored: the project's 'reference' noise contract draws it); prompt rows "
                        "(and the negative prompt's, [1, 512, 64]) as in longlive2_README.md",
        "attended_frames_first_call": [keys[b * calls] // tokens for b in range(len(prompts))],
        "attended_frames_context_pass": [keys[b * calls + context_call] // tokens for b in range(len(prompts))],
        "patches": "builders/longlive2_cpu.patch", "builder": "builders/longlive2_guidance.py",
        "precision": "float32, CPU, torch.set_num_threads(1)", "torch": torch.__version__, "tolerance_hint": 1e-5,
    }
    if guidance != 1.0:        # the negative cache's first call attends what the positive one does
        assert all(keys[b * calls + 2] == keys[b * calls] for b in range(len(prompts)))
    (out / "case.json").write_text(json.dumps(case, indent=1) + "\n")
    trace = {"evictions": [{"block": block(call - 1), "cache": which, "effective_sink_frames": sink // tokens,
                            "evicted_frames": evicted // tokens} for call, which, sink, evicted in evictions],
             "clean_recaches": [{"block": block(call - 1), "cache": which, "frame": start // tokens}
                                for call, which, start in cleans]}
    (out / "trace.json").write_text(json.dumps(trace, indent=1) + "\n")
    print(name, tuple(latents.shape), case["attended_frames_first_call"], case["attended_frames_context_pass"],
          trace)


if __name__ == "__main__":
    for case_name in sys.argv[1:] or CASES:
        build(case_name, CASES[case_name])
