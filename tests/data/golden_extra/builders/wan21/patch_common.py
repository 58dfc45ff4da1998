"""Make a CPU-runnable copy of a reference tree: exact text replacements (each must match exactly once),
recorded as a list of {file, line, reason} plus a unified diff.

Usage: prepare(src_dir, dst_dir, patches) -> (patch_list, unified_diff_text)
"""
from __future__ import annotations

import difflib
import shutil
from pathlib import Path

# Patches shared by every Self-Forcing-derived tree (LongLive 1.0, LongLive-RAG): CUDA touched at import,
# flash-attn absent (cross-attention calls flash_attention directly), the SDPA fallback casts to bf16.
COMMON = [
    ("utils/memory.py",
     "gpu = torch.device(f'cuda:{torch.cuda.current_device()}')",
     "gpu = torch.device(f'cuda:{torch.cuda.current_device()}') if torch.cuda.is_available() else torch.device('cpu')",
     "import-time CUDA call; cpu when CUDA is absent"),
    ("wan/modules/t5.py",
     "        device=torch.cuda.current_device(),",
     "        device=torch.cuda.current_device() if torch.cuda.is_available() else 'cpu',",
     "import-time CUDA call (default argument); cpu when CUDA is absent"),
    ("wan/__init__.py",
     "from .image2video import WanI2V\nfrom .text2video import WanT2V\n",
     "# CPU golden build: WanI2V/WanT2V not imported (they need packages not installed and are unused)\n",
     "skip WanI2V/WanT2V imports (unused; their imports need absent packages)"),
    ("wan/modules/attention.py",
     "    half_dtypes = (torch.float16, torch.bfloat16)\n    assert dtype in half_dtypes\n"
     "    assert q.device.type == 'cuda' and q.size(-1) <= 256\n",
     "    half_dtypes = (torch.float16, torch.bfloat16)\n"
     "    if not (FLASH_ATTN_2_AVAILABLE or FLASH_ATTN_3_AVAILABLE):  # CPU golden build: SDPA in the input dtype\n"
     "        assert q_lens is None\n"
     "        out = torch.nn.functional.scaled_dot_product_attention(\n"
     "            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=causal, dropout_p=dropout_p)\n"
     "        return out.transpose(1, 2).contiguous()\n"
     "    assert dtype in half_dtypes\n"
     "    assert q.device.type == 'cuda' and q.size(-1) <= 256\n",
     "flash_attention -> torch SDPA in float32 when flash-attn is absent (cross-attention, no mask; k_lens unused "
     "by the callers here: context_lens is None)"),
    ("wan/modules/attention.py",
     "        q = q.transpose(1, 2).to(dtype)\n        k = k.transpose(1, 2).to(dtype)\n        v = v.transpose(1, 2).to(dtype)\n",
     "        q = q.transpose(1, 2)  # CPU golden build: keep float32 (no cast to the bf16 default)\n"
     "        k = k.transpose(1, 2)\n        v = v.transpose(1, 2)\n",
     "SDPA fallback of attention(): keep float32 (no cast to the bf16 default dtype)"),
]


def prepare(src: Path, dst: Path, patches: list[tuple[str, str, str, str]]):
    src, dst = Path(src), Path(dst)
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    records, diffs = [], []
    for rel, old, new, reason in patches:
        path = dst / rel
        text = path.read_text()
        n = text.count(old)
        if n != 1:
            raise SystemExit(f"patch for {rel} matched {n} times (expected 1): {old[:60]!r}")
        line = text[:text.index(old)].count("\n") + 1
        patched = text.replace(old, new)
        diffs.append("".join(difflib.unified_diff(text.splitlines(True), patched.splitlines(True),
                                                  f"a/{rel}", f"b/{rel}", n=1)))
        path.write_text(patched)
        records.append({"file": rel, "line": line, "reason": reason})
    return records, "".join(diffs)
