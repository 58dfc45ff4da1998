"""fp8 weights kept as fp8 on the device: a weight-only fp8 linear layer, and the swap of a transformer's block
projections for it.

``Fp8Linear`` stores its weight [out, in] as float8 (e4m3fn, or e5m2 when a file holds that) with one float32
scale per output row ``weight_scale`` [out] (weight ≈ fp8 · scale), and its bias in the compute dtype. Its
forward upcasts the fp8 weight to the input's dtype for this one layer (the copy is freed when the layer
returns, so the device holds the fp8 weights plus one layer's upcast copy) and applies the row scales to the
output: y = (x · W_fp8ᵀ) · scale + bias, the same product as x · (W_fp8 · scale)ᵀ.

A quantised row keeps amax(|row|) / 448 as its scale (448: the largest e4m3fn value), so each element is
rounded to 3 mantissa bits: |w − ŵ| ≤ max(|w| / 16, scale / 1024) (the second term: values below e4m3's
smallest normal, 2⁻⁶, round to multiples of 2⁻⁹).

Which layers: every ``nn.Linear`` inside the transformer's ``blocks`` (for Wan: self- and cross-attention
q/k/v/o and the two FFN layers: nearly all the weights). Embeddings, the head, norms and modulation stay in
the compute dtype; so does the first parameter (the patch embedding), which tells the AR loop the run's
device and compute dtype (core/model/backbone.py).

``torch._scaled_mm`` (fp8 × fp8 on CUDA sm_89+) is used only when a layer's ``scaled_mm`` is set and the
device has it: the input is then quantised too (one scale per token). That path is small, guarded, and not
exercised by the tests (there is no such GPU here); the default upcast path is.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

FP8 = torch.float8_e4m3fn
FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)
FP8_MAX = torch.finfo(FP8).max          # 448
WEIGHTS = ("auto", "native", "fp8")     # the weights setting; "auto" is resolved by the loader
SCALE_BYTES = 4                         # one float32 scale per output row


def quantise_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """weight [out, in] (any float dtype) → (e4m3fn [out, in], float32 scale [out]) with weight ≈ q · scale:
    each row scaled so its largest magnitude becomes 448. An all-zero row gets scale 1."""
    if weight.is_meta:        # shapes only (and torch's first meta abs() costs seconds)
        return (torch.empty(weight.shape, dtype=FP8, device="meta"),
                torch.empty(weight.shape[0], dtype=torch.float32, device="meta"))
    w = weight.float()
    amax = w.abs().amax(dim=1)
    scale = torch.where(amax > 0, amax / FP8_MAX, torch.ones_like(amax))
    q = (w / scale[:, None]).clamp_(-FP8_MAX, FP8_MAX).to(FP8)
    return q, scale


class Fp8Linear(nn.Module):
    """y = x · (weight · weight_scale)ᵀ + bias with ``weight`` [out, in] fp8, ``weight_scale`` [out] float32,
    ``bias`` [out] in the compute dtype. x [..., in] in the compute dtype → y [..., out], same dtype."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, dtype: torch.dtype = FP8,
                 bias_dtype: torch.dtype | None = None, device=None):
        super().__init__()
        if dtype not in FP8_DTYPES:
            raise ValueError(f"Fp8Linear: weight dtype {dtype} is not fp8; expected one of {FP8_DTYPES}")
        self.in_features, self.out_features = in_features, out_features
        self.scaled_mm = False          # use torch._scaled_mm where the device has it (see the module docstring)
        self.weight = nn.Parameter(torch.empty(out_features, in_features, dtype=dtype, device=device),
                                   requires_grad=False)
        self.register_buffer("weight_scale", torch.ones(out_features, dtype=torch.float32, device=device))
        self.bias = nn.Parameter(torch.empty(out_features, dtype=bias_dtype, device=device), requires_grad=False) \
            if bias else None

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "Fp8Linear":
        """The fp8 copy of ``linear`` (its weight quantised per row; the bias kept, in its dtype and device)."""
        w = linear.weight.detach()
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None,
                    bias_dtype=w.dtype, device=w.device)
        q, scale = quantise_rows(w)
        layer.weight.data, layer.weight_scale = q, scale
        if linear.bias is not None:
            layer.bias.data = linear.bias.detach()
        return layer

    def dequantised(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The weight [out, in] the layer computes with, in ``dtype``."""
        return (self.weight.float() * self.weight_scale[:, None]).to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scaled_mm and _has_scaled_mm(x, self.weight):
            return self._scaled_mm(x)
        y = F.linear(x, self.weight.to(x.dtype))          # this layer's upcast copy lives only in this call
        y.mul_(self.weight_scale.to(x.dtype))
        return y if self.bias is None else y.add_(self.bias.to(x.dtype))

    def _scaled_mm(self, x: torch.Tensor) -> torch.Tensor:
        """fp8 × fp8 with one scale per token (input) and per output row (weight); CUDA sm_89+ only."""
        rows = x.reshape(-1, self.in_features)
        x_scale = (rows.abs().amax(dim=1, keepdim=True).float() / FP8_MAX).clamp_(min=1e-12)
        xq = (rows / x_scale).clamp_(-FP8_MAX, FP8_MAX).to(FP8)
        y = torch._scaled_mm(xq, self.weight.t(), scale_a=x_scale, scale_b=self.weight_scale[None, :],
                             bias=None if self.bias is None else self.bias.to(x.dtype), out_dtype=x.dtype)
        return y.reshape(*x.shape[:-1], self.out_features)

    def _apply(self, fn, recurse=True):
        """``.to(device)`` moves the layer; a dtype change (``model.to(torch.bfloat16)``) reaches the bias only:
        the weight stays fp8 and the scales float32 (the originals, moved: a bfloat16 scale would lose bits)."""
        weight, scale = self.weight.data, self.weight_scale
        super()._apply(fn, recurse)
        if self.weight.dtype != weight.dtype:
            self.weight.data = weight.to(self.weight.device)
        if self.weight_scale.dtype != scale.dtype:
            self.weight_scale = scale.to(self.weight_scale.device)
        return self

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, weight={str(self.weight.dtype).replace('torch.', '')}")


def _has_scaled_mm(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return (x.device.type == "cuda" and weight.dtype == FP8 and x.dtype in (torch.bfloat16, torch.float16)
            and hasattr(torch, "_scaled_mm") and torch.cuda.get_device_capability(x.device) >= (8, 9)
            and weight.shape[0] % 16 == 0 and weight.shape[1] % 16 == 0)


# ------------------------------------------------------------------------------ the model's fp8 layers
def fp8_layer_names(model: nn.Module) -> list[str]:
    """Module names of the layers kept in fp8: every ``nn.Linear`` or ``Fp8Linear`` inside ``model.blocks``
    (e.g. "blocks.0.self_attn.q", "blocks.0.ffn.0")."""
    return [f"blocks.{name}" for name, m in model.blocks.named_modules() if isinstance(m, (nn.Linear, Fp8Linear))]


def to_fp8(model: nn.Module, *, scaled_mm: bool = False) -> nn.Module:
    """Swap the block projections (``fp8_layer_names``) of ``model`` for ``Fp8Linear`` layers in place,
    quantising their weights per output row; everything else is untouched. Works on the meta device (shapes
    only). ``scaled_mm``: let the layers use torch._scaled_mm where the GPU has it. Returns ``model``."""
    for name in fp8_layer_names(model):
        parent, _, leaf = name.rpartition(".")
        owner = model.get_submodule(parent)
        layer = owner.get_submodule(leaf)
        if not isinstance(layer, Fp8Linear):
            layer = Fp8Linear.from_linear(layer)
            owner.register_module(leaf, layer)
        layer.scaled_mm = scaled_mm
    return model


def weight_bytes(model: nn.Module, dtype: torch.dtype, weights: str = "native") -> int:
    """Device bytes of ``model``'s weights (parameters and buffers) with the compute dtype ``dtype``, under the
    weights setting ``weights``: "native" = every tensor in ``dtype``; "fp8" = the block projections
    (``fp8_layer_names``) at 1 byte per element plus a float32 scale per output row, the rest in ``dtype``.
    ``model`` may be on the meta device and may already hold ``Fp8Linear`` layers (counted as the setting says)."""
    if weights not in ("native", "fp8"):
        raise ValueError(f"weight_bytes: weights {weights!r} is not a resolved setting; expected 'native' or 'fp8' "
                         "(resolve 'auto' with core.formats.resolve_weights first)")
    itemsize = torch.finfo(dtype).bits // 8
    fp8 = set(fp8_layer_names(model)) if weights == "fp8" else set()
    total = 0
    for name, m in model.named_modules():
        own = [t for t in [*m.parameters(recurse=False), *m.buffers(recurse=False)] if t is not None]
        if name in fp8:
            w = m.weight
            total += w.numel() + SCALE_BYTES * w.shape[0] + (0 if m.bias is None else m.bias.numel() * itemsize)
        elif isinstance(m, Fp8Linear):      # de-quantised to the compute dtype ("native")
            total += (m.weight.numel() + (0 if m.bias is None else m.bias.numel())) * itemsize
        else:
            total += sum(t.numel() for t in own) * itemsize
    return total
