"""The rolling sampler: its settings, what it refuses, its noise contract and its window (the published code's
calls are reproduced in tests/golden/test_rolling_forcing.py)."""
import pytest
import torch

from core.app.plan import sampling_config
from core.app.tiny import tiny_model
from core.sampling.loop import generate
from core.sampling.prompts import PromptSchedule, Segment

HW = (4, 6)


@pytest.fixture(scope="module")
def model():
    return tiny_model(3)


@pytest.fixture(scope="module")
def text():
    return torch.randn(1, 6, 32, generator=torch.Generator().manual_seed(1))


def test_choosing_rolling_brings_its_published_steps_window_and_anchor():
    cfg = sampling_config(sampler="rolling")
    assert (cfg.steps, cfg.window, cfg.sink, cfg.strategy) == ((1000, 800, 600, 400, 200), 21, 3, "native")
    assert "rolling window of 5 blocks" in cfg.block_sampler.describe(cfg)


@pytest.mark.parametrize("fields, message", [
    (dict(strategy="rag"), "strategy native only, not 'rag'"),
    (dict(strategy="memrope"), "strategy native only, not 'memrope'"),
    (dict(sink=1), "sink 1 must be the block size 3"),
    (dict(window=15), "at least 18"),
    (dict(window=20), "whole blocks of 3"),
    (dict(guidance_scale=3.0), "runs unguided: guidance scale 3"),
])
def test_settings_it_cannot_run_are_refused_in_one_line(fields, message):
    with pytest.raises(ValueError, match=message) as err:
        sampling_config(sampler="rolling", **fields)
    assert "\n" not in str(err.value)


def test_a_prompt_schedule_is_refused_before_the_first_model_call(model, text):
    schedule = PromptSchedule((Segment(0, text, "a"), Segment(9, text * 2, "b")))
    calls = []
    with pytest.raises(ValueError, match="takes one prompt; this prompt schedule has 2"):
        generate(model, schedule, 18, HW, 0, sampling_config(sampler="rolling"), cancel=lambda: calls.append(1))
    assert calls == []


def test_a_start_inside_a_block_is_refused(model, text):
    cfg = sampling_config(sampler="rolling", start_block="clamp")
    with pytest.raises(ValueError, match="whole blocks"):
        generate(model, text, 18, HW, 0, cfg, start=torch.zeros(1, 16, 1, *HW))


def test_every_block_gets_one_call_per_step_and_one_context_pass(model, text):
    calls = []
    cfg = sampling_config(sampler="rolling", steps=(1000, 750, 500, 250))
    generate(model, text, 27, HW, 0, cfg, cancel=lambda: calls.append(1))
    blocks, steps = 9, 4
    assert len(calls) == (blocks + steps - 1) + blocks       # window calls + context passes


def test_per_block_noise_makes_a_longer_video_begin_as_the_shorter_one_until_its_window_differs(model, text):
    """Per-block streams: block k's draws depend only on (seed, k); the first blocks that leave the window
    before the shorter video's end starts emptying the window are the same."""
    cfg = sampling_config(sampler="rolling", steps=(1000, 500))
    short = generate(model, text, 12, HW, 5, cfg).latents
    long = generate(model, text, 18, HW, 5, cfg).latents
    assert torch.equal(short[:, :, :9], long[:, :, :9])
    assert not torch.equal(short, generate(model, text, 12, HW, 6, cfg).latents)


def test_the_reference_contract_draws_window_sized_renoises(model, text):
    cfg = sampling_config(sampler="rolling", steps=(1000, 500), noise="reference")
    a = generate(model, text, 12, HW, 5, cfg).latents
    assert torch.equal(a, generate(model, text, 12, HW, 5, cfg).latents)
    assert not torch.equal(a, generate(model, text, 12, HW, 5, sampling_config(sampler="rolling", steps=(1000, 500))).latents)
