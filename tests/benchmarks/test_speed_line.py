"""benchmarks/speed_line.py: the one line every speed figure is printed in, and the forward counter behind it."""
import os
import sys

from paths import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))      # the benchmarks are scripts, not a package

import speed_line  # noqa: E402


def _measured(**changes):
    import torch
    fields = dict(block_s=0.8, blocks=6, latent_frames_per_block=8, time_stride=4, latent_hw=(44, 80),
                  spatial_stride=16, tokens_per_frame=880, steps="unipc sampler, UniPC 4 steps", forwards_per_block=10,
                  model="LongLive 2.0 (5B)", dtype=torch.bfloat16, device="NVIDIA Test GPU",
                  skipped="blocks before latent frame 32 (window filling, warm-up)", extra="guidance 3")
    return speed_line.Measured(**{**fields, **changes})


def test_speed_line_states_video_fps_and_how_it_was_measured():
    line = speed_line.speed_line(_measured())
    # 8 latent frames x 4 = 32 video frames in 0.8 s
    assert line.startswith("40.00 video fps (8 latent × 4 = 32 video frames per block in 800.0 ms, median of 6 blocks)")
    for part in ("NVIDIA Test GPU", "bf16", "1280×704 px (44×80 latents, 880 tokens per frame)", "UniPC 4 steps",
                 "10 backbone forwards per block incl. the context pass", "model LongLive 2.0 (5B)", "guidance 3",
                 "timed: the block loop", "excluded: text encoding, VAE decode, model load, blocks before latent frame 32"):
        assert part in line, part


def test_speed_line_video_frames_follow_the_temporal_stride():
    m = _measured(latent_frames_per_block=1, time_stride=4, block_s=0.25)
    assert m.video_frames_per_block == 4 and m.video_fps == 16.0
    assert speed_line.speed_line(m).startswith("16.00 video fps (1 latent × 4 = 4 video frames per block in 250.0 ms")


def test_forward_counter_counts_calls_and_cache_writes_per_block():

    class Model:
        def forward(self, x):
            return x

        def write_cache(self, x):
            return None

    class Update:
        def __init__(self, block):
            self.block = block

    counter = speed_line.ForwardCounter()
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
    assert speed_line.device_name("cpu", 1).endswith(" 1 thread of " + str(os.cpu_count()) + " cores")
    assert " 2 threads of " in speed_line.device_name("cpu", 2)
