"""The planner's memory check (core/app/plan.py ``check_memory``): a run the memory that exists cannot hold is
refused before anything is allocated, in one line with the numbers and what to change; what fits runs."""
import pytest
import torch

from core.app import plan as planner
from core.app.plan import RunRequest, check_memory, plan_run
from core.app.tiny import tiny_config
from core.model.transformer import WanTransformer
from core.retrieval.config import PoolConfig, RetrievalConfig
from core.sampling.budget import LATENT_COPIES
from core.app.default_family import default_family
from core.sampling.request import SamplingRequest

GIB = 2**30
FAMILY = default_family().defaults


@pytest.fixture
def meta_model():
    with torch.device("meta"):
        return WanTransformer(tiny_config())


@pytest.fixture
def ram(monkeypatch):
    """Pretend this much RAM (GiB) is free, and a roomy disk."""
    def set_free(gib):
        monkeypatch.setattr(planner, "host_available", lambda: int(gib * GIB))
    monkeypatch.setattr(planner, "disk_free", lambda folder: 10**15)
    set_free(64)
    return set_free


def plan(frames, hw=(128, 128), pool=None, strategy="native"):
    retrieval = RetrievalConfig(pool=pool) if pool is not None else None
    return plan_run(RunRequest(SamplingRequest(strategy=strategy, retrieval=retrieval), frames=frames, latent_hw=hw),
                    FAMILY)


def refusal(*args, **kwargs) -> str:
    with pytest.raises(ValueError) as err:
        check_memory(*args, **kwargs)
    assert "\n" not in str(err.value)
    return str(err.value)


def test_a_video_whose_latents_exceed_the_ram_is_refused_naming_how_much_fits(meta_model, ram):
    ram(2)
    long = plan(3000)                                     # 3000 × 16 × 128 × 128 × 4 bytes, three times: 9 GiB
    message = refusal(long, meta_model, 1, "cpu", torch.float32)
    assert message.startswith("this run needs ") and "of RAM (the video's latents ×3 " in message
    assert "but 2.0 GiB is free: make the video shorter (about " in message
    fits = int(message.split("(about ")[1].split(" latent frames")[0])
    assert 0 < fits < 3000 and fits % FAMILY.frames_per_block == 0
    need = check_memory(plan(fits), meta_model, 1, "cpu", torch.float32)        # the number it names does fit
    assert LATENT_COPIES * need.latents < 2 * GIB


def test_what_fits_is_returned_as_the_estimate(meta_model, ram):
    need = check_memory(plan(120, (8, 12)), meta_model, 2, "cpu", torch.float32)
    assert need.latents == 2 * 120 * 16 * 8 * 12 * 4                         # batch 2, float32 [B, T, C, H, W]
    assert need.device.weights == sum(p.numel() for p in meta_model.parameters()) * 4


def test_a_gpu_too_small_for_the_cache_is_refused_with_its_own_numbers(meta_model, ram):
    wide = plan(24, (512, 512))                           # 65536 tokens per frame: a large window cache
    need = check_memory(wide, meta_model, 1, "cuda", torch.bfloat16, device_room=64 * GIB)
    message = refusal(wide, meta_model, 1, "cuda", torch.bfloat16, device_room=need.working // 2)
    assert " of cuda memory (" in message and "the KV cache" in message
    assert message.endswith("or the window shorter, or leave the memory settings on auto (shared context buffers, "
                            "block swap, an fp8 KV cache)")


def test_weights_already_on_the_device_are_not_counted_again(ram):
    model = WanTransformer(tiny_config(dim=256, layers=4))
    small = plan(12, (8, 12))
    need = check_memory(small, model, 1, "cpu", torch.float32)
    ram(need.device.weights / GIB)                        # the weights alone would fill the RAM left
    check_memory(small, model, 1, "cpu", torch.float32)   # they are in RAM already: nothing more is asked
    with torch.device("meta"):
        unloaded = WanTransformer(tiny_config(dim=256, layers=4))
    assert "the weights" in refusal(small, unloaded, 1, "cpu", torch.float32)


def test_an_unlimited_history_pool_beyond_the_ram_is_refused_and_auto_spills_to_disk(meta_model, ram, monkeypatch):
    ram(4)
    unlimited = plan(600, pool=PoolConfig(budget_mb=None), strategy="rag")
    message = refusal(unlimited, meta_model, 1, "cpu", torch.float32)
    assert "the History Pool " in message and "give it the auto budget" in message
    auto = plan(600, pool=PoolConfig(), strategy="rag")
    need = check_memory(auto, meta_model, 1, "cpu", torch.float32)           # the pool goes to disk beyond RAM
    assert need.host + need.pool > 4 * GIB
    monkeypatch.setattr(planner, "disk_free", lambda folder: 2**20)
    assert "the History Pool spills " in refusal(auto, meta_model, 1, "cpu", torch.float32)
