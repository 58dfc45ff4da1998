"""Rolling Forcing goldens: TencentARC/RollingForcing a1477d0 (configs/rolling_forcing_dmd.yaml, 5 steps) and
thu-ml/Causal-Forcing 1fc7bbc long_video/ (its configs/rolling_forcing_dmd.yaml, 4 steps: the same pipeline and
model code, byte for byte), run on CPU with the tiny golden backbone (tests/data/golden/wan_tiny_t2v_bare.safetensors,
strict load into the reference's own CausalWanModel).

Reference trees: `git archive <commit>` of each repository under $GOLDEN_WORK (default /tmp/grf): rf_ref/ and
cf_ref/long_video/. A patched copy (rf_cpu/, cf_cpu/) is made with the CPU patches below (exact replacements, each
matching once; the unified diff and reasons go into case.json).

Usage: python build_rolling.py OUT_DIR [case ...]     (/work/main/.venv/bin/python; GOLDEN_THREADS=1 by default)
"""
from __future__ import annotations

import copy
import json
import os
import platform
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "wan21"))
import ref_env  # noqa: E402
from patch_common import COMMON, prepare  # noqa: E402

WORK = Path(os.environ.get("GOLDEN_WORK", "/tmp/grf"))
TREES = {
    "rf": ("github.com/TencentARC/RollingForcing", "a1477d09e85dc759a6a6728f55f77f59342ce388", WORK / "rf_ref",
           "configs/rolling_forcing_dmd.yaml", [1000, 800, 600, 400, 200]),
    "cf": ("github.com/thu-ml/Causal-Forcing", "1fc7bbc19a503c1bce80ecef08158b20e702f386", WORK / "cf_ref" / "long_video",
           "long_video/configs/rolling_forcing_dmd.yaml", [1000, 750, 500, 250]),
}
PIPE = "pipeline/rolling_forcing_inference.py"

# name: (tree, about, T latent frames, H, W, noise seed)
CASES = {
    "rolling_forcing_8x12": ("rf", "Rolling Forcing's published config (5 steps 1000,800,600,400,200 -> a window of "
                             "5 blocks) at 8x12 latents (24 tokens per frame), 36 frames = 12 blocks: the cache (anchor "
                             "+ 21 frames) evicts from block 8 on.", 36, 8, 12, 61),
    "rolling_forcing_6x10": ("rf", "Rolling Forcing's published config at 6x10 latents (15 tokens per frame), 30 frames "
                             "= 10 blocks (evictions from block 8).", 30, 6, 10, 62),
    "rolling_cf_longvideo_8x12": ("cf", "Causal-Forcing long_video (4 steps 1000,750,500,250 -> a window of 4 blocks; "
                                  "2 clean blocks attended beside the anchor) at 8x12 latents, 33 frames = 11 blocks "
                                  "(evictions from block 8).", 33, 8, 12, 63),
    "rolling_cf_longvideo_10x6": ("cf", "Causal-Forcing long_video at 10x6 latents (15 tokens per frame), 39 frames = "
                                  "13 blocks.", 39, 10, 6, 64),
}

SIZES_REASON = "30 blocks / 1560 tokens per frame (Wan2.1-1.3B at 60x104) -> the tiny model's layers and tokens per frame"


