"""The device memory estimate of a run (core/sampling/budget.py) for the real 1.3B model, part by part."""
import pytest
import torch

from core.app.plan import sampling_config
from core.sampling.budget import device_bytes
from core.sampling.memory import MemorySettings

TOKENS, DIM, LAYERS = 1560, 1536, 30              # 480×832: 60×104 latents, patches of 2×2
PER_FRAME = 2 * LAYERS * TOKENS * DIM * 2         # one frame's K and V in every layer, bf16
PARAMS = 1_418_996_800                            # the real 1.3B key set's total


@pytest.fixture(scope="module")
def model():
    from core.model.transformer import WanConfig, WanTransformer
    with torch.device("meta"):
        return WanTransformer(WanConfig(dim=DIM, ffn_dim=8960, num_layers=LAYERS, num_heads=12, in_dim=16, out_dim=16))


def parts(model, strategy, memory):
    return device_bytes(model, sampling_config(strategy=strategy), (60, 104), 1, torch.bfloat16, memory)


def test_the_exact_settings_count_weights_window_prompt_and_one_block_forward(model):
    native = parts(model, "native", MemorySettings("per-layer", "exact", 0))
    assert native.weights == PARAMS * 2
    assert native.cache == 12 * PER_FRAME and native.buffers == native.retrieved == 0
    assert native.text == LAYERS * 2 * 512 * DIM * 2                     # the prompt's K/V at its longest
    assert native.activations == 3 * TOKENS * (2 * 8960 + 4 * DIM) * 2   # a block's feed-forward layer
    assert native.needed == int(1.1 * native.total)


def test_retrieval_keeps_context_buffers_per_layer_or_one_shared(model):
    per_layer = parts(model, "rag", MemorySettings("per-layer", "exact", 0))
    shared = parts(model, "rag", MemorySettings("shared", "exact", 0))
    assert per_layer.buffers == 12 * PER_FRAME                           # the window again, rotated
    assert shared.buffers == 12 * PER_FRAME // LAYERS + 6 * PER_FRAME    # one layer's window + each layer's K frames
    assert per_layer.retrieved == 6 * PER_FRAME                          # K = 6 frames as read from the pool
    assert shared.retrieved == 6 * PER_FRAME // LAYERS                   # ... one layer at a time
    memrope = parts(model, "memrope", MemorySettings("per-layer", "exact", 0))
    assert memrope.buffers == per_layer.buffers and memrope.retrieved == 0


def test_fp8_cache_and_block_swap_shrink_their_parts(model):
    exact = parts(model, "native", MemorySettings("shared", "exact", 0))
    fp8 = parts(model, "native", MemorySettings("shared", "fp8", 0))
    assert fp8.cache == 12 * 2 * LAYERS * TOKENS * 12 * (128 + 4)        # a byte per value, a float32 scale per head
    assert fp8.buffers == 12 * PER_FRAME // LAYERS                       # the window de-quantised, one layer at a time
    swapped = parts(model, "native", MemorySettings("shared", "exact", 10))
    block = sum(p.numel() for p in model.blocks[0].parameters()) * 2
    assert exact.weights - swapped.weights == 8 * block                  # 10 blocks in host memory, 2 streaming
    with pytest.raises(ValueError, match="resolved"):
        parts(model, "native", MemorySettings())
