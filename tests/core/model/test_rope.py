"""RoPE rotation: float32 within an ulp of the float64 reference, and rotation into a slice of a bigger buffer."""
import torch

import core.model.rope as rope_mod
from core.model.rope import apply_rope, rope_table


def test_float32_rotation_is_within_an_ulp_of_the_float64_reference():
    x = torch.randn(2, 96, 4, 128, generator=torch.Generator().manual_seed(0))
    table = rope_table(torch.arange(3, 4), 8, 12, 128)
    ref = (torch.view_as_complex(x.double().unflatten(-1, (64, 2))) * table)
    ref = torch.view_as_real(ref).flatten(3)
    got = apply_rope(x, table.to(rope_mod.compute_dtype(x.dtype)))
    assert got.dtype == torch.float32
    assert ((got.double() - ref).abs() <= 2.5e-7 * ref.abs().clamp_min(1.0)).all()


def test_rotation_into_a_slice_of_a_bigger_buffer_leaves_the_rest_alone():
    x = torch.randn(2, 6, 2, 8)
    table = rope_table(torch.arange(6), 1, 1, 8)
    buf = torch.zeros(2, 10, 2, 8)
    apply_rope(x, table, out=buf[:, 2:8])
    assert torch.equal(buf[:, 2:8], apply_rope(x, table))
    assert not buf[:, :2].any() and not buf[:, 8:].any()