def patches() -> list:
    common = [p for p in COMMON if p[0] != "utils/memory.py"]      # no utils/memory.py in these trees
    return common + [
        (PIPE, "        self.num_transformer_blocks = 30\n        self.frame_seq_length = 1560\n",
         "        self.num_transformer_blocks = len(self.generator.model.blocks)  # CPU golden build\n"
         "        self.frame_seq_length = int(args.frame_seq_length)  # CPU golden build: (H/2)*(W/2)\n", SIZES_REASON),
        (PIPE, "        kv_cache_size = 1560 * 24\n",
         "        kv_cache_size = self.frame_seq_length * 24  # CPU golden build: 24 frames of the golden's tokens\n",
         "the cache's 24 frames of 1560 tokens -> 24 frames of the golden's tokens per frame"),
        (PIPE, '                "k": torch.zeros([batch_size, kv_cache_size, 12, 128], dtype=dtype, device=device),\n'
               '                "v": torch.zeros([batch_size, kv_cache_size, 12, 128], dtype=dtype, device=device),\n',
         '                "k": torch.zeros([batch_size, kv_cache_size, *self._heads_hd()], dtype=dtype, device=device),\n'
         '                "v": torch.zeros([batch_size, kv_cache_size, *self._heads_hd()], dtype=dtype, device=device),\n',
         "_initialize_kv_cache 12 heads x 128 -> the model's 2 x 64"),
        (PIPE, '                "k": torch.zeros([batch_size, 512, 12, 128], dtype=dtype, device=device),\n'
               '                "v": torch.zeros([batch_size, 512, 12, 128], dtype=dtype, device=device),\n',
         '                "k": torch.zeros([batch_size, 512, *self._heads_hd()], dtype=dtype, device=device),\n'
         '                "v": torch.zeros([batch_size, 512, *self._heads_hd()], dtype=dtype, device=device),\n',
         "_initialize_crossattn_cache 12 x 128 -> 2 x 64"),
        (PIPE, "    def _initialize_kv_cache(self,",
         "    def _heads_hd(self):  # CPU golden build\n        m = self.generator.model\n"
         "        return m.num_heads, m.dim // m.num_heads\n\n    def _initialize_kv_cache(self,",
         "helper for the two cache patches above"),
        (PIPE, "            print('window_index:', window_index)\n", "",
         "quiet: the per-window prints (no effect on the computation)"),
        (PIPE, '            print(f"start_block: {start_block}, end_block: {end_block}")\n', "", "quiet (as above)"),
        (PIPE, "                            torch.randn_like(denoised_pred.flatten(0, 1)),",
         "                            torch.randn(denoised_pred.flatten(0, 1).shape, generator=self.golden_generator, "
         "dtype=denoised_pred.dtype),",
         ref_env.RNG_PATCH_REASON),
        ("wan/modules/causal_model.py", "        self.frame_length = 1560\n",
         "        self.frame_length = int(__import__('os').environ['GOLDEN_FRAME_SEQ_LENGTH'])  # CPU golden build\n",
         "frame_length 1560 (tokens per Wan2.1-1.3B 480p frame; block_length and the 21-frame max_attention_size "
         "derive from it) -> the golden's tokens per frame"),
    ]


def setup(tree: str):
    src = TREES[tree][2]
    records, diff = prepare(src, WORK / f"{tree}_cpu", patches())
    shims = WORK / "shims"           # easydict (imported by wan/configs, not installed): a dict with attributes
    shims.mkdir(exist_ok=True)
    (shims / "easydict.py").write_text(
        "class EasyDict(dict):\n    def __getattr__(self, k):\n        try:\n            return self[k]\n"
        "        except KeyError:\n            raise AttributeError(k)\n\n"
        "    def __setattr__(self, k, v):\n        self[k] = v\n")
    sys.path[:0] = [str(WORK / f"{tree}_cpu"), str(shims)]
    return records, diff


