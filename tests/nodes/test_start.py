"""The AR Block Sampler's start and its continue memo, without ComfyUI: a start LATENT is core's prefix,
kept bit-exactly in the output; chained samplers extend exactly; Cancel then Queue again continues
exactly; each bad start is refused with the fix."""
import sys

import pytest
import torch

from core.app.plan import sampling_config

from pack import N, PACK, bridge, conditioning, load, rag_retrieval

start_mod = sys.modules[f"{PACK.__name__}.nodes.start"]
pipeline = sys.modules[f"{PACK.__name__}.core.sampling.loop"]
config = sys.modules[f"{PACK.__name__}.core.sampling.config"]
latent_format = sys.modules[f"{PACK.__name__}.core.latents.format"]


@pytest.fixture(autouse=True)
def empty_memo():
    start_mod.MEMO.clear()
    yield
    start_mod.MEMO.clear()


def sample(backbone, length, start=None, retrieval=None, seed=7, noise="per-block", width=96):
    """(latent, log, info) of one AR Block Sampler run at 96x64 px (8x12 latents)."""
    out = N["LongLiveRAG_ARBlockSampler"].execute(backbone, conditioning(), width, 64, length, seed, 1, 12, 3,
                                                  "1000,750,500,250", 5.0, retrieval, noise_contract=noise,
                                                  start=start)
    assert out.ui.as_dict() == {"text": (out.args[2],)}            # shown on the node
    return out.args


def raw_start(frames, channels=16, h=8, w=12, seed=3):
    return {"samples": torch.randn(1, channels, frames, h, w, generator=torch.Generator().manual_seed(seed))}


def core_config(retrieval, noise="per-block"):
    return sampling_config(retrieval=retrieval.config if retrieval else None, noise=noise)


@pytest.mark.parametrize("frames", [1, 4], ids=["image", "clip"])
def test_a_start_latent_is_cores_prefix_and_is_kept_bit_exactly(models_dir, frames):
    backbone, _ = load(models_dir)
    retrieval = rag_retrieval()
    start = raw_start(frames)
    latent, log, info = sample(backbone, 81, start, retrieval)
    ref = pipeline.generate(backbone.backbone.model, conditioning()[0][0], 22, (8, 12), 7, core_config(retrieval),
                            encoder=retrieval.encoder.model, start=latent_format.to_model_space(start["samples"]))
    out = latent["samples"]
    assert out.shape == (1, 16, 22, 8, 12)                    # 81 video frames = 21 latent, rounded to 1 + 7·3
    assert torch.equal(out[:, :, :frames], start["samples"])
    assert torch.equal(out[:, :, frames:], latent_format.to_raw_space(ref.latents)[:, :, frames:])
    assert list(log.records) == ref.retrieval_log and log.num_frames == 22
    assert "length 81 rounded up to 85 video frames (a first block of the start's 1 latent frame, then whole " \
           "blocks of 3 latent frames)" in info


def test_the_start_is_copied_back_as_given_even_when_the_backbone_runs_in_bfloat16(models_dir):
    backbone, _ = N["LongLiveRAG_LoadBackbone"].execute("tiny.safetensors", "none", 1.0, "bfloat16", "cpu",
                                                        "offload after sampling", num_heads=2).args
    start = raw_start(3)
    latent, _, _ = sample(backbone, 25, start)
    assert torch.equal(latent["samples"][:, :, :3], start["samples"])


def test_extending_a_10s_video_with_a_chained_sampler_equals_one_longer_run(models_dir):
    """Sampler 1 makes 21 latent frames; sampler 2 starts from its output and makes 30, same seed."""
    backbone, _ = load(models_dir)
    retrieval = rag_retrieval()
    first, _, _ = sample(backbone, 81, retrieval=retrieval)
    extended, log, info = sample(backbone, 117, first, retrieval)
    start_mod.MEMO.clear()                                    # the single run must not continue sampler 2's
    whole, whole_log, _ = sample(backbone, 117, retrieval=retrieval)
    assert torch.equal(extended["samples"], whole["samples"])
    assert log.records == whole_log.records and any(r["query_frame"] < 21 for r in log.records)
    assert "starts from the given 21 latent frames" in info and "rounded" not in info


class Cancelled(Exception):
    pass


def cancel_after(monkeypatch, blocks):
    """ComfyUI's Cancel, pressed as the ``blocks``-th block finishes: the interrupt check after that block raises
    (the checks between model calls before it pass)."""
    done = []
    on_block = bridge.Progress.on_block
    monkeypatch.setattr(bridge.Progress, "on_block", lambda self, update: done.append(1) or on_block(self, update))

    def check():
        if len(done) >= blocks:
            raise Cancelled

    monkeypatch.setattr(bridge, "check_interrupted", check)
    return done


@pytest.mark.parametrize("noise, rag, image", [("per-block", True, False), ("per-block", False, True),
                                               ("reference", True, False)])
