"""The benchmarks import what the library has: a name moved in core/ must move in benchmarks/ too (they are not
run by the suite, so nothing else would notice)."""
import ast
import importlib
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))


def core_imports(path: Path) -> list[tuple[str, str]]:
    return [(node.module, alias.name) for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "core"
            for alias in node.names]


@pytest.mark.parametrize("path", BENCHMARKS, ids=lambda p: p.name)
def test_every_core_name_a_benchmark_imports_exists(path):
    missing = [f"{module}.{name}" for module, name in core_imports(path)
               if not hasattr(importlib.import_module(module), name)
               and importlib.util.find_spec(f"{module}.{name}") is None]
    assert not missing, f"{path.name} imports {missing}"


def _speed_line_module():
    import sys
    sys.path.insert(0, str(BENCHMARKS[0].parent))
    return importlib.import_module("speed_line")


def _measured(sl, **changes):
    import torch
    fields = dict(block_s=0.8, blocks=6, latent_frames_per_block=8, time_stride=4, latent_hw=(44, 80),
                  spatial_stride=16, tokens_per_frame=880, steps="unipc sampler, UniPC 4 steps", forwards_per_block=10,
                  model="LongLive 2.0 (5B)", dtype=torch.bfloat16, device="NVIDIA Test GPU",
                  skipped="blocks before latent frame 32 (window filling, warm-up)", extra="guidance 3")
    return sl.Measured(**{**fields, **changes})


def test_speed_line_states_video_fps_and_how_it_was_measured():
    sl = _speed_line_module()
    line = sl.speed_line(_measured(sl))
    # 8 latent frames x 4 = 32 video frames in 0.8 s
    assert line.startswith("40.00 video fps (8 latent × 4 = 32 video frames per block in 800.0 ms, median of 6 blocks)")
    for part in ("NVIDIA Test GPU", "bf16", "1280×704 px (44×80 latents, 880 tokens per frame)", "UniPC 4 steps",
                 "10 backbone forwards per block incl. the context pass", "model LongLive 2.0 (5B)", "guidance 3",
                 "timed: the block loop", "excluded: text encoding, VAE decode, model load, blocks before latent frame 32"):
        assert part in line, part


def test_speed_line_video_frames_follow_the_temporal_stride():
    sl = _speed_line_module()
    m = _measured(sl, latent_frames_per_block=1, time_stride=4, block_s=0.25)
    assert m.video_frames_per_block == 4 and m.video_fps == 16.0
    assert sl.speed_line(m).startswith("16.00 video fps (1 latent × 4 = 4 video frames per block in 250.0 ms")


def test_forward_counter_counts_calls_and_cache_writes_per_block():
    sl = _speed_line_module()

    class Model:
        def forward(self, x):
            return x

        def write_cache(self, x):
            return None

    class Update:
        def __init__(self, block):
            self.block = block

    counter = sl.ForwardCounter()
    model = counter.count(Model())
    for block, steps in enumerate((4, 2)):
        for _ in range(steps):
            model.forward(1)
        model.write_cache(1)
        counter(Update(block))
    assert counter.per_block == {0: 5, 1: 3}
    counter.reset()
    model.forward(1)
    counter(Update(0))
    assert counter.per_block == {0: 1}


def test_device_name_on_cpu_names_the_threads_used():
    sl = _speed_line_module()
    assert sl.device_name("cpu", 1).endswith(" 1 thread of " + str(__import__("os").cpu_count()) + " cores")
    assert " 2 threads of " in sl.device_name("cpu", 2)
