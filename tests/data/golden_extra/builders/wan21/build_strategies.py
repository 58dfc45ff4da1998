"""∞-RoPE (yesiltepe-hidir/infinity-rope 63d7b84) and MemRoPE (YoungRaeKimm/MemRoPE b89bf5b) goldens at other
latent sizes. The CPU patches are exactly those of the 8x12 cases: the unified diff recorded in
tests/data/golden_extra/{infinity_rope_win6,memrope_selfforcing}/case.json is applied with `patch -p1` to a fresh
`git archive` of the commit; tokens per frame come from GOLDEN_FRAME_SEQ_LENGTH / args.frame_seq_length.

Usage: GOLDEN_FRAME_SEQ_LENGTH=<h*w/4> python build_strategies.py inf|mem OUT_DIR CASE
       GOLDEN_FRAME_SEQ_LENGTH=24 python build_strategies.py inf|mem --validate
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ref_env  # noqa: E402

TREE = sys.argv[1]
TEMPLATE = {"inf": "infinity_rope_flush", "mem": "memrope_selfforcing"}[TREE]
BASE = json.loads((ref_env.EXTRA / TEMPLATE / "case.json").read_text())


def setup():
    src, dst = ref_env.ROOT / f"{TREE}_ref", ref_env.ROOT / f"{TREE}_cpu"
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    diff = "\n".join(l for l in BASE["patches_unified_diff"] if not l.startswith("diff -ru")) + "\n"
    subprocess.run(["patch", "-p1", "-s"], input=diff.encode(), cwd=dst, check=True)
    sys.path[:0] = [str(dst), str(ref_env.ROOT / "shims")]


setup()
torch.set_num_threads(int(os.environ.get("GOLDEN_THREADS", "1")))
torch.set_grad_enabled(False)
import wan.modules.causal_model as cm  # noqa: E402
from pipeline.causal_inference import CausalInferencePipeline  # noqa: E402

STEPS = [1000, 750, 500, 250]
PROMPTS = ref_env.prompt_rows()
FULL = {k: torch.cat([v, v.new_zeros(512 - v.shape[0], v.shape[1])]) for k, v in PROMPTS.items()}
FTOK = int(os.environ["GOLDEN_FRAME_SEQ_LENGTH"])

# name: (about, T, H, W, text prompt (∞-RoPE scenes), noise seed)
CASES = {
    "infinity_rope_flush_10x6": (
        "∞-RoPE (self_forcing_dmd: window 6, sink 1) at 10x6 latents (5x3 = 15 tokens per frame), 10 blocks, "
        "'p0[3s] | p1[1s#] | p2': KV flush at block 4 (frame 12, p1, no cut), KV flush + RoPE cut at block 5 "
        "(frame 15, p2) right after it; evictions from block 2 on.",
        30, 10, 6, "p0[3s] | p1[1s#] | p2", 54),
    "memrope_selfforcing_6x10": (
        "MemRoPE (selfforcing/memrope_30s.yaml: window 12 = sink 3 | long 1 | short 1 | recent 4 | current 3, EMA "
        "0.01 / 0.1) at 6x10 latents (3x5 = 15 tokens per frame), one prompt, 42 frames: 10 folds (blocks 4-13).",
        42, 6, 10, "p0", 55),
}
VALIDATE = {"inf": ("infinity_rope_flush", 36, 8, 12, "p0[3s] | p1[3s#] | p2", 43),
            "mem": ("memrope_selfforcing", 48, 8, 12, "p0", 42)}


def make_pipeline(cfg):
    args = ref_env.make_args(cfg)
    kw = dict(cfg["model_kwargs"])
    kw.pop("timestep_shift")
    model = ref_env.tiny_causal_model(cm.CausalWanModel, **kw)
    gen = ref_env.make_wrapper(model, 5.0)
    text = ref_env.StubTextEncoder(FULL)
    return CausalInferencePipeline(args, "cpu", generator=gen, text_encoder=text, vae=ref_env.StubVAE()), model, gen


def label_slots(cache_k, written):
    """Layer-0 slot labels by exact comparison with the last K written for each frame (raw K)."""
    n = cache_k.shape[1] // FTOK
    out = []
    for s in range(n):
        chunk = cache_k[:, s * FTOK:(s + 1) * FTOK]
        hit = [lab for lab, k in written.items() if torch.equal(k, chunk)]
        out.append(hit[-1] if hit else ("zero" if not chunk.any() else "other"))
    return out


def run(t, h, w, text, seed):
    cfg = copy.deepcopy(BASE["pipeline_config"])
    cfg["num_output_frames"] = t
    cfg["frame_seq_length"] = FTOK
    if TREE == "inf":
        cfg["text_prompts"] = [text]
    pipe, model, gen = make_pipeline(cfg)
    noise, g = ref_env.contract_noise(seed, t, h, w)
    calls, draws, written, folds = [], [], {}, []
    state = {"start": None, "step": 0, "seg": {}}
    q_positions = []
    rope_name = "block_relativistic_rope" if TREE == "inf" else "causal_rope_apply"
    orig_rope = getattr(cm, rope_name)
    layer0 = model.blocks[0].self_attn
    orig_sa_forward = layer0.forward
    in_layer0 = {"on": False, "first": True}

    def rope(x, grid_sizes, freqs, *a, **kw):
        if in_layer0["on"] and in_layer0["first"]:
            in_layer0["first"] = False
            f = int(grid_sizes[0][0])
            if TREE == "inf":
                start = kw.get("start_frame", a[0] if a else 0)
                pos = list(range(start, start + f))
                if kw.get("scene_cut"):
                    pos = pos[:f - 3] + [45, 46, 47]
            else:
                rel = kw.get("relative_frame_indices")
                pos = rel.tolist() if rel is not None else list(range(kw.get("start_frame", 0),
                                                                      kw.get("start_frame", 0) + f))
            q_positions.append(pos)
        return orig_rope(x, grid_sizes, freqs, *a, **kw)
    setattr(cm, rope_name, rope)

    def sa_forward(*a, **kw):
        in_layer0.update(on=True, first=True)
        try:
            return orig_sa_forward(*a, **kw)
        finally:
            in_layer0["on"] = False
    layer0.forward = sa_forward

    orig_forward = gen.forward

    def forward(noisy_image_or_video, conditional_dict, timestep, kv_cache=None, crossattn_cache=None,
                current_start=None, **kw):
        start = current_start // FTOK
        if start != state["start"]:
            state["start"], state["step"] = start, 0
        kind = "denoise" if state["step"] < len(STEPS) else "context"
        state["step"] += 1
        c0 = kv_cache[0]
        before = (c0["local_end_index"].item() // FTOK, c0["global_end_index"].item() // FTOK)
        cut = bool(c0.get("scene_cut", False))
        folded_before = bool(c0.get("ema_initialized", False))
        ema_before = None if TREE != "mem" else c0["k"][:, 3 * FTOK:5 * FTOK].clone()
        out = orig_forward(noisy_image_or_video, conditional_dict, timestep, kv_cache, crossattn_cache,
                           current_start, **kw)
        after = c0["local_end_index"].item() // FTOK
        rec = {"call": len(calls), "kind": kind, "block": start // 3, "start_frame": start,
               "num_frames": noisy_image_or_video.shape[1], "timestep": float(timestep.flatten()[0]),
               "local_end_frames_before": before[0], "local_end_frames_after": after,
               "global_end_frames_before": before[1], "query_rope_positions": q_positions[-1],
               "key_tokens_attended_per_layer": None}
        if TREE == "inf":
            rec["scene_cut"] = cut
            rec["prompt_segment"] = state["seg"].setdefault(id(conditional_dict["prompt_embeds"]), len(state["seg"]))
            rec["evicted_on_this_call"] = kind == "denoise" and state["step"] == 1 and start > 0 and \
                before[0] + 3 > pipe.local_attn_size
        else:
            fold = kind == "denoise" and state["step"] == 1 and before[0] + 3 > 12 and before[0] == 12
            rec["fold_on_this_call"] = fold
        rec["x0"] = {"sum": out[1].double().sum().item(), "abs_sum": out[1].double().abs().sum().item()}
        # K written for this call's frames (raw K as the cache stores it, for slot labels)
        slot0 = (after - 3) * FTOK
        for j in range(3):
            written[f"f{start + j}@{kind}{'' if kind == 'context' else ' t=%g' % rec['timestep']}"] = \
                c0["k"][:, slot0 + j * FTOK:slot0 + (j + 1) * FTOK].clone()
        rec["slots_after_layer0"] = label_slots(c0["k"][:, :after * FTOK], written)
        if TREE == "mem" and rec["fold_on_this_call"]:
            prev = calls[-1]["slots_after_layer0"]
            rec["fold_index"] = len(folds)
            rec["evicted_slots_5_7_before_layer0"] = prev[5:8]
            folds.append({"fold": len(folds), "call": rec["call"], "block": rec["block"], "block_start_frame": start,
                          "evicted_frames": [int(l[1:].split("@")[0]) for l in prev[5:8]],
                          "memory": {f"layer{l}.{n}": buf[0, slot * FTOK].clone().contiguous()
                                     for l, c in enumerate(kv_cache)
                                     for n, buf, slot in (("long_k", c["k"], 3), ("short_k", c["k"], 4),
                                                          ("long_v", c["v"], 3), ("short_v", c["v"], 4))}})
        calls.append(rec)
        return out
    gen.forward = forward

    orig_randn, orig_randn_like = torch.randn, torch.randn_like

    def randn(*a, **kw):
        x = orig_randn(*a, **kw)
        if kw.get("generator") is g:
            draws.append({"shape": list(x.shape), "sum": x.double().sum().item()})
        return x

    def randn_like(x, **kw):   # patch 'rng' (∞-RoPE): the contract's contiguous draw, same order and count
        return randn(x.shape, generator=g, dtype=x.dtype)
    torch.randn = randn
    if TREE == "inf":
        torch.randn_like = randn_like
    try:
        if TREE == "inf":
            _, lat = pipe.inference(noise=noise.permute(0, 2, 1, 3, 4), text_prompts=[text], return_latents=True)
        else:
            _, lat = pipe.inference(noise=noise.permute(0, 2, 1, 3, 4), text_prompts=["p0"], return_latents=True,
                                    generator=g)
    finally:
        torch.randn, torch.randn_like = orig_randn, orig_randn_like
        setattr(cm, rope_name, orig_rope)
    caches = pipe.kv_cache1
    n = caches[0]["local_end_index"].item()
    kv_final = {}
    for l, c in enumerate(caches):
        kv_final[f"layer{l}.k"] = c["k"][:, :n].clone().contiguous()
        kv_final[f"layer{l}.v"] = c["v"][:, :n].clone().contiguous()
    return lat.permute(0, 2, 1, 3, 4).contiguous(), {"generator_calls": calls, "rng_draws": draws, "folds": folds}, \
        kv_final, cfg, pipe


def scenes_and_boundaries(pipe, text):
    prompts, blocks, cuts = pipe._parse_scene_durations(text)
    scenes, boundaries, at = [], [], 0
    for i, (p, b, c) in enumerate(zip(prompts, blocks, cuts)):
        scenes.append({"scene": i, "prompt_text": p, "blocks": b, "cut_flag_hash": c, "prompt_embeds_row": i,
                       "nonzero_rows": int(PROMPTS[p].abs().sum(-1).gt(0).sum())})
        if i < len(prompts) - 1:
            at += b
            boundaries.append({"block": at, "start_frame": 3 * at, "new_segment": i + 1, "kv_flush": True,
                               "rope_cut": c})
    return scenes, boundaries


def write_case(out_dir: Path, name: str):
    about, t, h, w, text, seed = CASES[name]
    assert FTOK == (h // 2) * (w // 2)
    lat, trace, kv_final, cfg, pipe = run(t, h, w, text, seed)
    lat2, trace2, kv2, _, _ = run(t, h, w, text, seed)
    assert torch.equal(lat, lat2) and all(torch.equal(kv_final[k], kv2[k]) for k in kv_final)
    d = out_dir / name
    d.mkdir(parents=True, exist_ok=True)
    noise, _ = ref_env.contract_noise(seed, t, h, w)
    case = copy.deepcopy(BASE)
    case.update({"case": name, "about": about, "pipeline_config": {**cfg}, "latent_shape_bcthw": [1, 16, t, h, w],
                 "frame_seq_length": FTOK, "grid_fhw_per_frame": [1, h // 2, w // 2], "num_blocks": t // 3,
                 "torch": torch.__version__, "threads": 1,
                 "builder": "tests/data/golden_extra/builders/wan21/build_strategies.py (see strategies_README.md)"})
    case["seeds"] = {**BASE["seeds"], "noise": seed}
    case.pop("machine", None)
    case["how_produced"] = [
        f"git archive {case['reference']['commit'][:7]} of {case['reference']['repo']} -> ref tree; patched copy = "
        f"the unified diff in patches_unified_diff (identical to tests/data/golden_extra/{TEMPLATE}) applied with "
        "patch -p1", f"torch 2.13.0+cpu, float32, 1 thread, no grad; env GOLDEN_FRAME_SEQ_LENGTH={FTOK}, "
        f"args.frame_seq_length={FTOK}",
        "model = the reference's CausalWanModel(**arch, **model_kwargs) + strict load of wan_tiny_t2v_bare; "
        "WanDiffusionWrapper without from_pretrained; stub text encoder (scene text 'p<k>' -> its 512 rows), stub VAE",
        ("latents = pipe.inference(noise_bcthw.permute(0,2,1,3,4), text_prompts=[pipeline_config.text_prompts[0]], "
         "return_latents=True)[1] with torch.randn_like replaced by the contract's contiguous draw (patch 'rng')")
        if TREE == "inf" else
        "latents = pipe.inference(noise_bcthw.permute(0,2,1,3,4), text_prompts=['p0'], return_latents=True, "
        "generator=g)[1]",
        "instrumentation only: generator.forward, the layer-0 rope call (query positions), torch.randn; slot labels by "
        "exact comparison of each cached frame with the K last written for every frame",
        "built twice: bitwise identical"]
    rows = [PROMPTS[s["prompt_text"]] for s in scenes_and_boundaries(pipe, text)[0]] if TREE == "inf" else [PROMPTS["p0"]]
    save_file({"noise_bcthw": noise.contiguous(),
               "prompt_embeds": torch.stack([torch.cat([r, r.new_zeros(512 - r.shape[0], r.shape[1])])
                                             for r in rows]).contiguous()}, str(d / "inputs.safetensors"))
    save_file({"latents_bcthw": lat}, str(d / "outputs.safetensors"))
    if TREE == "inf":
        case["scenes"], case["boundaries"] = scenes_and_boundaries(pipe, text)
        save_file(kv_final, str(d / "kv_final.safetensors"))
    else:
        save_file({f"fold{f['fold']}.{k}": v for f in trace["folds"] for k, v in f["memory"].items()},
                  str(d / "memory_tokens.safetensors"))
        case["folds"] = [{k: v for k, v in f.items() if k != "memory"} for f in trace["folds"]]
        for f in trace["folds"]:
            f.pop("memory")
    for c in trace["generator_calls"]:
        c.pop("key_tokens_attended_per_layer")
    trace["notes"] = ["one entry per generator call; slots_after_layer0 = labels of the layer-0 K cache slots after the "
                      "call (f<frame>@context / f<frame>@denoise t=..; 'other' = not a frame's raw K: the sink stored "
                      "rotated (∞-RoPE slot 0) or a memory slot (MemRoPE 3-4)); query_rope_positions = temporal RoPE "
                      "index of each query frame"]
    case["outputs"]["trace.json"] = (
        "generator_calls (kind, block, start frame, timestep, cache ends before/after in frames, "
        + ("scene_cut, prompt_segment, evicted_on_this_call" if TREE == "inf" else "fold_on_this_call, fold_index, "
           "evicted_slots_5_7_before_layer0") + ", query_rope_positions, x0 sums, slots_after_layer0); rng_draws"
        + ("" if TREE == "inf" else "; folds"))
    diff = case.pop("patches_unified_diff")
    text = json.dumps(case)
    for a, b in (("T,8,12]", f"T,{h},{w}]"), ("16,8,12]", f"16,{h},{w}]"), ("24s..24s+23", f"{FTOK}s..{FTOK}s+{FTOK - 1}"),
                 ("24 tokens", f"{FTOK} tokens"), ("(24)", f"({FTOK})"), ("x 24", f"x {FTOK}")):
        text = text.replace(a, b)
    case = {**json.loads(text), "patches_unified_diff": diff}
    (d / "case.json").write_text(json.dumps(case, indent=1))
    (d / "trace.json").write_text(json.dumps(trace))
    print(name, "written", flush=True)


def validate():
    name, t, h, w, text, seed = VALIDATE[TREE]
    lat, trace, kv_final, _, _ = run(t, h, w, text, seed)
    ref = load_file(str(ref_env.EXTRA / name / "outputs.safetensors"))["latents_bcthw"]
    print(name, "latents rel", ref_env.rel(lat, ref))
    theirs = json.loads((ref_env.EXTRA / name / "trace.json").read_text())["generator_calls"]
    same = all(a["query_rope_positions"] == b["query_rope_positions"] and
               a["local_end_frames_before"] == b["local_end_frames_before"] and
               a["local_end_frames_after"] == b["local_end_frames_after"] for a, b in zip(trace["generator_calls"], theirs))
    print("trace positions/ends equal:", same, len(trace["generator_calls"]), len(theirs))
    if TREE == "inf":
        print("scene_cut equal:", [c["scene_cut"] for c in trace["generator_calls"]] == [c["scene_cut"] for c in theirs])
        print("evicted equal:", [c["evicted_on_this_call"] for c in trace["generator_calls"]] ==
              [c["evicted_on_this_call"] for c in theirs])
    else:
        print("fold equal:", [c["fold_on_this_call"] for c in trace["generator_calls"]] ==
              [c["fold_on_this_call"] for c in theirs])


if __name__ == "__main__":
    if sys.argv[2] == "--validate":
        validate()
    else:
        write_case(Path(sys.argv[2]), sys.argv[3])
