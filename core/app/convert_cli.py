"""``python -m core convert``: a released backbone (and LoRA) → the safetensors ComfyUI's own loaders read.

    python -m core convert --backbone self_forcing_dmd.pt --out ComfyUI/models/diffusion_models/
    python -m core convert --backbone longlive_base.pt --lora longlive_lora.pt --out longlive_bf16.safetensors
    python -m core convert --backbone longlive_base.pt --lora longlive_lora.pt --out DIR/ --lora-out LORAS/
    python -m core convert --backbone model_bf16.pt --dtype fp8 --out longlive_2.0_fp8_scaled.safetensors

The conversion itself is core/formats/convert.py; here: the options and the lines it prints.
"""
from __future__ import annotations

from ..formats.convert import DTYPES, convert_checkpoint


def add_cli(sub) -> None:
    p = sub.add_parser("convert", help="write a released backbone (and LoRA) as safetensors for ComfyUI's Load "
                                       "Diffusion Model and LoraLoaderModelOnly")
    p.add_argument("--backbone", required=True, help="Self-Forcing / Causal-Forcing / LongLive / LongLive 2.0 .pt, Wan "
                   ".safetensors or diffusers folder: any file Load Backbone reads")
    p.add_argument("--lora", help="LongLive's longlive_lora.pt / LongLive 2.0's lora_checkpoint.pt: merged into the "
                                  "output, or written separately with --lora-out")
    p.add_argument("--lora-strength", type=float, default=1.0, help="strength of a merged LoRA (default 1)")
    p.add_argument("--lora-out", help="write the LoRA as its own ComfyUI LoRA file here (a file or a folder; "
                                      "ComfyUI: models/loras/) and the backbone unmerged")
    p.add_argument("--out", required=True, help="output .safetensors, or a folder (ComfyUI: models/diffusion_models/) "
                                                "for <preset>_<dtype>.safetensors")
    p.add_argument("--dtype", choices=DTYPES, default="bf16",
                   help="bf16 (exact for a bf16 checkpoint) or fp8: ComfyUI's scaled fp8 (e4m3 weights with a "
                        "per-tensor scale; ComfyUI 0.3.48 and newer load it), half the bytes, the error printed")
    p.add_argument("--num-heads", type=int, help="attention heads (default: from the file, else dim/128)")
    p.add_argument("--no-ema", action="store_true", help="Self-Forcing: use 'generator' instead of 'generator_ema'")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=cmd_convert)


def cmd_convert(args, progress) -> int:
    done = convert_checkpoint(args.backbone, args.out, dtype=args.dtype, lora=args.lora,
                              lora_strength=args.lora_strength, lora_out=args.lora_out, use_ema=not args.no_ema,
                              num_heads=args.num_heads, overwrite=args.overwrite)
    for line in summary(done):
        progress.report(line)
    return 0


def _size(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def summary(done) -> list[str]:
    """What was written and how to load it in ComfyUI, one line each."""
    merged = f", LoRA merged ({done.lora_layers} layers)" if done.lora_layers and done.lora is None else ""
    lines = [f"wrote {done.backbone} ({done.preset}, {done.family}; {done.dtype}, {done.tensors} tensors, "
             f"{_size(done.bytes)}{merged}): ComfyUI Load Diffusion Model (models/diffusion_models/)"]
    if done.fp8_error is not None:
        lines.append(f"fp8: relative weight error {done.fp8_error_total:.2%} overall, {done.fp8_error:.2%} in the "
                     "worst layer (e4m3 rounds each weight to 3 mantissa bits)")
    if done.lora is not None:
        lines.append(f"wrote {done.lora} ({done.lora_preset} LoRA, {done.lora_layers} layers): ComfyUI "
                     f"LoraLoaderModelOnly (models/loras/) on {done.backbone.name}, strength 1 = {done.lora_preset}")
    return lines + list(done.notes)
