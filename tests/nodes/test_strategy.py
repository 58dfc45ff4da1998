"""The Context Strategy node through the sampler (the ∞-RoPE golden, options and refusals, rag without Retrieve
Context) and the Compare Grid node."""
import pytest
import torch
from safetensors.torch import load_file

from pack import N, conditioning, latent_format, load, rag_retrieval
from paths import DATA


def strategy(name, window=0, sink=-1, switch="strategy default", options=""):
    return N["LongLiveRAG_ContextStrategy"].execute(name, window, sink, switch, options).args


def test_context_strategy_reproduces_the_infinity_rope_golden_through_the_sampler(models_dir):
    """The ∞-RoPE golden case (its published window 6 and sink 1 come from the strategy, not the sampler's 12/1)."""
    case = DATA / "golden_extra" / "infinity_rope_win6"
    inputs = load_file(str(case / "inputs.safetensors"))
    ref = load_file(str(case / "outputs.safetensors"))["latents_bcthw"]
    value, info = strategy("infinity-rope")
    assert "strategy infinity-rope (∞-RoPE): window 6, sink 1, prompt switch 'flush'" in info
    backbone, _ = load(models_dir)
    # 36 latent frames = 141 video frames; the case's noise is the reference contract's draw for seed 42
    out = N["LongLiveRAG_ARBlockSampler"].execute(backbone, [[inputs["prompt_embeds"][:1], {}]], 96, 64, 141, 42, 1, 12,
                                                  3, "1000,750,500,250", 5.0, None, noise_contract="reference",
                                                  strategy=value)
    latent, log, text = out.args
    got = latent_format.to_model_space(latent["samples"])
    assert ((got - ref).norm() / ref.norm()) < 1e-4
    assert log.strategy == "infinity-rope" and log.window == 6 and log.records == ()
    assert "strategy infinity-rope" in text


def test_context_strategy_options_and_bad_choices_are_named(models_dir):
    value, info = strategy("deep-forcing", options="compressed_frames=4\nrecent_frames=3")
    assert value.options == (("compressed_frames", 4), ("recent_frames", 3)) and "compressed_frames=4" in info
    assert "window 21, sink 10" in info and "per the paper; no reference code" in info
    with pytest.raises(ValueError, match="at least 8 frames, but the window is 7"):
        strategy("memrope", window=7)
    with pytest.raises(ValueError, match="has no option alpha; its options are"):
        strategy("memrope", options="alpha=0.2")
    with pytest.raises(ValueError, match="must read name=number"):
        strategy("memrope", options="alpha_long")
    with pytest.raises(ValueError, match="switch 'recache' does not apply to strategy 'memrope'"):
        strategy("memrope", switch="recache")
    backbone, _ = load(models_dir)
    with pytest.raises(ValueError, match="Retrieve Context is connected but the Context Strategy is 'memrope'"):
        N["LongLiveRAG_ARBlockSampler"].execute(backbone, conditioning(), 96, 64, 49, 0, 1, 12, 3, "1000,750,500,250",
                                                5.0, rag_retrieval(), strategy=strategy("memrope")[0])


def test_rag_strategy_without_retrieve_context_uses_avg_pool(models_dir):
    backbone, _ = load(models_dir)
    out = N["LongLiveRAG_ARBlockSampler"].execute(backbone, conditioning(), 96, 64, 97, 0, 1, 12, 3, "1000,750,500,250",
                                                  5.0, None, strategy=strategy("rag")[0])
    _, log, _ = out.args
    assert log.strategy == "rag" and len(log.records) > 0


def test_compare_grid_tiles_labelled_videos():
    a, b = torch.rand(5, 32, 48, 3), torch.rand(3, 32, 48, 3)
    (grid,) = N["LongLiveRAG_CompareGrid"].execute("native\nmemrope\n", 0, images_1=a, images_2=b).args
    assert grid.shape == (5, 16 + 32, 2 * 48 + 4, 3) and grid.dtype == torch.float32
    assert torch.allclose(grid[:, 16:, :48], (a * 255).round() / 255, atol=1e-6)
    assert torch.allclose(grid[4, 16:, 52:], (b[2] * 255).round() / 255, atol=1e-6)   # held last frame
    with pytest.raises(ValueError, match="2 videos are connected but 'labels' has 1 lines"):
        N["LongLiveRAG_CompareGrid"].execute("native", 0, images_1=a, images_2=b)
