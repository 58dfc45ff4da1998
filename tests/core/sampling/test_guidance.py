"""Guidance over a second KV cache (core/sampling/guidance.py) and the clean re-cache at a cut: the negative cache
follows every step of the run's cache on every strategy that takes it, the refusals are one line each, and the
memory estimate and the dry run count the second cache."""
import pytest
import torch

from core.app.plan import sampling_config
from core.app.tiny import tiny_model
from core.families.wan22_ti2v import DEFAULTS as LL2
from core.sampling.budget import device_bytes
from core.sampling.loop import generate
from core.sampling.prompts import PromptSchedule, Segment, as_schedule

EMB = torch.randn(1, 8, 32, generator=torch.Generator().manual_seed(5))
NEG = torch.randn(1, 8, 32, generator=torch.Generator().manual_seed(6))


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=3)


@pytest.mark.parametrize("strategy", ["native", "memrope", "deep-forcing", "infinity-rope"])
def test_a_negative_prompt_equal_to_the_prompt_leaves_every_strategy_unguided_bit_for_bit(model, strategy):
    """uncond == cond exactly only if the negative cache saw exactly what the run's cache saw (evictions, memory
    folds, compression, flushes): the guided run then equals the plain one; another negative prompt moves it."""
    plain = generate(model, EMB, 24, (4, 6), 1, sampling_config(strategy=strategy, window=9 if strategy != "deep-forcing" else None))
    cfg = sampling_config(strategy=strategy, window=9 if strategy != "deep-forcing" else None, guidance_scale=3.0)
    same = generate(model, as_schedule(EMB, EMB), 24, (4, 6), 1, cfg)
    other = generate(model, as_schedule(EMB, NEG), 24, (4, 6), 1, cfg)
    assert torch.equal(same.latents, plain.latents)
    assert not torch.allclose(other.latents, plain.latents, atol=1e-4)
    assert same.cache_bytes == 2 * plain.cache_bytes


def test_a_schedule_switch_re_caches_both_caches(model):
    """With a switch that re-caches, the negative cache is re-encoded too (under the negative prompt): a prompt
    schedule whose two prompts are equal, guided by that same prompt, is still the unguided run."""
    schedule = PromptSchedule((Segment(0, EMB), Segment(9, EMB.clone())))
    cfg = sampling_config(strategy="native", window=9)
    plain = generate(model, schedule, 24, (4, 6), 1, cfg)
    guided = generate(model, as_schedule(schedule, EMB), 24, (4, 6), 1,
                      sampling_config(strategy="native", window=9, guidance_scale=2.0))
    assert plain.switches[0]["recache"] is not None
    assert torch.equal(plain.latents, guided.latents)


def test_guidance_without_a_negative_prompt_names_the_inputs_that_give_one(model):
    with pytest.raises(ValueError, match=r"guidance scale 3 needs a negative prompt.*--negative-prompt.*negative input"):
        generate(model, EMB, 6, (4, 6), 1, sampling_config(guidance_scale=3.0))


@pytest.mark.parametrize("changes, says", [
    (dict(strategy="rag", guidance_scale=3.0), "which retrieval \\(strategy rag\\) has no history pool"),
    (dict(guidance_scale=-1.0), "guidance scale -1.0 must be a number ≥ 0"),
    (dict(shot_clean_recache=True, shot_sink=False), "shot_clean_recache clears the cache down to the sink"),
])
def test_settings_that_cannot_run_are_refused_in_one_line(changes, says):
    with pytest.raises(ValueError, match=says) as err:
        sampling_config(LL2, **changes)
    assert "\n" not in str(err.value)


def test_the_estimate_counts_the_second_cache_the_run_holds(model):
    """(At the published size benchmarks/vram.py measures the dry run against the estimate: LongLive 2.0 native,
    guidance 3, 29.57 vs 29.54 GiB.)"""
    plain, guided = sampling_config(strategy="native", window=9), sampling_config(strategy="native", window=9,
                                                                                 guidance_scale=3.0)
    a, b = (device_bytes(model, c, (4, 6), 1, torch.float32) for c in (plain, guided))
    assert (b.cache, b.text, b.weights) == (2 * a.cache, 2 * a.text, a.weights)
    run = generate(model, as_schedule(EMB, NEG), 15, (4, 6), 1, guided)
    assert b.cache <= run.cache_bytes < 1.1 * b.cache      # both caches' K/V (+ their RoPE tables)
