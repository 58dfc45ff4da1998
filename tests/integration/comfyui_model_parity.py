"""Run in a real ComfyUI's Python by tests/integration/test_comfyui_models.py: the AR Block Sampler on MODELs from
ComfyUI's own loaders against the same weights through Load Backbone, on tiny models large enough for ComfyUI's
model detection (heads of 128). Prints one JSON object: per case, whether the latents are equal and their relative
difference, plus what ComfyUI's model management did.

argv: COMFYUI_DIR PACK_DIR WORK_DIR [GGUF_PACK_DIR]
"""
import asyncio
import importlib.util
import json
import os
import sys

comfy_dir, pack_dir, work = sys.argv[1:4]
gguf_dir = sys.argv[4] if len(sys.argv) > 4 else ""
sys.argv = sys.argv[:1] + ["--cpu"]
sys.path.insert(0, comfy_dir)
os.chdir(comfy_dir)
import comfy.options  # noqa: E402
comfy.options.enable_args_parsing()
import torch  # noqa: E402
import comfy.model_management as mm  # noqa: E402
import comfy.utils  # noqa: E402
import folder_paths  # noqa: E402
import nodes as comfy_nodes  # noqa: E402
from safetensors.torch import save_file  # noqa: E402


def import_package(name: str, root: str):
    spec = importlib.util.spec_from_file_location(name, os.path.join(root, "__init__.py"),
                                                  submodule_search_locations=[root])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


pack = import_package("llrag_pack", pack_dir)


async def _nodes():
    return await (await pack.comfy_entrypoint()).get_node_list()


N = {cls.GET_SCHEMA().node_id: cls for cls in asyncio.run(_nodes())}
tiny = importlib.import_module("llrag_pack.core.app.tiny")
read_backbone = importlib.import_module("llrag_pack.core.formats").read_backbone
bridge = importlib.import_module("llrag_pack.nodes.bridge")

for kind in ("diffusion_models", "loras", "unet"):
    os.makedirs(f"{work}/{kind}", exist_ok=True)
    folder_paths.add_model_folder_path(kind, f"{work}/{'diffusion_models' if kind == 'unet' else kind}")
EMB = torch.randn(1, 20, 4096, generator=torch.Generator().manual_seed(4))
COND = [[torch.cat([EMB, torch.zeros(1, 492, 4096)], 1), {"pooled_output": None}]]
RESULTS: dict = {}


def save(sd: dict, name: str) -> str:
    save_file({k: v.contiguous() for k, v in sd.items()}, f"{work}/diffusion_models/{name}")
    return name


def load_backbone(name, lora="none", strength=1.0):
    return N["LongLiveRAG_LoadBackbone"].execute(name, lora, strength, "float32", "cpu", "offload after sampling",
                                                 num_heads=2).args[0]


def run(backbone, length=45, retrieval=None):
    out = N["LongLiveRAG_ARBlockSampler"].execute(backbone, COND, 96, 64, length, 42, -1, 0, 0, "auto", 0.0, retrieval)
    return out.args[0]["samples"], out.args[1], out.args[2]


def compare(case: str, reference, model, **extra):
    a, _, _ = run(reference)
    b, _, info = run(model)
    RESULTS[case] = {"equal": bool(torch.equal(a, b)), "rel": float((a - b).norm() / a.norm()),
                     "info": info.splitlines()[-1], **extra}
    return a, b


def write_lora(model, name, seed, rank, alpha):
    g, out = torch.Generator().manual_seed(seed), {}
    for k, w in model.state_dict().items():
        if k.startswith("blocks.") and k.endswith(".weight") and w.dim() == 2:
            mod = "diffusion_model." + k[: -len(".weight")]
            out[f"{mod}.lora_down.weight"] = torch.randn(rank, w.shape[1], generator=g) * 0.05
            out[f"{mod}.lora_up.weight"] = torch.randn(w.shape[0], rank, generator=g) * 0.05
            out[f"{mod}.alpha"] = torch.tensor(float(alpha))
    save_file(out, f"{work}/loras/{name}")


def scaled_fp8(sd: dict) -> dict:
    """ComfyUI's scaled-fp8 layout: block weights e4m3 with a float32 'scale_weight', a 'scaled_fp8' marker."""
    out = {"scaled_fp8": torch.zeros(0, dtype=torch.float8_e4m3fn)}
    for k, v in sd.items():
        if k.startswith("blocks.") and k.endswith(".weight") and v.dim() == 2:
            scale = v.abs().max().float() / 448.0
            out[k], out[k[: -len("weight")] + "scale_weight"] = (v / scale).to(torch.float8_e4m3fn), scale.reshape(1)
        else:
            out[k] = v
    return out


