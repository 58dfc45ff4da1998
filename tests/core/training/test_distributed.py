"""Prompt lists are sharded across torchrun processes: every item exactly once, a finished run not redone."""
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from core.training.distributed import Rank, shard

from paths import GOLDEN, ROOT


@pytest.mark.parametrize("world", [1, 2, 3, 5])
def test_round_robin_shards_cover_every_item_once(world):
    items = list(range(11))
    got = sorted(i for r in range(world) for i, _ in shard(items, Rank(r, world, r)))
    assert got == items


def test_two_cpu_processes_under_torchrun_split_the_work_without_duplicates(tmp_path):
    if not torch.distributed.is_gloo_available():
        pytest.skip("gloo backend not available")
    emb = tmp_path / "batch.safetensors"
    save_file({"prompt_embeds": torch.randn(5, 8, 64, generator=torch.Generator().manual_seed(0))}, str(emb))
    out = tmp_path / "corpus"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29541",
           "-m", "core", "build-corpus", "--backbone", str(GOLDEN / "wan_tiny_t2v_bare.safetensors"), "--num-heads", "2",
           "--embeds", str(emb), "--frames", "6", "--latent-size", "8x12", "--device", "cpu", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in out.glob("*.safetensors")) == [f"batch_{i:03d}.safetensors" for i in range(5)]
    assert proc.stderr.count("[rank 0]") == 3 and proc.stderr.count("[rank 1]") == 2
    # a second run finds everything done and writes nothing
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "[rank" not in again.stderr
