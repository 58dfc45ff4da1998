"""The real-size dry run (core/app/dry_run.py): the same memory trace on the meta device and on real tensors
agree, the estimate (core/sampling/budget.py) agrees with both, and the planner's auto memory choice."""
import pytest
import torch

from core.app.dry_run import trace_run
from core.app.plan import choose_memory, memory_choices, strategy_config
from core.files.memory_trace import HOST, MemoryTrace, allocating, label
from core.sampling.budget import device_bytes
from core.sampling.memory import MemorySettings

from factory import tiny_model

HW = (8, 12)
CASES = [("native", MemorySettings("per-layer", "exact", 0)), ("rag", MemorySettings("per-layer", "exact", 0)),
         ("rag", MemorySettings("shared", "exact", 0)), ("rag", MemorySettings("shared", "fp8", 0)),
         ("memrope", MemorySettings("shared", "exact", 0)), ("native", MemorySettings("per-layer", "fp8", 0)),
         ("rag", MemorySettings("shared", "exact", 3)), ("native", MemorySettings("shared", "fp8", 4))]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return tiny_model(0, dim=128, layers=4, heads=2, text_dim=32)


@pytest.mark.parametrize("strategy, memory", CASES, ids=[f"{s}-{m.context}-{m.kv}-swap{m.block_swap}" for s, m in CASES])
def test_the_dry_run_measures_what_real_tensors_hold_and_the_estimate_agrees(model, strategy, memory):
    cfg = strategy_config(strategy)
    with torch.no_grad():
        dry = trace_run(model, cfg, HW, memory=memory)
        real = trace_run(model, cfg, HW, memory=memory, dry=False)
    assert abs(dry.peak / real.peak - 1) < 0.05, (dry.kinds(), real.kinds())
    assert dict(dry.kinds())["weights"] == dict(real.kinds())["weights"]
    assert dict(dry.kinds())["kv cache"] == dict(real.kinds())["kv cache"]
    estimate = device_bytes(model, cfg, HW, 1, torch.float32, memory).total
    assert abs(estimate / real.peak - 1) < 0.10, (estimate, real.kinds())
    if strategy == "rag":
        assert dict(real.kinds()).get("retrieved") or dict(real.kinds()).get("context")
    if memory.block_swap:          # the swapped blocks' weights are in RAM, at most two of them on the device
        block = sum(p.numel() * 4 for p in model.blocks[0].parameters())
        all_weights = sum(p.numel() * 4 for p in (*model.parameters(), *model.buffers()))
        assert dict(dry.kinds())["weights"] <= all_weights - (memory.block_swap - 2) * block
    assert real.host_peak > 0        # the video's latents are counted in RAM, not on the device


def test_the_trace_counts_a_storage_once_while_any_view_lives_and_keeps_ram_apart():
    with MemoryTrace("cpu") as trace:
        a = torch.zeros(1024)                     # 4 KiB
        view = a[:10]
        del a
        assert trace.live().device == 4096        # the view keeps the storage alive
        del view
        assert trace.live().device == 0
        with allocating(HOST):
            ram = torch.zeros(2048)
        kv = torch.zeros(256)
        label("kv cache", kv)
        assert trace.live().by_kind == {HOST: 8192, "kv cache": 1024}
    assert trace.peak == 4096 and trace.host_peak == 8192
    del ram, kv


def test_auto_memory_picks_lossless_and_fast_first_and_compact_only_when_needed():
    with torch.device("meta"):
        from core.model.transformer import WanConfig, WanTransformer
        model = WanTransformer(WanConfig(dim=1536, ffn_dim=8960, num_layers=30, num_heads=12, in_dim=16, out_dim=16))
    model = model.to(torch.bfloat16)
    plan = (strategy_config("rag"), (60, 104))
    need = {m: device_bytes(model, *plan, 1, torch.bfloat16, m).needed for m in memory_choices(MemorySettings(), 30, "cuda")}

    def pick(room_gib):
        return choose_memory(plan, model, 1, "cuda", torch.bfloat16, device_room=int(room_gib * 2**30))
    roomy = pick(64)
    assert roomy.settings == MemorySettings("per-layer", "exact", 0) and roomy.fits
    per_layer = need[MemorySettings("per-layer", "exact", 0)]
    shared = pick(per_layer / 2**30 - 0.01)
    assert shared.settings == MemorySettings("shared", "exact", 0)
    swapped = pick(need[MemorySettings("shared", "exact", 0)] / 2**30 - 0.5)
    assert swapped.settings.kv == "exact" and swapped.settings.block_swap > 0     # lossless before fp8
    tight = pick(need[MemorySettings("shared", "exact", 30)] / 2**30 - 0.01)
    assert tight.settings.kv == "fp8" and tight.fits
    hopeless = pick(0.5)
    assert not hopeless.fits and "does not fit" in hopeless.line
    asked = choose_memory(plan, model, 1, "cuda", torch.bfloat16, MemorySettings("shared", "exact", 0),
                          device_room=2**30)
    assert asked.settings == MemorySettings("shared", "exact", 0)             # what was asked is kept
    cpu = choose_memory(plan, model, 1, "cpu", torch.bfloat16)
    assert cpu.settings.block_swap == 0                                      # a CPU swaps nothing