def test_queueing_again_after_a_cancel_continues_to_the_uninterrupted_video(models_dir, monkeypatch, noise, rag,
                                                                           image):
    backbone, _ = load(models_dir)
    retrieval = rag_retrieval() if rag else None
    start = raw_start(1) if image else None
    whole, whole_log, _ = sample(backbone, 93, start, retrieval, noise=noise)
    start_mod.MEMO.clear()
    cancel_after(monkeypatch, 5)
    with pytest.raises(Cancelled):
        sample(backbone, 93, start, retrieval, noise=noise)
    monkeypatch.setattr(bridge, "check_interrupted", lambda: None)
    denoised = count_denoised_blocks(monkeypatch)
    again, log, info = sample(backbone, 93, start, retrieval, noise=noise)
    done = 13 if image else 15                                # 5 blocks (an image's first block is 1 frame)
    assert torch.equal(again["samples"], whole["samples"]) and log.records == whole_log.records
    assert f"continued from the run that stopped (cancelled or failed) of this graph: its first {done} latent " \
           "frames" in info
    assert len(denoised) == (25 - done) // 3


def count_denoised_blocks(monkeypatch):
    calls = []
    denoise = pipeline._BlockLoop.denoise
    monkeypatch.setattr(pipeline._BlockLoop, "denoise", lambda self, *a: calls.append(a) or denoise(self, *a))
    return calls


def test_a_longer_length_extends_the_last_run_by_replaying_it(models_dir, monkeypatch):
    backbone, _ = load(models_dir)
    short, _, _ = sample(backbone, 41)
    denoised = count_denoised_blocks(monkeypatch)
    longer, _, info = sample(backbone, 93)
    assert torch.equal(longer["samples"][:, :, :12], short["samples"]) and len(denoised) == 4
    assert "continued from the previous run of this graph: its first 12 latent frames (45 video frames) replayed" \
           in info
    start_mod.MEMO.clear()
    assert torch.equal(sample(backbone, 93)[0]["samples"], longer["samples"])


@pytest.mark.parametrize("change", ["seed", "reference length", "start"])
def test_a_run_that_differs_in_more_than_length_starts_afresh(models_dir, change):
    backbone, _ = load(models_dir)
    noise = "reference" if change == "reference length" else "per-block"
    sample(backbone, 41, raw_start(1) if change == "start" else None, noise=noise)
    _, _, info = sample(backbone, 93, raw_start(1, seed=4) if change == "start" else None, noise=noise,
                        seed=8 if change == "seed" else 7)
    assert "continued" not in info


def test_the_memo_keeps_one_run(models_dir):
    backbone, _ = load(models_dir)
    sample(backbone, 25, seed=1)
    sample(backbone, 25, seed=2)
    memo = start_mod.MEMO
    assert memo.latents.shape[2] == 9 and '"seed": 2' in memo.key


@pytest.mark.parametrize("start, length, message", [
    (raw_start(1, channels=48), 81, "start has 48 channels (Wan2.2 latents, from the Wan2.2 VAE); this backbone "
                                    "takes 16-channel Wan2.1 latents: load wan_2.1_vae.safetensors"),
    (raw_start(1, channels=4), 81, "start has 4 channels (another model's VAE)"),
    (raw_start(1, h=8, w=24), 81, "the start is 192x64 px (latent 8x24) but the run makes 96x64: set width 192 and "
                                  "height 64 (or 0: the start's size), or scale the image/clip to 96x64"),
    (raw_start(12), 45, "the start already holds 12 latent frames (45 video frames) and length 45 asks for no more: "
                        "set length to at least 57"),
    ({"samples": torch.zeros(1, 4, 8, 12)}, 81, "not a video latent"),
    (torch.zeros(1, 16, 1, 8, 12), 81, "start must be a LATENT"),
])
def test_a_start_that_does_not_fit_is_refused_with_the_fix(models_dir, start, length, message):
    backbone, _ = load(models_dir)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        sample(backbone, length, start)


def test_an_image_start_with_a_prompt_schedule_is_refused_by_core(models_dir):
    from pack import FakeCLIP, build
    backbone, _ = load(models_dir)
    _, schedule, _, _ = build(FakeCLIP(), "0s: a\n2s: b")
    with pytest.raises(ValueError, match="cannot be combined with a prompt schedule"):
        N["LongLiveRAG_ARBlockSampler"].execute(backbone, schedule, 96, 64, 93, 7, 1, 12, 3, "1000,750,500,250",
                                                5.0, start=raw_start(1))


def test_a_latent_whose_samples_were_replaced_is_read_from_its_samples(models_dir):
    """A node that copies our LATENT and swaps 'samples' keeps the carried model-space copy: it is not used."""
    backbone, _ = load(models_dir)
    first, _, _ = sample(backbone, 25)
    edited = dict(first, samples=raw_start(9)["samples"])
    latent, _, _ = sample(backbone, 37, edited)
    ref = pipeline.generate(backbone.backbone.model, conditioning()[0][0], 12, (8, 12), 7, core_config(None),
                            start=latent_format.to_model_space(edited["samples"]))
    assert torch.equal(latent["samples"][:, :, :9], edited["samples"])
    assert torch.equal(latent["samples"][:, :, 9:], latent_format.to_raw_space(ref.latents)[:, :, 9:])
