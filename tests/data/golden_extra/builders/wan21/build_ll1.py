"""LongLive 1.0 (NVlabs/LongLive 2462895) goldens at other latent sizes: the plain sliding window with sink
(CausalInferencePipeline) and interactive prompt switching with KV re-cache (InteractiveCausalInferencePipeline).

Usage: python build_ll1.py OUT_DIR [case ...]      (run with /work/main/.venv/bin/python)
       python build_ll1.py --validate               (rebuild the 8x12 cases already in the repo and compare)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ref_env  # noqa: E402

RECORDS, DIFF = ref_env.setup_tree("ll1")
torch.set_num_threads(1)
torch.set_grad_enabled(False)

import wan.modules.causal_model as cm  # noqa: E402
from pipeline.causal_inference import CausalInferencePipeline  # noqa: E402
from pipeline.interactive_causal_inference import InteractiveCausalInferencePipeline  # noqa: E402
from tracer import Tracer, stats  # noqa: E402

STEPS = [1000, 750, 500, 250]
PROMPTS = ref_env.prompt_rows()

# name: (about, T, H, W, window, sink, global_sink, switch indices, prompts, noise seed)
CASES = {
    "longlive_switch_noswitch_6x10": (
        "The plain sliding window with sink (CausalInferencePipeline, no switch) at 6x10 latents (3x5 = 15 tokens "
        "per frame): window 12, sink 3 (configs/longlive_inference.yaml), 15 blocks, evictions from block 4 on.",
        45, 6, 10, 12, 3, True, [], ["p0"], 46),
    "longlive_switch_sink3_gs_6x10": (
        "Two re-caches at 6x10 latents (15 tokens per frame), window 12, sink 3, global_sink true; switch indices "
        "17 -> fires at block start 18, 31 -> 33 (off the block grid); 14 blocks.",
        42, 6, 10, 12, 3, True, [17, 31], ["p0", "p1", "p2"], 47),
    "longlive_switch_sink2_nogs_10x6": (
        "global_sink false at 10x6 latents (5x3 = 15 tokens per frame, taller than wide), window 9, sink 2; "
        "switch 8 -> block start 9 (window not yet full: re-cache frames 0-8 from slot 0), 22 -> 24 "
        "(frames 15-23 into slots 0-8: frames 15-16 become the sink); 11 blocks.",
        33, 10, 6, 9, 2, False, [8, 22], ["p0", "p3", "p1"], 48),
}

VALIDATE = {  # existing 8x12 cases rebuilt with this builder (must match the repo's files)
    "longlive_switch_sink3_gs": (36, 8, 12, 12, 3, True, [15, 27], ["p0", "p1", "p2"], 42),
    "longlive_switch_offgrid_sink1_win9": (30, 8, 12, 9, 1, True, [13, 20], ["p0", "p1", "p2"], 44),
    "longlive_switch_sink1_nogs_three": (36, 8, 12, 12, 1, False, [12, 25, 26], ["p0", "p1", "p2", "p3"], 45),
    "longlive_switch_noswitch": (36, 8, 12, 12, 3, True, [], ["p0"], 42),
}


def pipeline_config(t, window, sink, global_sink, switches, seed, ftok):
    return {"denoising_step_list": STEPS, "warp_denoising_step": True, "num_frame_per_block": 3,
            "model_name": "Wan2.1-T2V-1.3B",
            "model_kwargs": {"local_attn_size": window, "timestep_shift": 5.0, "sink_size": sink},
            "num_output_frames": t, "seed": seed, "num_samples": 1, "switch_frame_indices": switches,
            "global_sink": global_sink, "context_noise": 0, "use_ema": False, "frame_seq_length": ftok}


def run(t, h, w, window, sink, global_sink, switches, prompts, seed, plain=None):
    """Run the reference; returns (latents_bcthw, trace dict, re-cache K snapshots, pipeline)."""
    ftok = (h // 2) * (w // 2)
    cfg = pipeline_config(t, window, sink, global_sink, switches, seed, ftok)
    args = ref_env.make_args(cfg)
    model = ref_env.tiny_causal_model(cm.CausalWanModel, local_attn_size=window, sink_size=sink)
    gen = ref_env.make_wrapper(model, 5.0)
    table = {p: PROMPTS[p] for p in prompts}
    text = ref_env.StubTextEncoder(table)
    plain = (not switches) if plain is None else plain
    cls = CausalInferencePipeline if plain else InteractiveCausalInferencePipeline
    pipe = cls(args, "cpu", generator=gen, text_encoder=text, vae=ref_env.StubVAE())
    noise, g = ref_env.contract_noise(seed, t, h, w)
    pipe.golden_generator = g
    draws = []
    orig_randn = torch.randn

    tracer = Tracer(model, cm, ftok, sink)
    state = {"start": None, "step": 0, "recache": False}
    seg_of = {}
    orig_forward = gen.forward
    snapshots, recaches = [], []

    def forward(noisy_image_or_video, conditional_dict, timestep, kv_cache=None, crossattn_cache=None,
                current_start=None, **kw):
        tracer.cache_tokens = kv_cache[0]["k"].shape[1]
        start = current_start // ftok
        nf = noisy_image_or_video.shape[1]
        seg = seg_of.setdefault(id(conditional_dict["prompt_embeds"]), len(seg_of))
        if state["recache"]:
            kind = "recache"
        else:
            if start != state["start"]:
                state["start"], state["step"] = start, 0
            kind = "denoise" if state["step"] < len(STEPS) else "context"
            state["step"] += 1
        before = {"global_end_frames": kv_cache[0]["global_end_index"].item() // ftok,
                  "local_end_frames": kv_cache[0]["local_end_index"].item() // ftok}
        extra = {"step": state["step"] - 1 if kind == "denoise" else None, "prompt": prompts[seg_key(seg)],
                 "cache_before": before}
        if kind == "recache":
            extra["sink_recache_after_switch"] = kw.get("sink_recache_after_switch")
        tracer.begin(kind, start, nf, timestep, extra)
        out = orig_forward(noisy_image_or_video, conditional_dict, timestep, kv_cache, crossattn_cache,
                           current_start, **kw)
        tracer.end(out[1])
        tracer.calls[-1]["cache_after"] = {"global_end_frames": kv_cache[0]["global_end_index"].item() // ftok,
                                           "local_end_frames": kv_cache[0]["local_end_index"].item() // ftok}
        if kind == "recache":
            n = kv_cache[0]["local_end_index"].item()
            snapshots.append({f"layer{l}.k": kv_cache[l]["k"][:, :n].clone().contiguous()
                              for l in (0, len(kv_cache) - 1)})
        return out

    # prompts are encoded in order (segment s = text_prompts_list[s]); the stub returns a new tensor per call
    def seg_key(seg):
        return seg

    gen.forward = forward
    if not plain:
        orig_recache = pipe._recache_after_switch

        def recache(output, current_start_frame, new_cond):
            state["recache"] = True
            labels_before = list(tracer.labels)
            n_calls = len(tracer.calls)
            orig_recache(output, current_start_frame, new_cond)
            state["recache"] = False
            rec = {"block_start": current_start_frame}
            if len(tracer.calls) > n_calls:
                c = tracer.calls[-1]
                rec.update({"recache_frames_inclusive": [c["start_frame"], c["start_frame"] + c["num_frames"] - 1],
                            "cache_slots_rewritten": c["cache"]["written_slots"],
                            "slots_before": labels_before, "slots_after": list(tracer.labels),
                            "key_tokens_attended_per_layer": c["self_attn_key_tokens_per_layer"]})
            recaches.append(rec)
        pipe._recache_after_switch = recache

    def randn(*a, **kw):
        x = orig_randn(*a, **kw)
        if kw.get("generator") is g:
            draws.append({"shape": list(x.shape), "sum": x.double().sum().item()})
        return x
    torch.randn = randn
    try:
        if plain:
            _, lat = pipe.inference(noise=noise.permute(0, 2, 1, 3, 4), text_prompts=[prompts[0]],
                                    return_latents=True)
        else:
            _, lat = pipe.inference(noise.permute(0, 2, 1, 3, 4), text_prompts_list=[[p] for p in prompts],
                                    switch_frame_indices=switches, return_latents=True)
    finally:
        torch.randn = orig_randn
    assert all(m.self_attn.max_attention_size == window * ftok for m in model.blocks)
    trace = {"generator_calls": tracer.calls, "rng_draws": draws, "recaches": recaches,
             "max_attention_size_tokens": window * ftok}
    return lat.permute(0, 2, 1, 3, 4).contiguous(), trace, snapshots, cfg


def validate():
    for name, spec in VALIDATE.items():
        lat, trace, snaps, _ = run(*spec)
        ref = load_file(str(ref_env.EXTRA / name / "outputs.safetensors"))["latents_bcthw"]
        msg = [f"{name}: rel {ref_env.rel(lat, ref):.3g}"]
        for i, s in enumerate(snaps):
            kv = load_file(str(ref_env.EXTRA / name / f"recache{i}_kv.safetensors"))
            msg.append(f"recache{i} " + " ".join(f"{k} {ref_env.rel(s[k], kv[k]):.3g}" for k in kv))
        print("; ".join(msg), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "--validate":
        validate()


def per_block(trace) -> list[dict]:
    """The first denoising call of every block: the frames its layer-0 self-attention attended and what it evicted."""
    out = []
    for c in trace["generator_calls"]:
        if c["kind"] == "denoise" and c["step"] == 0:
            cache = c.get("cache", {})
            out.append({"block": c["start_frame"] // 3, "start_frame": c["start_frame"], "prompt": c["prompt"],
                        "attended": cache.get("attended"), "evicted": cache.get("evicted", []),
                        "key_tokens_per_layer": c["self_attn_key_tokens_per_layer"]})
    return out


def write_case(out_dir: Path, name: str):
    about, t, h, w, window, sink, gs, switches, prompts, seed = CASES[name]
    lat, trace, snaps, cfg = run(t, h, w, window, sink, gs, switches, prompts, seed)
    again, _, snaps2, _ = run(t, h, w, window, sink, gs, switches, prompts, seed)
    assert torch.equal(lat, again) and all(torch.equal(a[k], b[k]) for a, b in zip(snaps, snaps2) for k in a)
    ftok = (h // 2) * (w // 2)
    d = out_dir / name
    d.mkdir(parents=True, exist_ok=True)
    noise, _ = ref_env.contract_noise(seed, t, h, w)
    save_file({"noise_bcthw": noise.contiguous(),
               "prompt_embeds": torch.stack([PROMPTS[p] for p in prompts]).contiguous()}, str(d / "inputs.safetensors"))
    save_file({"latents_bcthw": lat}, str(d / "outputs.safetensors"))
    fires = []
    for s in switches:
        fires.append(3 * -(-s // 3) if not fires or 3 * -(-s // 3) > fires[-1] else fires[-1] + 3)
    recaches = []
    for i, (rec, snap) in enumerate(zip(trace["recaches"], snaps)):
        save_file(snap, str(d / f"recache{i}_kv.safetensors"))
        first, last = rec["recache_frames_inclusive"]
        valid = len([l for l in rec["slots_after"][:window] if l != "zero"])
        recaches.append({"block_start": rec["block_start"], "recache_frames_inclusive": [first, last],
                         "num_recache_frames": last - first + 1, "timestep": 0, "rope_time_positions": [first, last],
                         "prompt_segment": i + 1, "cache_slots_rewritten": rec["cache_slots_rewritten"],
                         "cache_slots_kept": [s for s in range(valid) if s not in rec["cache_slots_rewritten"]],
                         "slots_before": rec["slots_before"], "slots_after": rec["slots_after"],
                         "key_tokens_attended_per_layer": rec["key_tokens_attended_per_layer"],
                         "kv_file": f"recache{i}_kv.safetensors"})
    assert [r["block_start"] for r in trace["recaches"]] == fires, (trace["recaches"], fires)
    plain = not switches
    case = {
        "case": name, "about": about,
        "reference": {"repo": ref_env.COMMITS["ll1"][0], "commit": ref_env.COMMITS["ll1"][1],
                      "version": "LongLive 1.0 (" + ("pipeline/causal_inference.py CausalInferencePipeline" if plain
                                                      else "pipeline/interactive_causal_inference.py "
                                                           "InteractiveCausalInferencePipeline") + ")",
                      "files": ["pipeline/causal_inference.py"] + ([] if plain else
                                                                   ["pipeline/interactive_causal_inference.py"]) +
                      ["wan/modules/causal_model.py", "wan/modules/model.py", "wan/modules/attention.py",
                       "utils/wan_wrapper.py", "utils/scheduler.py"],
                      "source_config": ("configs/longlive_inference.yaml" if plain else
                                        "configs/longlive_interactive_inference.yaml") +
                      " (scaled down; the LoRA adapter not used: tiny base weights only)"},
        "pipeline_config": {k: v for k, v in cfg.items() if k != "frame_seq_length"},
        "arch": {**{k: v for k, v in ref_env.ARCH.items() if k != "memory_size"}, "local_attn_size": window,
                 "sink_size": sink},
        "latent_shape_bcthw": [1, 16, t, h, w], "batch_size": 1, "frame_seq_length": ftok,
        "grid_fhw_per_frame": [1, h // 2, w // 2], "num_blocks": t // 3,
        "denoising_step_list_after_warp": [1000.0, 937.5, 833.3333129882812, 625.0],
        "segments": [{"segment": i, "prompt": p, "prompt_embeds_row": i,
                      "nonzero_rows": int(PROMPTS[p].abs().sum(-1).gt(0).sum()),
                      "first_frame": 0 if i == 0 else fires[i - 1]} for i, p in enumerate(prompts)],
        "switches": [{"switch_index": s, "fires_at_block_start": b, "segment": i + 1}
                     for i, (s, b) in enumerate(zip(switches, fires))],
        "recaches": recaches,
        "per_block": per_block(trace),
        "seeds": {"weights": 1001, "noise": seed,
                  "prompts": "rows of tests/data/golden_extra/longlive_switch_* inputs: p0 = tests/data/golden prompt "
                             "(seed 4004), p1 = seed 4005, p2 = seed 4006, p3 = seed 4007"},
        "rng_contract": ("g=torch.Generator('cpu').manual_seed(seeds.noise); noise_bcthw=torch.randn((1,16,T,H,W),"
                         "generator=g,dtype=float32); pipeline input = noise_bcthw.permute(0,2,1,3,4); each re-noise "
                         "draws torch.randn([3,16,H,W],generator=g,dtype=float32) in call order (3 per block, after "
                         "steps 1-3; none for the context pass, none at a switch/re-cache)"),
        "num_renoise_draws": len(trace["rng_draws"]),
        "inputs": {"weights": "tests/data/golden/wan_tiny_t2v_bare.safetensors (loaded strictly into the reference's "
                              "CausalWanModel)",
                   "inputs.safetensors:noise_bcthw": "[1,16,T,H,W] float32 (regenerable by rng_contract)",
                   "inputs.safetensors:prompt_embeds": "[n_segments,32,64] float32, row s = segment s; zero-pad to "
                                                       "text_len 512 (the reference pads itself)"},
        "outputs": {"outputs.safetensors:latents_bcthw": "[1,16,T,H,W] float32 = returned latents .permute(0,2,1,3,4)",
                    "recache<i>_kv.safetensors": f"layer0.k, layer1.k [1, valid_slots*{ftok}, 2, 64]: the self-attention "
                                                 "K cache right after the i-th re-cache (stored after RoPE)"},
        "how_produced": [
            f"git archive {ref_env.COMMITS['ll1'][1][:7]} -> /tmp/g21/ll1_ref; copy /tmp/g21/ll1_cpu patched by "
            "builder/patch_common.py + ref_env.patches('ll1') (list in 'patches', diff in 'patches_unified_diff')",
            "PYTHONPATH=<shims>:<patched tree>; torch 2.13.0+cpu, float32, 1 thread, no grad",
            "model = CausalWanModel(**arch, local_attn_size, sink_size) + load_state_dict(wan_tiny_t2v_bare, strict); "
            "generator = WanDiffusionWrapper without from_pretrained (timestep_shift 5)",
            f"pipe = {'CausalInferencePipeline' if plain else 'InteractiveCausalInferencePipeline'}(args, 'cpu', "
            "generator, text_encoder=<stub: prompt name -> its rows>, vae=<stub>); args = pipeline_config + "
            f"frame_seq_length={ftok}",
            "latents = pipe.inference(noise_bcthw.permute(0,2,1,3,4), " + (
                "text_prompts=['p0'], return_latents=True)[1]" if plain else
                "text_prompts_list=[[p] for p in prompts], switch_frame_indices, return_latents=True)[1]"),
            "instrumentation only (numerically transparent): generator.forward, model._apply_cache_updates (layer-0 "
            "slot labels from cache_update_info), causal_model.attention (key lengths), torch.randn (draw sums)",
            "built twice: bitwise identical"],
        "patches": RECORDS + [
            {"file": "(runtime, builder)", "reason": "CausalWanModel.from_pretrained -> tiny architecture + strict load; "
                                                     "text encoder and VAE stubs passed to the constructor"},
            {"file": "(not patched, noted)", "reason": f"max_attention_size = local*1560 in __init__: the pipeline "
                                                       f"overwrites it with window*frame_seq_length = {window * ftok} "
                                                       "(asserted)"}],
        "patches_unified_diff": DIFF.splitlines(),
        "precision": "float32 on CPU; self- and cross-attention via torch SDPA in float32",
        "torch": torch.__version__,
        "tolerance_hint": "rel_err = norm(a-b)/norm(b) <= 1e-5 on latents_bcthw and the re-cache K",
        "builder": "tests/data/golden_extra/builders/wan21/build_ll1.py (see longlive_switch_README.md)",
    }
    (d / "case.json").write_text(json.dumps(case, indent=1))
    trace["notes"] = ("generator_calls[i].cache: layer-0 cache after this call's roll/write (action, evicted slot "
                      "labels, written slots, 'attended' = the frames the call's self-attention read, in key order: "
                      "'f12@ctx' = frame 12's K written by its block's context pass, '@s0'..'@s3' by a denoising step, "
                      "'@recache' by a re-cache); derived from the reference's own cache_update_info")
    (d / "trace.json").write_text(json.dumps(trace))
    print(name, "written", flush=True)


if __name__ == "__main__" and sys.argv[1] != "--validate":
    out = Path(sys.argv[1])
    for name in sys.argv[2:] or CASES:
        write_case(out, name)
