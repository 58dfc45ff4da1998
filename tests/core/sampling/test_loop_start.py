"""Starting from given latents (resume, extend, image/clip start) under the per-block noise contract."""
import pytest
import torch
from core.retrieval.encoder import load_encoder
from core.sampling.loop import generate
from core.app.plan import sampling_config

from paths import GOLDEN

REGIMES = {"native": sampling_config(), "retrieval": sampling_config(strategy="rag")}


@pytest.fixture(scope="module")
def encoder():
    return load_encoder(GOLDEN / "ae.pt")


@pytest.fixture(scope="module")
def full(golden_model, golden_inputs, encoder):
    """36-frame runs (retrieval from block 6 on), per regime, per-block noise."""
    return {name: generate(golden_model, golden_inputs["prompt_embeds"], 36, (8, 12), 7, cfg, encoder=encoder)
            for name, cfg in REGIMES.items()}


def run(model, inputs, encoder, regime, frames, start=None, seed=7, noise="per-block"):
    cfg = sampling_config(retrieval=REGIMES[regime].retrieval, noise=noise)
    return generate(model, inputs["prompt_embeds"], frames, (8, 12), seed, cfg, encoder=encoder, start=start)


@pytest.mark.parametrize("regime", REGIMES)
def test_the_first_seconds_of_a_longer_video_are_the_shorter_video(golden_model, golden_inputs, encoder, full, regime):
    short = run(golden_model, golden_inputs, encoder, regime, 24)
    assert torch.equal(short.latents, full[regime].latents[:, :, :24])
    assert short.retrieval_log == [r for r in full[regime].retrieval_log if r["query_frame"] < 24]


@pytest.mark.parametrize("regime", REGIMES)
@pytest.mark.parametrize("done", [3, 21, 27])
def test_resuming_from_the_first_blocks_gives_the_uninterrupted_run(golden_model, golden_inputs, encoder, full,
                                                                   regime, done):
    ref = full[regime]
    replayed = []
    cfg = REGIMES[regime]
    res = generate(golden_model, golden_inputs["prompt_embeds"], 36, (8, 12), 7, cfg, encoder=encoder,
                   start=ref.latents[:, :, :done], callback=lambda u: replayed.append(u.replayed))
    assert torch.equal(res.latents, ref.latents)
    assert res.retrieval_log == ref.retrieval_log          # replayed blocks retrieve what they retrieved
    assert torch.equal(res.descriptors, ref.descriptors)
    assert replayed == [True] * (done // 3) + [False] * (12 - done // 3)
    if regime == "retrieval" and done == 27:
        assert any(r["query_frame"] < 27 for r in res.retrieval_log)   # replayed blocks did retrieve


def test_extending_a_finished_video_equals_asking_for_the_longer_one(golden_model, golden_inputs, encoder, full):
    first = run(golden_model, golden_inputs, encoder, "retrieval", 18)
    longer = run(golden_model, golden_inputs, encoder, "retrieval", 36, start=first.latents)
    assert torch.equal(longer.latents, full["retrieval"].latents)
    assert longer.retrieval_log == full["retrieval"].retrieval_log


def test_the_reference_contract_resumes_exactly_too(golden_model, golden_inputs, encoder):
    ref = run(golden_model, golden_inputs, encoder, "retrieval", 36, noise="reference")
    res = run(golden_model, golden_inputs, encoder, "retrieval", 36, start=ref.latents[:, :, :24], noise="reference")
    assert torch.equal(res.latents, ref.latents) and res.retrieval_log == ref.retrieval_log
    # but it is not start-stable: the whole video's noise is one draw
    short = run(golden_model, golden_inputs, encoder, "retrieval", 24, noise="reference")
    assert not torch.equal(short.latents, ref.latents[:, :, :24])


@pytest.mark.parametrize("regime", REGIMES)
def test_an_image_start_is_a_one_frame_first_block(golden_model, golden_inputs, encoder, regime):
    image = torch.randn(1, 16, 1, 8, 12, generator=torch.Generator().manual_seed(3))
    starts = []
    res = generate(golden_model, golden_inputs["prompt_embeds"], 25, (8, 12), 7, REGIMES[regime], encoder=encoder,
                   start=image, callback=lambda u: starts.append((u.start_frame, u.x0.shape[1], u.replayed)))
    assert torch.equal(res.latents[:, :, :1], image)
    assert starts[0] == (0, 1, True) and starts[1] == (1, 3, False) and starts[-1] == (22, 3, False)
    # resuming that run after 3 generated blocks gives the same video
    again = generate(golden_model, golden_inputs["prompt_embeds"], 25, (8, 12), 7, REGIMES[regime], encoder=encoder,
                     start=res.latents[:, :, :10])
    assert torch.equal(again.latents, res.latents) and again.retrieval_log == res.retrieval_log


@pytest.mark.parametrize("shape, frames, message", [
    ((1, 48, 3, 8, 12), 12, "48 channels (Wan2.2 latents, made by the Wan2.2 VAE); this backbone takes 16-channel "
                            "Wan2.1 latents: encode the start with the Wan2.1 VAE"),
    ((1, 16, 3, 16, 12), 12, "are 16x12; the run is 8x12"),
    ((1, 16, 12, 8, 12), 12, "already holds 12 latent frames"),
    ((1, 16, 3, 8, 12), 13, "must be a positive multiple"),
    ((1, 16, 1, 8, 12), 12, "1 plus a multiple of the block size 3 (e.g. 13)"),
    ((2, 16, 3, 8, 12), 12, "hold 2 videos; the run has 1"),
])
def test_a_start_that_does_not_fit_is_refused_with_the_reason(golden_model, golden_inputs, shape, frames, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        generate(golden_model, golden_inputs["prompt_embeds"], frames, (8, 12), 0, sampling_config(),
                 start=torch.zeros(shape))


@pytest.mark.parametrize("regime", REGIMES)
def test_a_story_resumes_exactly_across_its_switches(golden_model, golden_inputs, encoder, regime):
    """The replay re-caches at the switches the original run re-cached at, so the state is the same."""
    from core.sampling.prompts import PromptSchedule, Segment
    p0 = golden_inputs["prompt_embeds"]
    p1 = torch.randn(p0.shape, generator=torch.Generator().manual_seed(9))
    story = PromptSchedule((Segment(0, p0), Segment(13, p1)))
    cfg = REGIMES[regime]
    ref = generate(golden_model, story, 36, (8, 12), 7, cfg, encoder=encoder)
    assert ref.switches and ref.switches[0]["block_start"] == 15
    for done in (12, 18, 27):     # before, right after and well after the switch
        res = generate(golden_model, story, 36, (8, 12), 7, cfg, encoder=encoder, start=ref.latents[:, :, :done])
        assert torch.equal(res.latents, ref.latents) and res.retrieval_log == ref.retrieval_log
        assert res.switches == ref.switches
