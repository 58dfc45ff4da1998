"""Writing a safetensors file ourselves: streamed tensor by tensor into a file we hold open.

The format (8-byte little-endian header length, a JSON header padded to 8 bytes, the tensors' bytes back to
back) is written here rather than by ``safetensors.torch.save_file`` so that the file is ours from the first
byte: no hidden temporary of the library's beside it (which a killed run would leave behind), a real ``OSError``
with its errno on a full disk, the bytes on disk (fsync) before the caller renames the file, and no second copy
of a large file in memory. ``safetensors.safe_open`` reads it like any other.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

_DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
           torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
           torch.bool: "BOOL", torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2"}


def _bytes(t: torch.Tensor) -> memoryview:
    """The tensor's bytes, row-major, without a copy when it is contiguous on the CPU."""
    flat = t.detach().to("cpu").contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy()).cast("B")


def write_safetensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
                      ) -> None:
    """``tensors`` (any device, any layout) into a new safetensors file at ``path``, flushed to disk (fsync)."""
    # largest element first (then by name, as safetensors orders them): every tensor starts at a multiple of
    # its element size, so a reader may map it without a copy
    tensors = dict(sorted(tensors.items(), key=lambda kv: (-kv[1].element_size(), kv[0])))
    header, offset = {}, 0
    for name, t in tensors.items():
        if t.dtype not in _DTYPES:
            raise ValueError(f"tensor '{name}' has dtype {t.dtype}, which a safetensors file cannot hold")
        size = t.numel() * t.element_size()
        header[name] = {"dtype": _DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + size]}
        offset += size
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for t in tensors.values():
            if t.numel():
                f.write(_bytes(t))
        f.flush()
        os.fsync(f.fileno())