def write_gguf(sd: dict, name: str) -> dict:
    """A Q8_0 GGUF as city96's tools write one for Wan (2-D weights quantised, the rest F32, the 5-D patch
    embedding flattened with its shape in 'comfy.gguf.orig_shape'); returns the exactly de-quantised weights."""
    import gguf
    writer = gguf.GGUFWriter(f"{work}/diffusion_models/{name}", arch="wan")
    exact = {}
    for k, v in sd.items():
        a = v.float().numpy()
        if v.dim() == 2 and v.shape[-1] % 32 == 0:
            q = gguf.quants.quantize(a, gguf.GGMLQuantizationType.Q8_0)
            writer.add_tensor(k, q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
            exact[k] = torch.from_numpy(gguf.quants.dequantize(q, gguf.GGMLQuantizationType.Q8_0)).reshape(v.shape)
            continue
        if v.dim() > 4:
            writer.add_array(f"comfy.gguf.orig_shape.{k}", list(v.shape))
            a = a.reshape(v.shape[0], -1)
        writer.add_tensor(k, a, raw_dtype=gguf.GGMLQuantizationType.F32)
        exact[k] = v.clone()
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return exact


def effective_state(model) -> dict:
    """The weights ComfyUI computes with, under Wan's names, in float32: each of its layers' weight as its forward
    casts it (de-quantised, scaled, patched). ComfyUI versions de-quantise the same file differently (0.3.48 keeps
    every Linear of a scaled-fp8 file in fp8, biases too): this is what the MODEL holds, whatever the version."""
    import comfy.ops
    mm.load_models_gpu([model])
    out = {}
    for name, mod in model.model.diffusion_model.named_modules():
        cast = hasattr(mod, "comfy_cast_weights") and getattr(mod, "weight", None) is not None
        for pname, p in mod.named_parameters(recurse=False):
            if not (cast and pname in ("weight", "bias")) and not pname.startswith(("scale_", "weight_scale", "input_")):
                out[f"{name}.{pname}"] = p.detach().float().clone()
        if cast:
            w, b = comfy.ops.cast_bias_weight(mod, dtype=torch.float32, device=torch.device("cpu"),
                                              bias_dtype=torch.float32)[:2]
            w = w.dequantize() if hasattr(w, "dequantize") else w
            if getattr(mod, "scale_weight", None) is not None and hasattr(mod, "convert_weight"):
                w = mod.convert_weight(w.float())
            out[f"{name}.weight"] = w.detach().float().clone()
            if b is not None:
                out[f"{name}.bias"] = b.detach().float().clone()
    return out


def placement(model) -> dict:
    """What ComfyUI's model management holds of the MODEL now."""
    return {"loaded_bytes": int(model.loaded_size()), "model_bytes": int(model.model_size()),
            "lowvram": bool(getattr(model.model, "model_lowvram", False)),
            "loaded_models": len(mm.current_loaded_models), "device": str(model.load_device)}


class SmallDevice:
    """ComfyUI's model management told the compute device is a GPU whose free memory is what a run asks to keep
    free plus ``fraction`` of the MODEL's weights (it is the CPU): it loads the MODEL partially, as on a small GPU,
    the other layers cast (and LoRA-patched) per call. Records what the pack asked for."""

    def __init__(self, fraction: float):
        self.fraction, self.free, self.saved, self.asked = fraction, 0, None, []

    def __enter__(self):
        self.saved = mm.is_device_cpu, mm.get_free_memory, mm.vram_state, mm.load_models_gpu, mm.LoadedModel.model_load
        load, model_load, small = mm.load_models_gpu, mm.LoadedModel.model_load, self

        def capped_load(loaded, lowvram_model_memory=0, force_patch_weights=False):
            # ComfyUI before 0.8 loads at least 128 MiB whatever is free: more than these tiny models
            if lowvram_model_memory:
                lowvram_model_memory = min(lowvram_model_memory, int(small.fraction * loaded.model.model_size()))
            return model_load(loaded, lowvram_model_memory, force_patch_weights=force_patch_weights)

        def load_models_gpu(models, memory_required=0, **kw):
            self.asked.append(int(memory_required))
            self.free = (max(mm.minimum_inference_memory(), memory_required + mm.extra_reserved_memory())
                         + int(self.fraction * models[0].model_size()))
            return load(models, memory_required=memory_required, **kw)

        mm.is_device_cpu = lambda device: False
        mm.get_free_memory = lambda device=None, torch_free_too=False: (self.free, self.free) if torch_free_too \
            else self.free
        mm.vram_state, mm.load_models_gpu = mm.VRAMState.NORMAL_VRAM, load_models_gpu
        mm.LoadedModel.model_load = capped_load
        return self

    def __exit__(self, *exc):
        mm.is_device_cpu, mm.get_free_memory, mm.vram_state, mm.load_models_gpu, mm.LoadedModel.model_load = self.saved


def partial_load(model, reference, case: str) -> None:
    """A MODEL that does not fit: asked for the run's room, ComfyUI loads part of it; the video is the same."""
    mm.unload_all_models()
    with SmallDevice(1 / 3) as small:
        a, _, _ = run(reference)
        b, _, info = run(model)
        RESULTS[case] = {"equal": bool(torch.equal(a, b)), "rel": float((a - b).norm() / a.norm()),
                         "info": info.splitlines()[-1], "placement": placement(model), "asked": small.asked,
                         "lowvram_patches": int(model.lowvram_patch_counter())}
    mm.unload_all_models()


def cancel_and_continue(model, reference) -> None:
    """Cancel after the second block (ComfyUI's interrupt), queue again: the run continues and equals one that was
    never stopped; the progress bar advanced per block with a latent preview."""
    seen = []

    def hook(value, total, preview, node_id=None):
        seen.append((value, total, preview is not None))
        if value == 2 and not stopped:
            mm.interrupt_current_processing(True)

    stopped = False
    from comfy.cli_args import LatentPreviewMethod, args
    args.preview_method = LatentPreviewMethod.Latent2RGB           # as a user with previews on
    comfy.utils.set_progress_bar_global_hook(hook)
    try:
        run(model, length=69)
    except mm.InterruptProcessingException:
        stopped = True
    mm.interrupt_current_processing(False)
    latents, _, info = run(model, length=69)
    comfy.utils.set_progress_bar_global_hook(None)
    full, _, _ = run(reference, length=69)
    RESULTS["cancel_continue"] = {"stopped": stopped, "equal": bool(torch.equal(latents, full)),
                                  "continued": "continu" in info.lower(), "progress": seen}


def converted_longlive() -> None:
    """LongLive's released layout (a bf16 .pt base, a peft LoRA) through Load Backbone, against `core convert`'s
    files through Load Diffusion Model: merged (bit for bit), and base + LoRA file through LoraLoaderModelOnly."""
    convert = importlib.import_module("llrag_pack.core.formats.convert").convert_checkpoint
    base = tiny.tiny_model(2, dim=256, heads=2, text_dim=4096, freq_dim=256, bias_std=0.05)
    sd = {k: v.to(torch.bfloat16) for k, v in base.state_dict().items()}
    torch.save({"generator": {f"model.{k}": v for k, v in sd.items()}}, f"{work}/diffusion_models/longlive_base.pt")
    g, lora = torch.Generator().manual_seed(7), {}
    for k, w in sd.items():
        if k.startswith("blocks.") and k.endswith(".weight") and w.dim() == 2:
            mod = k[: -len(".weight")]
            lora[f"base_model.model.{mod}.lora_A.weight"] = torch.randn(8, w.shape[1], generator=g) * 0.05
            lora[f"base_model.model.{mod}.lora_B.weight"] = torch.randn(w.shape[0], 8, generator=g) * 0.05
    torch.save({"generator_lora": lora}, f"{work}/loras/longlive_lora.pt")
    pt = load_backbone("longlive_base.pt", "longlive_lora.pt", 1.0)
    merged = convert(f"{work}/diffusion_models/longlive_base.pt", f"{work}/diffusion_models/",
                     lora=f"{work}/loras/longlive_lora.pt")
    (m,) = comfy_nodes.UNETLoader().load_unet(merged.backbone.name, "default")
    compare("converted_longlive_merged", pt, m)
    apart = convert(f"{work}/diffusion_models/longlive_base.pt", f"{work}/diffusion_models/",
                    lora=f"{work}/loras/longlive_lora.pt", lora_out=f"{work}/loras/")
    (b,) = comfy_nodes.UNETLoader().load_unet(apart.backbone.name, "default")
    (bl,) = comfy_nodes.LoraLoaderModelOnly().load_lora_model_only(b, apart.lora.name, 1.0)
    compare("converted_longlive_lora_file", pt, bl)


def main():
    base = tiny.tiny_model(0, dim=256, heads=2, text_dim=4096, freq_dim=256, bias_std=0.05)
    sd = base.state_dict()
    (model,) = comfy_nodes.UNETLoader().load_unet(save(sd, "tiny_wan.safetensors"), "default")
    bb = load_backbone("tiny_wan.safetensors")
    exact, _ = compare("load_diffusion_model", bb, model, placement=placement(model))
    write_lora(base, "style.safetensors", 1, rank=4, alpha=2)
    write_lora(base, "motion.safetensors", 2, rank=8, alpha=8)
    (styled,) = comfy_nodes.LoraLoaderModelOnly().load_lora_model_only(model, "style.safetensors", 0.7)
    compare("lora_0.7", load_backbone("tiny_wan.safetensors", "style.safetensors", 0.7), styled)
    merged, _ = read_backbone(f"{work}/diffusion_models/tiny_wan.safetensors", lora=f"{work}/loras/style.safetensors",
                              lora_strength=0.7)
    (stacked,) = comfy_nodes.LoraLoaderModelOnly().load_lora_model_only(styled, "motion.safetensors", 0.5)
    compare("two_loras", load_backbone(save(merged, "tiny_style.safetensors"), "motion.safetensors", 0.5), stacked)
    partial_load(styled, load_backbone("tiny_wan.safetensors", "style.safetensors", 0.7), "partial_load_lora")
    again, _, _ = run(model)
    RESULTS["base_after_loras"] = {"equal": bool(torch.equal(again, exact))}
    (fp8,) = comfy_nodes.UNETLoader().load_unet(save(scaled_fp8(sd), "tiny_fp8_scaled.safetensors"), "default")
    _, b = compare("scaled_fp8", load_backbone("tiny_fp8_scaled.safetensors"), fp8, placement=placement(fp8))
    RESULTS["scaled_fp8"]["rel_to_unquantised"] = float((b - exact).norm() / exact.norm())
    held, _, _ = run(load_backbone(save(effective_state(fp8), "tiny_fp8_as_comfyui_holds.safetensors")))
    RESULTS["scaled_fp8"]["rel_to_what_comfyui_holds"] = float((b - held).norm() / held.norm())
    ll2 = tiny.tiny_model(1, dim=256, heads=2, text_dim=4096, freq_dim=256, channels=48, bias_std=0.05)
    (m48,) = comfy_nodes.UNETLoader().load_unet(save(ll2.state_dict(), "tiny_ti2v.safetensors"), "default")
    compare("wan22_ti2v", load_backbone("tiny_ti2v.safetensors"), m48)
    cancel_and_continue(model, bb)
    converted_longlive()
    (enc,) = N["LongLiveRAG_LoadLatentEncoder"].execute("avg_pool (no file)").args
    retrieval = N["LongLiveRAG_RetrieveContext"].execute(enc, 2, 1, None).args[0]
    a, log_a, _ = run(bb, length=93, retrieval=retrieval)
    b, log_b, _ = run(model, length=93, retrieval=retrieval)
    (image,) = N["LongLiveRAG_RetrievalMap"].execute(log_b, 512, 256).args[:1]
    RESULTS["retrieval"] = {"equal": bool(torch.equal(a, b)), "records": len(log_b.records),
                            "same_log": log_a.records == log_b.records, "map": list(image.shape)}
    if gguf_dir:
        gguf_pack = import_package("ComfyUI_GGUF", gguf_dir)
        exact_q8 = write_gguf(sd, "tiny_q8.gguf")
        reference = load_backbone(save(exact_q8, "tiny_q8_dequantised.safetensors"))
        loaders = gguf_pack.NODE_CLASS_MAPPINGS
        (q8,) = loaders["UnetLoaderGGUF"]().load_unet("tiny_q8.gguf")
        _, b = compare("gguf_q8_0", reference, q8, placement=placement(q8))
        RESULTS["gguf_q8_0"]["rel_to_unquantised"] = float((b - exact).norm() / exact.norm())
        (q8t,) = loaders["UnetLoaderGGUFAdvanced"]().load_unet("tiny_q8.gguf", "target", "default", False)
        compare("gguf_q8_0_target_dequant", reference, q8t)
        (q8l,) = comfy_nodes.LoraLoaderModelOnly().load_lora_model_only(q8, "style.safetensors", 0.7)
        styled_ref = load_backbone(save(read_backbone(f"{work}/diffusion_models/tiny_q8_dequantised.safetensors",
                                                      lora=f"{work}/loras/style.safetensors", lora_strength=0.7)[0],
                                        "tiny_q8_style.safetensors"))
        compare("gguf_q8_0_lora", styled_ref, q8l)
        partial_load(q8l, styled_ref, "gguf_partial_load_lora")
    print("RESULTS " + json.dumps(RESULTS))


main()
