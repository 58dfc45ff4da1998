"""3D rotary position embedding of Wan2.1 (time, height, width); tables computed in float64.

Positions are given explicitly per frame so that both cache regimes share one function:
the native regime passes absolute frame indices, the retrieval regime passes positions
relative to the cache (and 0 for retrieved frames).

The angles and their cos/sin are always computed in float64 (as the reference does). The rotation
itself runs in float32 for float32/bf16/fp16 tensors (one complex64 multiply, no float64 copies:
2.4x cheaper on CPU, and consumer GPUs run float64 at a small fraction of their float32 rate) and in
float64 for float64 tensors. The float32 product differs from the reference's float64 product
rounded to float32 by about one float32 ulp; the golden cases' errors stay at ~3e-7.
"""
from __future__ import annotations

import torch

THETA = 10000.0


def axis_split(head_dim: int) -> tuple[int, int, int]:
    """Complex pairs per axis (time, height, width): [c - 2(c//3), c//3, c//3] with c = head_dim/2."""
    c = head_dim // 2
    return c - 2 * (c // 3), c // 3, c // 3


def _axis_freqs(positions: torch.Tensor, pairs: int) -> torch.Tensor:
    """Unit complex rotations [len(positions), pairs] (complex128) for one axis."""
    dim = 2 * pairs
    inv = 1.0 / torch.pow(THETA, torch.arange(0, dim, 2, dtype=torch.float64, device=positions.device) / dim)
    angles = torch.outer(positions.to(torch.float64), inv)
    return torch.polar(torch.ones_like(angles), angles)


def rope_table(frame_positions: torch.Tensor, height: int, width: int, head_dim: int) -> torch.Tensor:
    """Rotations for tokens laid out (frame, h, w): complex128 [F·H·W, 1, head_dim/2].

    frame_positions: [F] temporal position of each frame (any integers ≥ 0).
    """
    ct, ch, cw = axis_split(head_dim)
    f = frame_positions.numel()
    dev = frame_positions.device
    ft = _axis_freqs(frame_positions, ct)
    fh = _axis_freqs(torch.arange(height, device=dev), ch)
    fw = _axis_freqs(torch.arange(width, device=dev), cw)
    table = torch.cat([
        ft.view(f, 1, 1, ct).expand(f, height, width, ct),
        fh.view(1, height, 1, ch).expand(f, height, width, ch),
        fw.view(1, 1, width, cw).expand(f, height, width, cw),
    ], dim=-1)
    return table.reshape(f * height * width, 1, -1)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Complex dtype the rotation of a ``dtype`` tensor runs in."""
    return torch.complex128 if dtype == torch.float64 else torch.complex64


def apply_rope(x: torch.Tensor, table: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Rotate x [B, L, heads, head_dim] by table [L, 1, head_dim/2] (complex, any precision).

    Result in x's dtype, written into ``out`` (same shape, may be a slice of a bigger buffer) when given.
    Pass a table already in ``compute_dtype(x.dtype)`` to skip a per-call cast.
    """
    b, length, n, d = x.shape
    cdt = compute_dtype(x.dtype)
    real = torch.float64 if cdt == torch.complex128 else torch.float32
    xc = torch.view_as_complex(x.to(real).reshape(b, length, n, d // 2, 2))
    table = table.to(cdt)
    if out is not None and out.dtype == real and _complex_viewable(out):
        torch.mul(xc, table, out=torch.view_as_complex(out.unflatten(-1, (d // 2, 2))))
        return out
    rotated = torch.view_as_real(xc * table).flatten(3).to(x.dtype)
    if out is None:
        return rotated
    out.copy_(rotated)
    return out


def _complex_viewable(t: torch.Tensor) -> bool:
    """Whether ``t`` [.., d] can be viewed as complex in place (unit last stride, even other strides)."""
    return t.stride(-1) == 1 and all(s % 2 == 0 for s in t.stride()[:-1]) and t.storage_offset() % 2 == 0
