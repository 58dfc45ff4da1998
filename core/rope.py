"""3D rotary position embedding of Wan2.1 (time, height, width), computed in float64.

Positions are given explicitly per frame so that both cache regimes share one function:
the native regime passes absolute frame indices, the retrieval regime passes positions
relative to the cache (and 0 for retrieved frames).
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


def apply_rope(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Rotate x [B, L, heads, head_dim] by table [L, 1, head_dim/2]; math in float64, result in x's dtype."""
    b, length, n, d = x.shape
    xc = torch.view_as_complex(x.to(torch.float64).reshape(b, length, n, d // 2, 2))
    return torch.view_as_real(xc * table).flatten(3).to(x.dtype)
