"""LongLive 2.0 behaviour beyond the goldens: image-to-video starts, shots, the shot sink's limits,
retrieval on 48-channel latents, and clear errors for inputs of the other latent kind."""
import dataclasses

import pytest
import torch

from core.families.wan22_ti2v import DEFAULTS
from core.retrieval.config import RetrievalConfig
from core.sampling.config import SamplingConfig, ShotConfig
from core.retrieval.encoder import EncoderConfig, RetrievalEncoder
from core.context.kv_cache import CachePolicy, KVCache
from core.model.transformer import WanConfig, WanTransformer
from core.sampling.loop import generate
from core.latents.format import WAN21, WAN22
from core.sampling.prompts import PromptSchedule, Segment, parse_schedule_text
from core.app.plan import sampling_config

HW = (4, 8)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = WanTransformer(WanConfig(dim=64, ffn_dim=128, num_layers=2, num_heads=2, text_dim=32, freq_dim=32,
                                 in_dim=48, out_dim=48))
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.05) if p.dim() > 1 else p.normal_(0, 0.02)
    return m.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def prompts():
    g = torch.Generator().manual_seed(1)
    return [torch.randn(1, 6, 32, generator=g) for _ in range(3)]


def small(**kw):
    """LongLive 2.0's settings scaled down: blocks of 2 frames, window 8, sink 2."""
    kw = {"frames_per_block": 2, "window": 8, "sink": 2, **kw}
    return sampling_config(DEFAULTS, **kw)


def test_an_image_start_is_held_clean_inside_the_first_block(model, prompts):
    image = torch.randn(1, 48, 1, *HW)
    updates = []
    res = generate(model, prompts[0], 8, HW, 3, small(), prefix=image,
                   callback=lambda u: updates.append((u.start_frame, u.x0.shape[1], u.replayed)))
    assert torch.equal(res.latents[:, :, :1], image)
    assert updates[0] == (0, 2, False) and len(updates) == 4       # whole blocks from frame 0, none replayed
    # a run stopped after two blocks and resumed from them gives the same video
    again = generate(model, prompts[0], 8, HW, 3, small(), prefix=res.latents[:, :, :4])
    assert torch.equal(again.latents, res.latents)


def test_the_clamped_start_works_with_the_renoise_sampler_too(model, prompts):
    image = torch.randn(1, 48, 1, *HW)
    res = generate(model, prompts[0], 8, HW, 3, small(sampler="renoise"), prefix=image)
    assert torch.equal(res.latents[:, :, :1], image)


def test_a_16_channel_start_on_the_5b_names_the_vae_to_use(model, prompts):
    with pytest.raises(ValueError, match=r"16 channels \(Wan2\.1 latents, made by the Wan2\.1 VAE\); this backbone "
                                         r"takes 48-channel Wan2\.2 latents: encode the start with the Wan2\.2 VAE"):
        generate(model, prompts[0], 8, HW, 3, small(), prefix=torch.zeros(1, 16, 1, *HW))


def test_a_cut_moves_the_rope_offset_of_every_later_block_and_uses_its_first_block_prompt(model, prompts):
    cut = PromptSchedule((Segment(0, prompts[0]), Segment(4, prompts[1], "shot 2", True, prompts[2])))
    plain = PromptSchedule((Segment(0, prompts[0]), Segment(4, prompts[1], "shot 2")))
    a = generate(model, cut, 8, HW, 3, small(shot_sink=False))
    b = generate(model, plain, 8, HW, 3, small(shot_sink=False))
    assert torch.equal(a.latents[:, :, :4], b.latents[:, :, :4])
    assert not torch.allclose(a.latents[:, :, 4:], b.latents[:, :, 4:])
    assert a.switches[0]["cut"] and a.switches[0]["rope_offset"] == 8.0 and not b.switches[0]["cut"]
    # with neither an offset nor a first-block prompt a cut is a plain prompt change
    no_offset = small(shot_sink=False, shot_rope_offset=0.0)
    c = generate(model, PromptSchedule((Segment(0, prompts[0]), Segment(4, prompts[1], "s", True))), 8, HW, 3,
                 no_offset)
    assert torch.equal(c.latents, b.latents)


