"""Writing safetensors files ourselves (core/files/tensors.py): what safetensors reads back is what was written."""
import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from core.files.tensors import write_safetensors


def test_every_dtype_and_layout_reads_back_exactly(tmp_path):
    g = torch.Generator().manual_seed(0)
    tensors = {"f32": torch.randn(2, 3, 4, generator=g), "bf16": torch.randn(5, generator=g).to(torch.bfloat16),
               "f16": torch.randn(3, 2, generator=g).half().t(),                  # not contiguous
               "i64": torch.arange(7), "u8": torch.arange(5, dtype=torch.uint8), "flag": torch.tensor([True, False]),
               "scalar": torch.tensor(3.5), "empty": torch.zeros(0, 4),
               "fp8": torch.randn(4, generator=g).to(torch.float8_e4m3fn)}
    path = tmp_path / "t.safetensors"
    write_safetensors(path, tensors, {"layout": "[B,C,T,H,W]", "n": 3})
    back = load_file(str(path))
    assert set(back) == set(tensors)
    for name, t in tensors.items():
        assert back[name].dtype == t.dtype and back[name].shape == t.shape
        assert torch.equal(back[name].view(torch.uint8) if t.dtype == torch.float8_e4m3fn else back[name],
                           t.contiguous().view(torch.uint8) if t.dtype == torch.float8_e4m3fn else t)
    with safe_open(str(path), "pt") as f:
        assert f.metadata() == {"layout": "[B,C,T,H,W]", "n": "3"}


def test_a_dtype_the_format_cannot_hold_is_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match="tensor 'z' has dtype torch.complex64, which a safetensors file cannot hold"):
        write_safetensors(tmp_path / "t.safetensors", {"z": torch.zeros(2, dtype=torch.complex64)})


def test_every_tensor_starts_at_a_multiple_of_its_element_size(tmp_path):
    path = tmp_path / "t.safetensors"
    write_safetensors(path, {"a_odd": torch.zeros(3, dtype=torch.uint8), "b": torch.zeros(3, dtype=torch.float16),
                             "c": torch.zeros(1, dtype=torch.float64), "d": torch.zeros(5, dtype=torch.int32)})
    header = json.loads(path.read_bytes()[8:8 + int.from_bytes(path.read_bytes()[:8], "little")])
    sizes = {"a_odd": 1, "b": 2, "c": 8, "d": 4}
    assert all(header[name]["data_offsets"][0] % size == 0 for name, size in sizes.items())
    assert int.from_bytes(path.read_bytes()[:8], "little") % 8 == 0     # the data begins 8-byte aligned
