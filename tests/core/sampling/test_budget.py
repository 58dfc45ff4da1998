"""The device memory estimate of a run (core/sampling/budget.py) for the real 1.3B model."""
import torch

from core.app.plan import sampling_config


def test_vram_estimate_for_the_real_model_at_480p():
    from core.sampling.budget import device_bytes_needed
    from core.model.transformer import WanConfig, WanTransformer
    cfg = WanConfig(dim=1536, ffn_dim=8960, num_layers=30, num_heads=12, in_dim=16, out_dim=16)
    with torch.device("meta"):
        model = WanTransformer(cfg)
    native = device_bytes_needed(model, sampling_config(), (60, 104), 1, torch.bfloat16)
    rag = device_bytes_needed(model, sampling_config(strategy="rag"), (60, 104), 1, torch.bfloat16)
    per_frame = 2 * 30 * 1560 * 1536 * 2
    params = 1_418_996_800                                           # the real 1.3B key set's total
    assert native == int(1.25 * (params * 2 + 12 * per_frame))       # ~7.9 GB: weights + 12-frame cache
    assert abs(rag - native - 1.25 * 12 * per_frame) < 2             # + context buffers of the window's size
    memrope = device_bytes_needed(model, sampling_config(strategy="memrope"), (60, 104), 1, torch.bfloat16)
    assert memrope == rag                                            # the same cache layout, nothing retrieved