def frames_of(keys: torch.Tensor, ftok: int) -> list[torch.Tensor]:
    return [keys[:, i * ftok:(i + 1) * ftok] for i in range(keys.shape[1] // ftok)]


def run(name: str, out: Path):
    tree, about, t, h, w, seed = CASES[name]
    repo, commit, _, source_config, steps = TREES[tree]
    ftok = (h // 2) * (w // 2)
    os.environ["GOLDEN_FRAME_SEQ_LENGTH"] = str(ftok)
    records, diff = setup(tree)
    torch.set_num_threads(int(os.environ.get("GOLDEN_THREADS", "1")))
    torch.set_grad_enabled(False)
    import wan.modules.causal_model as cm
    from pipeline.rolling_forcing_inference import CausalInferencePipeline

    cfg = {"denoising_step_list": steps, "warp_denoising_step": True, "num_frame_per_block": 3,
           "independent_first_frame": False, "context_noise": 0, "model_kwargs": {"timestep_shift": 5.0},
           "frame_seq_length": ftok, "num_output_frames": t}
    model = ref_env.tiny_causal_model(cm.CausalWanModel)
    gen = ref_env.make_wrapper(model, 5.0)
    p0 = ref_env.prompt_rows()["p0"]
    prompt = torch.cat([p0, p0.new_zeros(512 - p0.shape[0], p0.shape[1])])
    pipe = CausalInferencePipeline(ref_env.make_args(copy.deepcopy(cfg)), "cpu", generator=gen,
                                   text_encoder=ref_env.StubTextEncoder({"p0": prompt}), vae=ref_env.StubVAE())
    noise, g = ref_env.contract_noise(seed, t, h, w)
    pipe.golden_generator = g
    warped = [float(x) for x in pipe.denoising_step_list]

    calls, written, draws = [], {}, []
    layer0 = model.blocks[0].self_attn
    state = {"rope": [], "keys": None}
    orig_rope, orig_attention = cm.causal_rope_apply, cm.attention

    def rope(x, grid_sizes, freqs, start_frame=0):
        y = orig_rope(x, grid_sizes, freqs, start_frame=start_frame)
        if state["in0"]:
            state["rope"].append((int(start_frame), int(grid_sizes[0][0]), y))
        return y

    def attention(q, k, v, *a, **kw):
        if state["in0"]:
            state["keys"] = k
        return orig_attention(q, k, v, *a, **kw)
    cm.causal_rope_apply, cm.attention = rope, attention
    state["in0"] = False
    orig_sa = layer0.forward

    def sa_forward(*a, **kw):
        state.update(in0=True, rope=[], keys=None)
        try:
            return orig_sa(*a, **kw)
        finally:
            state["in0"] = False
    layer0.forward = sa_forward
    orig_forward = gen.forward

    def forward(noisy_image_or_video, conditional_dict, timestep, kv_cache=None, crossattn_cache=None,
                current_start=None, updating_cache=False, **kw):
        out = orig_forward(noisy_image_or_video, conditional_dict, timestep, kv_cache=kv_cache,
                           crossattn_cache=crossattn_cache, current_start=current_start, updating_cache=updating_cache, **kw)
        start, n = current_start // ftok, noisy_image_or_video.shape[1]
        ts = [float(x) for x in timestep[0, ::3]]
        kind = "context" if updating_cache else "window"
        c0 = kv_cache[0]
        own = state["rope"][1][2]                     # roped key of this call's frames (q first, then k)
        labels = []
        for chunk in frames_of(state["keys"], ftok):
            lab = None
            for j, f in enumerate(frames_of(own, ftok)):
                if torch.equal(chunk, f):
                    lab = {"frame": start + j}
            for s, n_, y in state["rope"][2:]:          # the anchor, rotated for this call
                for j, f in enumerate(frames_of(y, ftok)):
                    if lab is None and torch.equal(chunk, f):
                        lab = {"frame": j, "anchor_position": s + j}
            if lab is None:
                for fr, k in written.items():
                    if torch.equal(chunk, k):
                        lab = {"frame": fr}
            labels.append(lab if lab is not None else {"frame": None})
        if kind == "context":   # clean K this pass stored (rotated, or raw for the anchor) for later matching
            le = c0["local_end_index"].item() // ftok
            for j in range(3):
                written[start + j] = c0["k"][:, (le - 3 + j) * ftok:(le - 2 + j) * ftok].clone()
        rec = {"call": len(calls), "kind": kind, "start_frame": start, "num_frames": n, "timesteps": ts,
               "block_leaves": kind == "window" and ts[0] == warped[-1],
               "attended": labels, "key_frames": state["keys"].shape[1] // ftok,
               "local_end_frames": c0["local_end_index"].item() // ftok,
               "global_end_frames": c0["global_end_index"].item() // ftok,
               "x0": {"sum": out[1].double().sum().item(), "abs_sum": out[1].double().abs().sum().item()}}
        calls.append(rec)
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
        _, lat = pipe.inference_rolling_forcing(noise=noise.permute(0, 2, 1, 3, 4), text_prompts=["p0"],
                                                return_latents=True)
    finally:
        torch.randn = orig_randn
    assert all(l["frame"] is not None for c in calls for l in c["attended"]), "an attended frame was not identified"
    write_case(out / name, name, about, tree, cfg, t, h, w, seed, ftok, warped, noise, prompt, lat, calls, draws,
               records, diff, source_config)


def write_case(d: Path, name, about, tree, cfg, t, h, w, seed, ftok, warped, noise, prompt, lat, calls, draws,
               records, diff, source_config):
    repo, commit, _, _, steps = TREES[tree]
    d.mkdir(parents=True, exist_ok=True)
    save_file({"noise_bcthw": noise.contiguous(), "prompt_embeds": prompt[None].contiguous()}, str(d / "inputs.safetensors"))
    save_file({"latents_bcthw": lat.permute(0, 2, 1, 3, 4).contiguous()}, str(d / "outputs.safetensors"))
    (d / "trace.json").write_text(json.dumps({"generator_calls": calls, "rng_draws": draws}, indent=0))
    case = {
        "case": name, "about": about,
        "reference": {"repo": repo, "commit": commit, "source_config": source_config,
                      "files": [PIPE, "wan/modules/causal_model.py", "wan/modules/model.py", "wan/modules/attention.py",
                                "utils/wan_wrapper.py", "utils/scheduler.py"]},
        "pipeline_config": cfg, "arch": ref_env.ARCH, "latent_shape_bcthw": [1, 16, t, h, w], "batch_size": 1,
        "frame_seq_length": ftok, "num_blocks": t // 3, "denoising_step_list_after_warp": warped,
        "rolling_window_blocks": len(steps), "attention_frames": 21, "anchor_frames": 3, "cache_frames": 24,
        "seeds": {"weights": ref_env.SEEDS_WEIGHTS, "prompt": 4004, "noise": seed},
        "rng_contract": f"g=torch.Generator('cpu').manual_seed({seed}); noise_bcthw=torch.randn((1,16,{t},{h},{w}),"
                        "generator=g,dtype=float32); pipeline input = noise_bcthw.permute(0,2,1,3,4); after each "
                        "window call, for each block of the window (oldest first) not at its last step, one draw "
                        "torch.randn([window_frames,16,H,W],generator=g) of which the block keeps its own 3 rows.",
        "rng_reference_difference": "The published code re-noises with torch.randn_like(denoised_pred.flatten(0,1)) "
                                    "on the global generator; replaced by torch.randn(shape, generator=g) (patch "
                                    "'rng'), same order and count. Its inference.py draws the initial noise in "
                                    "bfloat16 on CUDA; here the contract's float32 noise.",
        "num_renoise_draws": len(draws) - 1,
        "inputs": {"weights": "tests/data/golden/wan_tiny_t2v_bare.safetensors (strict load into CausalWanModel)",
                   "inputs.safetensors:noise_bcthw": "[1,16,T,H,W] float32 (regenerable by rng_contract)",
                   "inputs.safetensors:prompt_embeds": "[1,512,64] float32: p0 (tests/data/golden inputs, 20 rows) "
                                                       "padded with zero rows"},
        "outputs": {"outputs.safetensors:latents_bcthw": "[1,16,T,H,W] float32 = inference_rolling_forcing(..., "
                                                         "return_latents=True)[1].permute(0,2,1,3,4)",
                    "trace.json:generator_calls": "every model call: kind (window | context), start frame, frames, "
                                                  "the timestep of each block (oldest first), whether the oldest block "
                                                  "leaves after it, the frames layer 0 attended (identified by exact "
                                                  "comparison of each frame's keys: the call's own rotated keys, the "
                                                  "anchor rotated for this call (its RoPE position), or the clean "
                                                  "keys a context pass stored), cache end indices, x0 sums",
                    "trace.json:rng_draws": "every draw from g (the initial noise first)"},
        "how_produced": [f"git archive {commit[:7]} of {repo} -> reference tree; copy -> patched tree; the CPU patches "
                         "(patches, patches_unified_diff)",
                         "python tests/data/golden_extra/builders/rolling/build_rolling.py OUT_DIR " + name,
                         "float32 on CPU, torch.set_num_threads(1), no grad"],
        "patches": [{"file": r["file"], "line": r["line"], "why": r["reason"]} for r in records],
        "patches_unified_diff": diff.splitlines(),
        "precision": "float32 on CPU; attention via torch SDPA in float32", "torch": torch.__version__,
        "machine": platform.machine(), "threads": torch.get_num_threads(),
        "tolerance_hint": "rel_err = norm(a-b)/norm(b) <= 1e-5 on latents_bcthw",
        "builder": "tests/data/golden_extra/builders/rolling/build_rolling.py",
    }
    (d / "case.json").write_text(json.dumps(case, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    out, names = Path(sys.argv[1]), sys.argv[2:] or list(CASES)
    if len(names) > 1:      # one reference tree per process (both trees are named 'wan', 'pipeline', ...)
        import subprocess
        for n in names:
            subprocess.run([sys.executable, __file__, str(out), n], check=True)
    else:
        run(names[0], out)
