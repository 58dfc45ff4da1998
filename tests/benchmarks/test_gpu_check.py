"""benchmarks/gpu_check.py's CPU part: the FLOP counter, the floor probe and the report writer."""
import subprocess
import sys

import torch

from paths import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))      # the benchmarks are scripts, not a package

import gpu_check  # noqa: E402


def test_cpu_self_check_counts_flops_by_hand_and_round_trips_the_report():
    out = gpu_check.self_check()
    assert out["flops"]["total"] > 0 and out["floor_s"] > 0


def test_without_cuda_the_script_says_so_in_one_line_and_exits_0():
    if torch.cuda.is_available():
        return
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py")], capture_output=True, text=True)
    assert res.returncode == 0
    lines = [line for line in res.stdout.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("no CUDA device")