def test_the_shot_sink_slides_behind_the_sink_then_is_kept():
    cache = KVCache(CachePolicy.native(window=8, sink=2), 1, 1, (1, 1), 1, 2, torch.float32, torch.device("cpu"))
    kept = []
    for block in range(7):
        cache.begin_block(2 * block, 2)
        if block == 3:
            cache.pin(2)
        kept.append((cache.pinned, cache._kept()))
    assert kept[3] == ((6, 2), 2)       # pinned at the last slots
    assert [k[0][0] for k in kept[4:6]] == [4, 2] and kept[5][1] == 4 and kept[6] == ((2, 2), 4)


def test_the_shot_sink_is_refused_with_retrieval_and_with_blocks_that_do_not_tile_the_sink():
    with pytest.raises(ValueError, match=r"multi-shot sink pins frames in the native sliding window.*--no-multi-shot-sink"):
        sampling_config(frames_per_block=8, window=32, sink=8, strategy="rag", shot_rope_offset=8.0, shot_sink=True)
    with pytest.raises(ValueError, match=r"sink \(3\) and a window \(32\) that are whole blocks of 8"):
        sampling_config(frames_per_block=8, window=32, sink=3, shot_rope_offset=8.0, shot_sink=True)
    assert sampling_config(DEFAULTS, retrieval=RetrievalConfig()).shots == ShotConfig(8.0, False)   # rag: shot sink off by default
    assert sampling_config(DEFAULTS).shots == ShotConfig(8.0, True)


def test_retrieval_runs_on_48_channel_latents_with_avg_pool_and_an_encoder(model, prompts):
    cfg = small(retrieval=RetrievalConfig(top_k=2, recent_exclude=1), window=8)
    res = generate(model, prompts[0], 16, HW, 3, cfg)
    assert res.descriptors.shape == (1, 16, 48) and res.retrieval_log
    assert all(len(r["pool_indices"]) <= 2 for r in res.retrieval_log)
    enc = RetrievalEncoder(EncoderConfig(in_channels=48, spatial_h=HW[0], spatial_w=HW[1], latent_dim=8,
                                         hidden_dims=[16, 32])).eval()
    res = generate(model, prompts[0], 16, HW, 3, cfg, encoder=enc)
    assert res.descriptors.shape == (1, 16, 8) and res.retrieval_log


def test_a_16_channel_retrieval_encoder_on_the_5b_says_how_to_get_one(model, prompts):
    enc = RetrievalEncoder(EncoderConfig(in_channels=16, spatial_h=HW[0], spatial_w=HW[1], latent_dim=8,
                                         hidden_dims=[16, 32]))
    with pytest.raises(ValueError, match=r"trained on 16-channel Wan2\.1 latents; this backbone makes 48-channel "
                                         r"Wan2\.2 latents: train one for it .*build-corpus.*or use avg_pool"):
        generate(model, prompts[0], 8, HW, 3, small(retrieval=RetrievalConfig(top_k=2)), encoder=enc)


def test_a_bfloat16_run_keeps_the_solver_in_float32(model, prompts):
    half = WanTransformer(model.cfg)
    half.load_state_dict(model.state_dict())
    res = generate(half.to(torch.bfloat16).eval(), prompts[0], 4, HW, 3, small())
    ref = generate(model, prompts[0], 4, HW, 3, small())
    assert res.latents.dtype == torch.float32
    assert ((res.latents - ref.latents).norm() / ref.latents.norm()) < 0.05


def test_the_text_schedule_marks_cuts_and_reads_seconds_at_the_family_rate():
    timed = parse_schedule_text("0s: a fox\n2s cut: a lake\n# note\n3s: the ice", "s.txt", latent=WAN22)
    assert [(t.frame, t.cut) for t in timed] == [(0, False), (12, True), (18, False)]
    assert WAN21.seconds_to_frame(2) == 8 and WAN22.seconds_to_frame(2) == 12
    with pytest.raises(ValueError, match="begins the video, not a new scene or shot"):
        parse_schedule_text("0s cut: a fox", latent=WAN22)
