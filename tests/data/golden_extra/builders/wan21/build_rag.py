"""LongLive-RAG (qixinhu11/LongLive-RAG 973884a) goldens at other latent sizes: the retrieval regime
(causal_model_latentmem.py, relative RoPE, history pool, top-K retrieval by the retrieval encoder or by avg_pool).

Usage: python build_rag.py OUT_DIR [case ...]      (run with /work/main/.venv/bin/python)
       python build_rag.py --validate               (rebuild rag_ae / rag_avgpool / native at 8x12 and compare)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ref_env  # noqa: E402

RECORDS, DIFF = ref_env.setup_tree("rag")
torch.set_num_threads(int(__import__("os").environ.get("GOLDEN_THREADS", "1")))
torch.set_grad_enabled(False)

import wan.modules.causal_model as cm_native  # noqa: E402
import wan.modules.causal_model_latentmem as cm_mem  # noqa: E402
from pipeline.causal_inference import CausalInferencePipeline  # noqa: E402
from tracer import Tracer  # noqa: E402

STEPS = [1000, 750, 500, 250]
AE = ref_env.GOLDEN / "ae.pt"
P0 = load_file(str(ref_env.GOLDEN / "inputs.safetensors"))["prompt_embeds"]       # [1, 512, 64]

# name: (about, T, H, W, window, sink, K, R, compression, noise seed, source config)
CASES = {
    "rag_ae_6x10": (
        "The published retrieval config (causal_forcing_latentmem.yaml: window 12, sink 1, K 6, R 5, the retrieval "
        "encoder) at 6x10 latents (3x5 = 15 tokens per frame), 15 blocks; the encoder is tests/data/golden/ae.pt "
        "(global average pooling: it runs at any latent size).",
        45, 6, 10, 12, 1, 6, 5, "ae", 49, "configs/causal_forcing_latentmem.yaml"),
    "rag_avgpool_10x6": (
        "Retrieval with avg_pool descriptors at 10x6 latents (5x3 = 15 tokens per frame), window 12, sink 2, K 4, "
        "R 3 (local budget 12 - 2 - 4 = 6 frames), 14 blocks.",
        42, 10, 6, 12, 2, 4, 3, "avg_pool", 50, "configs/causal_forcing_latentmem.yaml (window/sink/K/R/compression "
                                                "changed)"),
}

VALIDATE = {  # existing 8x12 cases rebuilt with this builder
    "rag_ae": (48, 8, 12, 12, 1, 6, 5, "ae", 42),
    "rag_avgpool": (48, 8, 12, 12, 1, 6, 5, "avg_pool", 42),
    "native": (48, 8, 12, 12, 1, 0, 0, "avg_pool", 42),
}


def pipeline_config(t, window, sink, k, r, comp, seed, ftok):
    kw = {"local_attn_size": window, "timestep_shift": 5.0, "sink_size": sink}
    if k:
        kw.update({"memory_size": k, "recent_exclude": r, "use_latentmem": True, "compression_method": comp})
        if comp == "ae":
            kw["ae_ckpt"] = str(AE)
    return {"denoising_step_list": STEPS, "warp_denoising_step": True, "num_frame_per_block": 3,
            "model_name": "Wan2.1-T2V-1.3B", "model_kwargs": kw, "num_output_frames": t, "use_ema": False,
            "seed": seed, "num_samples": 1, "global_sink": True, "context_noise": 0, "frame_seq_length": ftok}


def run(t, h, w, window, sink, k, r, comp, seed):
    ftok = (h // 2) * (w // 2)
    cfg = pipeline_config(t, window, sink, k, r, comp, seed, ftok)
    args = ref_env.make_args(cfg)
    mod = cm_mem if k else cm_native
    extra = {"memory_size": k} if k else {}
    model = ref_env.tiny_causal_model(mod.CausalWanModel, local_attn_size=window, sink_size=sink, **extra)
    gen = ref_env.make_wrapper(model, 5.0)
    pipe = CausalInferencePipeline(args, "cpu", generator=gen, text_encoder=ref_env.StubTextEncoder({"p0": P0[0]}),
                                   vae=ref_env.StubVAE())
    assert pipe.compression_method == comp and (comp != "ae" or pipe.ae_model is not None)
    noise, g = ref_env.contract_noise(seed, t, h, w)
    pipe.golden_generator = g
    tracer = Tracer(model, mod, ftok, sink, memory_size=k)
    state = {"start": None, "step": 0}
    orig_forward = gen.forward
    draws = []

    def forward(noisy_image_or_video, conditional_dict, timestep, kv_cache=None, crossattn_cache=None,
                current_start=None, **kw):
        tracer.cache_tokens = kv_cache[0]["k"].shape[1]
        start = current_start // ftok
        if start != state["start"]:
            state["start"], state["step"] = start, 0
        kind = "denoise" if state["step"] < len(STEPS) else "context"
        state["step"] += 1
        mi = kw.get("memory_indices")
        tracer.begin(kind, start, noisy_image_or_video.shape[1], timestep,
                     {"step": state["step"] - 1 if kind == "denoise" else None,
                      "memory_indices": None if mi is None else mi[0].tolist(),
                      "pool_frames_before": len(kv_cache[0].get("cpu_k_frames", []))})
        out = orig_forward(noisy_image_or_video, conditional_dict, timestep, kv_cache, crossattn_cache,
                           current_start, **kw)
        tracer.end(out[1])
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
        _, lat = pipe.inference(noise=noise.permute(0, 2, 1, 3, 4), text_prompts=["p0"], return_latents=True,
                                skip_vae_decode=True)
    finally:
        torch.randn = orig_randn
    assert all(b.self_attn.max_attention_size == window * ftok for b in model.blocks)
    desc = torch.stack(pipe.latent_descriptors, dim=1).float().contiguous()
    trace = {"generator_calls": tracer.calls, "rng_draws": draws, "pool_layer0": tracer.pool,
             "max_attention_size_tokens": window * ftok}
    return lat.permute(0, 2, 1, 3, 4).contiguous(), desc, pipe.memory_indices_log, trace, cfg


def validate():
    for name, spec in VALIDATE.items():
        lat, desc, log, _, _ = run(*spec)
        d = ref_env.GOLDEN if name == "rag_ae" else ref_env.EXTRA / name
        ref = load_file(str(d / "outputs.safetensors"))
        msg = f"{name}: latents rel {ref_env.rel(lat, ref['latents_bcthw']):.3g}, " \
              f"descriptors rel {ref_env.rel(desc, ref['descriptors']):.3g}"
        if (d / "memory_log.json").exists():
            theirs = json.loads((d / "memory_log.json").read_text())
            msg += f", memory log equal: {[m['selected_pool_indices'] for m in log] == [m['selected_pool_indices'] for m in theirs]}"
        print(msg, flush=True)


def per_block(trace) -> list[dict]:
    out = []
    for c in trace["generator_calls"]:
        if c["kind"] == "denoise" and c["step"] == 0:
            cache = c.get("cache", {})
            out.append({"block": c["start_frame"] // 3, "start_frame": c["start_frame"],
                        "pool_frames_before": c["pool_frames_before"], "memory_indices": c["memory_indices"],
                        "attended": cache.get("attended"), "evicted": cache.get("evicted", []),
                        "key_tokens_per_layer": c["self_attn_key_tokens_per_layer"]})
    return out


def retrieval_margins(log, desc, sink, k, r) -> list[dict]:
    """Every retrieval re-derived from the stored descriptors: all eligible similarities (cosine, as the pipeline
    computes them) and the top-k margin (k-th minus (k+1)-th similarity; None when every eligible frame is taken)."""
    out = []
    for rec in log:
        eligible = rec["num_evicted"] - r
        q = desc[:, rec["query_frame"] - 1]
        keys = desc[:, sink:sink + eligible]
        qn = q / (q.norm(dim=-1, keepdim=True) + 1e-8)
        kn = keys / (keys.norm(dim=-1, keepdim=True) + 1e-8)
        sims = (kn @ qn.unsqueeze(-1)).squeeze(-1)[0]
        top = sims.sort(descending=True).values
        kk = min(k, eligible)
        assert top[:kk].argsort().numel() == kk and sims.topk(kk).indices.tolist() == rec["selected_pool_indices"][0]
        out.append({"query_frame": rec["query_frame"], "eligible_pool_indices": [0, eligible - 1],
                    "similarities_by_pool_index": sims.tolist(),
                    "topk_margin": (top[kk - 1] - top[kk]).item() if eligible > kk else None})
    return out


def write_case(out_dir: Path, name: str):
    about, t, h, w, window, sink, k, r, comp, seed, source = CASES[name]
    spec = (t, h, w, window, sink, k, r, comp, seed)
    lat, desc, log, trace, cfg = run(*spec)
    lat2, desc2, log2, _, _ = run(*spec)
    assert torch.equal(lat, lat2) and torch.equal(desc, desc2) and log == log2
    ftok = (h // 2) * (w // 2)
    d = out_dir / name
    d.mkdir(parents=True, exist_ok=True)
    noise, _ = ref_env.contract_noise(seed, t, h, w)
    save_file({"noise_bcthw": noise.contiguous(), "prompt_embeds": P0.contiguous()}, str(d / "inputs.safetensors"))
    save_file({"latents_bcthw": lat, "descriptors": desc}, str(d / "outputs.safetensors"))
    (d / "memory_log.json").write_text(json.dumps(log, indent=1))
    trace["retrieval"] = retrieval_margins(log, desc, sink, k, r)
    margins = [m["topk_margin"] for m in trace["retrieval"] if m["topk_margin"] is not None]
    kw = dict(cfg["model_kwargs"])
    if "ae_ckpt" in kw:
        kw["ae_ckpt"] = "ae.pt"
    case = {
        "case": name, "about": about, "source_config": source,
        "model_class": f"wan.modules.{'causal_model_latentmem' if k else 'causal_model'}.CausalWanModel",
        "reference": {"repo": ref_env.COMMITS["rag"][0], "commit": ref_env.COMMITS["rag"][1],
                      "entry": "pipeline/causal_inference.py CausalInferencePipeline.inference(noise, ['p0'], "
                               "return_latents=True, skip_vae_decode=True)"},
        "pipeline_config": {**{k2: v for k2, v in cfg.items() if k2 not in ("frame_seq_length", "model_kwargs")},
                            "model_kwargs": kw},
        "arch": {**ref_env.ARCH, "local_attn_size": window, "sink_size": sink, "memory_size": k},
        "latent_shape_bcthw": [1, 16, t, h, w], "batch_size": 1, "frame_seq_length": ftok,
        "grid_fhw_per_frame": [1, h // 2, w // 2], "num_blocks": t // 3,
        "denoising_step_list_after_warp": [1000.0, 937.5, 833.3333129882812, 625.0],
        "compression_method_effective": comp, "descriptor_dim": desc.shape[-1], "retrieval": bool(k),
        "num_retrieving_blocks": len(log),
        "local_budget_frames": window - sink - k,
        "smallest_topk_margin": min(margins) if margins else None,
        "per_block": per_block(trace),
        "seeds": {"weights": 1001, "ae": 2002, "prompt": 4004, "noise": seed},
        "rng_contract": ("g=torch.Generator('cpu').manual_seed(seeds.noise); noise_bcthw=torch.randn((B,16,T,H,W),"
                         "generator=g,dtype=float32); pipeline input = noise_bcthw.permute(0,2,1,3,4); each re-noise "
                         "draws torch.randn(shape,generator=g,dtype=float32) in call order, shape [B*3,16,H,W]"),
        "num_renoise_draws": len(trace["rng_draws"]),
        "inputs": {"weights": "tests/data/golden/wan_tiny_t2v_bare.safetensors (loaded strictly)",
                   "ae": "tests/data/golden/ae.pt" if comp == "ae" else None,
                   "inputs.safetensors:noise_bcthw": "[1,16,T,H,W] (regenerable by rng_contract)",
                   "inputs.safetensors:prompt_embeds": "[1,512,64] = tests/data/golden/inputs.safetensors prompt"},
        "tensor_layouts": {
            "outputs.safetensors:latents_bcthw": "[B,C,T,H,W] float32 = reference output .permute(0,2,1,3,4)",
            "outputs.safetensors:descriptors": f"[B,T,{desc.shape[-1]}] float32: pipeline.latent_descriptors stacked"},
        "trace.json": "generator_calls: per call kind/step/start frame/timestep, memory_indices, pool size, key tokens "
                      "per layer, x0 stats, cache (layer-0 slot labels: evicted, written, attended in key order incl. "
                      "'pool<i>:<frame label>' for retrieved entries); rng_draws; pool_layer0 (entry i = label)",
        "how_produced": [
            f"git archive {ref_env.COMMITS['rag'][1]} -> /tmp/g21/rag_ref; patched copy /tmp/g21/rag_cpu "
            "(builder/patch_common.py + ref_env.patches('rag'); list in 'patches', diff in 'patches_unified_diff')",
            "torch 2.13.0+cpu, float32, 1 thread, no grad; model = the reference's CausalWanModel(**arch, "
            "local_attn_size, sink_size, memory_size) + strict load of wan_tiny_t2v_bare; WanDiffusionWrapper without "
            "from_pretrained; stub text encoder (p0 -> its 512 rows) and VAE; args = pipeline_config + "
            f"frame_seq_length={ftok}",
            "built twice: bitwise identical"],
        "patches": RECORDS + [{"file": "(runtime, builder)",
                               "reason": "from_pretrained -> tiny architecture + strict load; stubs for text encoder "
                                         "and VAE; max_attention_size reset by the pipeline to window*frame_seq_length "
                                         f"= {window * ftok} (asserted)"}],
        "patches_unified_diff": DIFF.splitlines(),
        "precision": "float32 on CPU; attention via torch SDPA in float32",
        "torch": torch.__version__,
        "tolerance_hint": "rel_err <= 1e-5 on latents_bcthw and descriptors (measured ~3e-7); selections identical",
        "builder": "tests/data/golden_extra/builders/wan21/build_rag.py (see rag_README.md)",
    }
    (d / "case.json").write_text(json.dumps(case, indent=1))
    (d / "trace.json").write_text(json.dumps(trace))
    print(name, "written;", len(log), "retrieving blocks", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "--validate":
        validate()
    else:
        out = Path(sys.argv[1])
        for name in sys.argv[2:] or CASES:
            write_case(out, name)
