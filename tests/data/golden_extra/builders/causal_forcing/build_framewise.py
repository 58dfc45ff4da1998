"""Frame-wise Causal Forcing++ goldens (thu-ml/Causal-Forcing 1fc7bbc, configs/causal_forcing_dmd_framewise_{2step,
1step}.yaml): the published CausalInferencePipeline run on CPU in float32 with the tiny random Wan backbone of
tests/data/golden (strict load), one latent frame per block, the first block on denoising_step_list_first_chunk,
and the pipeline's own local_attn_size / sink_size so the cache evicts.

Reference tree: `git archive 1fc7bbc` of github.com/thu-ml/Causal-Forcing into $GOLDEN_WORK/cf_ref (default
/tmp/gcf); the patched copy ($GOLDEN_WORK/cf_cpu) gets PATCHES below (each recorded in case.json with its reason
and the unified diff). Runs with the project's venv (torch 2.13 CPU, diffusers, transformers, PyYAML) plus the
easydict shim of ../wan21/ref_env.py.

Usage: GOLDEN_WORK=/tmp/gcf python build_framewise.py OUT_DIR [case ...]      (OUT_DIR: tests/data/golden_extra)
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "wan21"))
import ref_env  # noqa: E402
from patch_common import COMMON, prepare  # noqa: E402

REPO, COMMIT = "github.com/thu-ml/Causal-Forcing", "1fc7bbc19a503c1bce80ecef08158b20e702f386"
ROOT = Path(os.environ.get("GOLDEN_WORK", "/tmp/gcf"))
CONFIGS = {"2step": "configs/causal_forcing_dmd_framewise_2step.yaml", "1step": "configs/causal_forcing_dmd_framewise_1step.yaml"}

# name: (config, T, H, W, local_attn_size, sink_size, noise seed, about)
CASES = {
    "cfpp_2step_win6": ("2step", 12, 8, 12, 6, 1, 61, "2-step, 8x12 latents, window 6 incl. sink 1: evictions at blocks 6-11"),
    "cfpp_1step_win6": ("1step", 12, 8, 12, 6, 1, 62, "1-step, 8x12 latents, window 6 incl. sink 1: evictions at blocks 6-11"),
    "cfpp_2step_10x6_win5_sink2": ("2step", 10, 10, 6, 5, 2, 63,
                                   "2-step, 10x6 latents (15 tokens per frame), window 5 incl. sink 2: evictions at blocks 5-9"),
    "cfpp_1step_6x10_win4_sink1": ("1step", 9, 6, 10, 4, 1, 64,
                                   "1-step, 6x10 latents (15 tokens per frame), window 4 incl. sink 1: evictions at blocks 4-8"),
    "cfpp_2step_window21": ("2step", 24, 4, 6, 21, 1, 65,
                            "2-step, 4x6 latents (6 tokens per frame), this pack's default window 21 incl. sink 1: "
                            "blocks 0-20 are the published full-cache run, evictions at blocks 21-23"),
}


def patches(frame_tokens: int) -> list:
    common = [p if p[0] != "utils/memory.py" else ("demo_utils/memory.py", *p[1:]) for p in COMMON]
    pipe = "pipeline/causal_inference.py"
    return common + ref_env._sizes_patches(pipe) + [
        ref_env._rng_patch(pipe),
        ("wan/modules/causal_model.py",
         "        self.max_attention_size = 32760 if local_attn_size == -1 else local_attn_size * 1560\n",
         f"        self.max_attention_size = 32760 if local_attn_size == -1 else local_attn_size * {frame_tokens}"
         "  # CPU golden build: the golden's tokens per frame\n",
         f"max_attention_size = local_attn_size * 1560 (Wan 480p tokens per frame) -> * {frame_tokens} (the golden's)"),
    ]


def setup(frame_tokens: int):
    records, diff = prepare(ROOT / "cf_ref", ROOT / "cf_cpu", patches(frame_tokens))
    shim = ROOT / "shims"
    shim.mkdir(exist_ok=True)
    (shim / "easydict.py").write_text(
        "class EasyDict(dict):\n"
        "    def __init__(self, d=None, **kw):\n"
        "        super().__init__(d or {}, **kw)\n"
        "    def __getattr__(self, k):\n"
        "        try:\n            return self[k]\n"
        "        except KeyError:\n            raise AttributeError(k)\n"
        "    def __setattr__(self, k, v):\n        self[k] = v\n")
    sys.path[:0] = [str(ROOT / "cf_cpu"), str(shim)]
    return records, diff


def config(name: str) -> dict:
    base = yaml.safe_load((ROOT / "cf_ref" / "configs/default_config.yaml").read_text())
    return {**base, **yaml.safe_load((ROOT / "cf_ref" / CONFIGS[name]).read_text())}


def run(case: str):
    import wan.modules.causal_model as cm
    from pipeline.causal_inference import CausalInferencePipeline
    cfg_name, t, h, w, window, sink, seed, _ = CASES[case]
    ftok = (h // 2) * (w // 2)
    cfg = config(cfg_name)
    cfg.update(frame_seq_length=ftok, model_kwargs={**cfg["model_kwargs"], "local_attn_size": window, "sink_size": sink})
    args = ref_env.make_args(cfg)
    model = ref_env.tiny_causal_model(cm.CausalWanModel, local_attn_size=window, sink_size=sink)
    gen = ref_env.make_wrapper(model, cfg["timestep_shift"])
    prompt = ref_env.prompt_rows()["p0"]
    text = ref_env.StubTextEncoder({"p0": torch.cat([prompt, prompt.new_zeros(512 - prompt.shape[0], prompt.shape[1])])})
    pipe = CausalInferencePipeline(args, "cpu", generator=gen, text_encoder=text, vae=ref_env.StubVAE())
    noise, g = ref_env.contract_noise(seed, t, h, w)
    pipe.golden_generator = g
    calls, draws, written = [], [], {}
    state = {"start": None, "step": 0}
    first, rest = len(cfg["denoising_step_list_first_chunk"]), len(cfg["denoising_step_list"])
    orig_forward = gen.forward

    def label_slots(cache_k, n):
        out = []
        for s in range(n):
            chunk = cache_k[:, s * ftok:(s + 1) * ftok]
            hit = [lab for lab, k in written.items() if torch.equal(k, chunk)]
            out.append(hit[-1] if hit else ("zero" if not chunk.any() else "other"))
        return out

    def forward(noisy_image_or_video, conditional_dict, timestep, kv_cache=None, crossattn_cache=None,
                current_start=None, **kw):
        start = current_start // ftok
        if start != state["start"]:
            state["start"], state["step"] = start, 0
        steps = first if start == 0 else rest
        kind = "denoise" if state["step"] < steps else "context"
        state["step"] += 1
        c0 = kv_cache[0]
        before = c0["local_end_index"].item() // ftok
        out = orig_forward(noisy_image_or_video, conditional_dict, timestep, kv_cache, crossattn_cache,
                           current_start, **kw)
        after = c0["local_end_index"].item() // ftok
        label = f"f{start}@{'context' if kind == 'context' else 't=%g' % float(timestep.flatten()[0])}"
        written[label] = c0["k"][:, (after - 1) * ftok:after * ftok].clone()
        attended = label_slots(c0["k"], after)
        calls.append({"call": len(calls), "kind": kind, "block": start, "start_frame": start,
                      "timestep": float(timestep.flatten()[0]), "local_end_frames_before": before,
                      "local_end_frames_after": after,
                      "evicted_on_this_call": bool(kind == "denoise" and state["step"] == 1 and before + 1 > window),
                      "attended_frames_layer0": [int(x[1:].split("@")[0]) if x.startswith("f") else x for x in attended],
                      "attended_labels_layer0": attended,
                      "x0": {"sum": out[1].double().sum().item(), "abs_sum": out[1].double().abs().sum().item()}})
        return out
    gen.forward = forward
    orig_randn = torch.randn

    def randn(*a, **kw):
        x = orig_randn(*a, **kw)
        if kw.get("generator") is g:
            draws.append({"shape": list(x.shape), "sum": x.double().sum().item()})
        return x
    torch.randn = randn
    try:
        _, lat = pipe.inference(noise=noise.permute(0, 2, 1, 3, 4), text_prompts=["p0"], return_latents=True)
    finally:
        torch.randn = orig_randn
    steps_fed = {"first_block": [float(x) for x in pipe.denoising_step_list_first_chunk],
                 "later_blocks": [float(x) for x in pipe.denoising_step_list]}
    return lat.permute(0, 2, 1, 3, 4).contiguous(), noise, calls, draws, cfg, steps_fed


def write_case(out_dir: Path, case: str, records, diff):
    cfg_name, t, h, w, window, sink, seed, about = CASES[case]
    lat, noise, calls, draws, cfg, steps_fed = run(case)
    lat2 = run(case)[0]
    assert torch.equal(lat, lat2), "two builds differ"
    d = out_dir / case
    d.mkdir(parents=True, exist_ok=True)
    prompt = ref_env.prompt_rows()["p0"]
    save_file({"noise_bcthw": noise.contiguous(),
               "prompt_embeds": torch.cat([prompt, prompt.new_zeros(512 - prompt.shape[0], prompt.shape[1])])[None]
               .contiguous()}, str(d / "inputs.safetensors"))
    save_file({"latents_bcthw": lat}, str(d / "outputs.safetensors"))
    blocks = [{"block": c["block"], "attended_frames": c["attended_frames_layer0"], "evicted": c["evicted_on_this_call"]}
              for c in calls if c["kind"] == "denoise" and c["timestep"] == 1000.0]
    evictions = [b["block"] for b in blocks if b["evicted"]]
    keep = ("denoising_step_list", "denoising_step_list_first_chunk", "warp_denoising_step", "timestep_shift",
            "num_frame_per_block", "independent_first_frame", "context_noise", "model_kwargs", "frame_seq_length")
    case_json = {
        "case": case, "about": about, "reference": {"repo": REPO, "commit": COMMIT, "config": CONFIGS[cfg_name]},
        "pipeline_config": {k: cfg[k] for k in keep}, "arch": ref_env.ARCH, "latent_shape_bcthw": [1, 16, t, h, w],
        "frame_seq_length": (h // 2) * (w // 2), "num_blocks": t, "steps_fed": steps_fed,
        "seeds": {"weights": 1001, "noise": seed}, "prompt": "p0 (tests/data/golden prompt, 20 nonzero rows, padded to 512)",
        "rng_contract": "g=torch.Generator('cpu').manual_seed(seeds.noise); noise_bcthw=torch.randn((1,16,T,H,W),"
                        "generator=g); pipeline input noise_bcthw.permute(0,2,1,3,4); each re-noise draws "
                        "torch.randn([1,16,H,W], generator=g) in call order: 3 in block 0, then len(later steps)-1 per block",
        "num_renoise_draws": len(draws), "rng_draws": draws, "evictions_at_blocks": evictions, "blocks": blocks,
        "torch": torch.__version__, "threads": torch.get_num_threads(), "tolerance_hint": 1e-5,
        "patches": records, "patches_unified_diff": diff.splitlines(),
        "how_produced": [
            f"git archive {COMMIT[:7]} of {REPO} -> cf_ref; patched copy cf_cpu (patches above)",
            "config = configs/default_config.yaml merged with the case's yaml (as inference.py merges them), "
            "model_kwargs.local_attn_size / sink_size set, frame_seq_length = H*W/4",
            "model = the reference's CausalWanModel(**arch, local_attn_size, sink_size) + strict load of "
            "tests/data/golden/wan_tiny_t2v_bare.safetensors; WanDiffusionWrapper without from_pretrained; stub text "
            "encoder ('p0' -> its 512 rows) and VAE",
            "latents = CausalInferencePipeline(args).inference(noise_bcthw.permute(0,2,1,3,4), ['p0'], "
            "return_latents=True)[1].permute(0,2,1,3,4), float32, no grad",
            "instrumentation only: generator.forward (trace) and torch.randn (draw log); attended frames = labels of "
            "the layer-0 K cache slots after each call, by exact comparison with the K last written for each frame",
            "built twice: bitwise identical"],
    }
    (d / "case.json").write_text(json.dumps(case_json, indent=1))
    (d / "trace.json").write_text(json.dumps({"generator_calls": calls}))
    print(case, "written; evictions at blocks", evictions, flush=True)


if __name__ == "__main__":
    torch.set_num_threads(int(os.environ.get("GOLDEN_THREADS", "1")))
    torch.set_grad_enabled(False)
    out = Path(sys.argv[1])
    names = sys.argv[2:] or list(CASES)
    by_tokens: dict[int, list[str]] = {}
    for n in names:
        by_tokens.setdefault((CASES[n][2] // 2) * (CASES[n][3] // 2), []).append(n)
    if len(by_tokens) > 1:      # one patched tree per process (its max_attention_size holds the tokens per frame)
        import subprocess
        for group in by_tokens.values():
            subprocess.run([sys.executable, __file__, str(out), *group], check=True)
        sys.exit(0)
    recs, udiff = setup(next(iter(by_tokens)))
    for n in names:
        write_case(out, n, recs, udiff)
