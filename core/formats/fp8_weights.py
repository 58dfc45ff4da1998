"""The weights setting of a backbone load: where a checkpoint's block projections live on the device.

    "native"  every weight in the compute dtype (an fp8 file is de-quantised at load: saves disk, not memory)
    "fp8"     the block projections (core/model/fp8_linear.py ``fp8_layer_names``) kept as fp8 with one float32
              scale per output row: an fp8 file's own weights and scales as they are (a per-tensor scale becomes
              per-row scales of equal value), a wider checkpoint quantised per row at load; the rest in the
              compute dtype
    "auto"    "fp8" when the file's block projections are already fp8 and the compute device is CUDA, else
              "native" (never fp8 on a CPU). A front end that knows the device's free memory may resolve it
              itself (``weight_bytes`` gives each choice's bytes) and pass "native" or "fp8".
"""
from __future__ import annotations

import torch

from ..files.safe_reader import CheckpointError
from ..model.fp8_linear import FP8_DTYPES, WEIGHTS, Fp8Linear, quantise_rows
from .wan_names import scaled


def check_weights(setting: str) -> None:
    """Refuse a weights setting that is not "auto", "native" or "fp8" (before any file is read)."""
    if setting not in WEIGHTS:
        raise CheckpointError(f"weights setting {setting!r} is not one of {', '.join(WEIGHTS)}; choose 'auto' (fp8 "
                              "for an fp8 file on a CUDA GPU), 'native' (the compute dtype) or 'fp8'")


def resolve_weights(setting: str, *, file_fp8: bool, device: str | torch.device) -> str:
    """The weights setting ("auto" | "native" | "fp8") → "native" or "fp8" (see the module docstring)."""
    check_weights(setting)
    if setting == "auto":
        return "fp8" if file_fp8 and torch.device(device).type == "cuda" else "native"
    return setting


def holds_fp8(state: dict) -> bool:
    """Whether a bare-named state's block projections are stored as fp8 (an fp8 checkpoint)."""
    return any(k.startswith("blocks.") and v.dim() == 2 and v.dtype in FP8_DTYPES for k, v in state.items())


def fp8_tensors(layer: str, state: dict, scales: dict, device, dtype) -> dict:
    """The tensors of one ``Fp8Linear`` named ``layer`` from the state (its entries are taken out of ``state``):
    an fp8 weight with its scale (or 1) as stored, any other weight (its scale applied) quantised per row on
    the host; the bias in ``dtype``. All copied to ``device`` (never aliasing a memory-mapped file)."""
    key = f"{layer}.weight"
    w, scale = state.pop(key), scales.get(key)
    if w.dtype in FP8_DTYPES:
        rows = torch.ones(w.shape[0], dtype=torch.float32, device=w.device) if scale is None else \
            scale.float().to(w.device).expand(w.shape[0])
    else:
        w, rows = quantise_rows(w if scale is None else scaled(w, scale))
    out = {key: w.to(device=device, copy=True), f"{layer}.weight_scale": rows.to(device=device, copy=True)}
    if f"{layer}.bias" in state:
        out[f"{layer}.bias"] = state.pop(f"{layer}.bias").to(device=device, dtype=dtype, copy=True)
    return out


def fill_tensors(model: torch.nn.Module, state: dict, scales: dict, device, dtype) -> dict:
    """Every tensor of ``model`` (built on the meta device, its fp8 layers already ``Fp8Linear``) from ``state``
    (emptied as it goes: one tensor at a time is converted, no second copy of the model): ``Fp8Linear`` layers
    by ``fp8_tensors``, everything else in ``dtype`` (a scaled weight de-quantised first, in float32)."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, Fp8Linear) and f"{name}.weight" in state:
            out.update(fp8_tensors(name, state, scales, device, dtype))
    for key in list(state):
        w = state.pop(key)
        # copy=True: never alias a memory-mapped file (it could change on disk or stay locked on Windows).
        out[key] = (scaled(w, scales[key]) if key in scales else w).to(device=device, dtype=dtype, copy=True)
    return out

