"""A third backbone family that exists only in the tests (tests/factory.py: 8 latent channels, 12 fps, 2× time
compression, 4× spatial, blocks of 2, window 10, sink 2), added by one ``register`` call, runs end to end
through the CLI and the nodes with its own numbers: nothing on the way has a Wan default."""
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from core.app.cli import main
from core.families.registry import register
from core.retrieval.map import window_band
from core.sampling.prompts import fire_frames, read_schedule_file, timeline
from factory import TEXT_DIM, make_test_family, save_test_backbone

from pack import FakeCLIP, N, PACK, schedule_node

TEST = make_test_family()
FMT = TEST.defaults.latent
AUTO = (-1, 0, 0, "auto", 0.0)          # sink_size, local_attn_size, frames_per_block, steps, shift


@pytest.fixture
def registered():
    with register(TEST) as family:
        yield family


@pytest.fixture
def pack_registered():
    """The family in the registry of the nodes' copy of core (a package of its own, with its own registry)."""
    registry = sys.modules[f"{PACK.__name__}.core.families.registry"]
    with registry.register(make_test_family(f"{PACK.__name__}.core")) as family:
        yield family


def embeds_file(path, switch_frame=None):
    g = torch.Generator().manual_seed(0)
    tensors = {"prompt_embeds": torch.randn(1, 6, TEXT_DIM, generator=g)}
    if switch_frame is not None:
        tensors.update(prompt_embeds_1=torch.randn(1, 6, TEXT_DIM, generator=g),
                       switch_frames=torch.tensor([switch_frame]))
    save_file(tensors, str(path))
    return path


# ------------------------------------------------------------------------------ the CLI
def test_the_cli_makes_seconds_of_video_at_the_familys_rate(registered, tmp_path, capsys):
    ckpt = save_test_backbone(tmp_path / "test8.safetensors")
    out = tmp_path / "latents.safetensors"
    rc = main(["generate", "--backbone", str(ckpt), "--embeds", str(embeds_file(tmp_path / "e.safetensors", 6)),
               "--seconds", "2", "--out", str(out), "--log", str(tmp_path / "log.json"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 0, err
    latents = load_file(str(out))["latents"]
    assert latents.shape == (1, 8, 12, 4, 6)            # 2 s · 12 fps / 2 = 12 latent frames of 4x6 (24x16 px)
    assert ("Test8 T2V backbone: 24x16 px (Test8 latents, 8 channels, 4x6) at 12 fps; blocks of 2 latent frames, "
            "window 10, sink 2") in err
    assert "begins at block 3 = frame 6 (1 s)" in err   # the switch at latent frame 6, in the family's seconds


def test_a_timed_schedule_reads_seconds_at_the_familys_rate(tmp_path):
    (tmp_path / "story.txt").write_text("0s: a fox\n1s: a lake\n1.2s: the ice")
    timed = read_schedule_file(tmp_path / "story.txt", FMT)
    assert [p.frame for p in timed] == [0, 6, 8]        # ⌈1.2 · 12 / 2⌉ = 8
    starts, labels = [p.frame for p in timed], [p.describe() for p in timed]
    assert fire_frames(starts, 2) == [0, 6, 8]
    lines = timeline(starts, labels, 2, FMT)
    assert lines[1].endswith("begins at block 3 = frame 6 (1 s)")
    with pytest.raises(ValueError, match=r"at or past the end of the video \(8 latent frames, 1.33333 s\)"):
        fire_frames(starts, 2, 8, labels, FMT)


# ------------------------------------------------------------------------------ the nodes
def load_test_backbone(models_dir):  # noqa: F811
    save_test_backbone(models_dir / "diffusion_models" / "test8.safetensors")
    return N["LongLiveRAG_LoadBackbone"].execute("test8.safetensors", "none", 1.0, "float32", "cpu",
                                                 "offload after sampling").args


def sample_with_retrieval(models_dir):
    """(latent, retrieval log, info) of the AR Block Sampler at auto on the test family, 47 video frames, K 2."""
    backbone, _ = load_test_backbone(models_dir)
    (enc,) = N["LongLiveRAG_LoadLatentEncoder"].execute("avg_pool (no file)").args
    retrieval = N["LongLiveRAG_RetrieveContext"].execute(enc, 2, 1, None).args[0]
    positive = [[torch.randn(1, 6, TEXT_DIM, generator=torch.Generator().manual_seed(0)), {}]]
    return N["LongLiveRAG_ARBlockSampler"].execute(backbone, positive, 0, 0, 47, 0, *AUTO, retrieval=retrieval).args


def test_load_backbone_names_the_family_and_its_settings(pack_registered, models_dir):  # noqa: F811
    backbone, info = load_test_backbone(models_dir)
    assert "Test8 (" in info and "Test8 T2V family" in info
    assert info.splitlines()[-1].startswith("GPU memory of a run at 24×16 (estimate): native ")
    assert info.splitlines()[-2] == ("AR Block Sampler at auto: 24x16 px (Test8 latents, 8 channels, 4x6) at 12 fps; "
                                     "blocks of 2 latent frames, window 10, sink 2, steps 1000,500, shift 3")
    assert backbone.backbone.defaults is pack_registered.defaults


def test_the_sampler_at_auto_makes_the_familys_latents_in_its_blocks(pack_registered, models_dir):  # noqa: F811
    latent, log, info = sample_with_retrieval(models_dir)
    assert latent["samples"].shape == (1, 8, 24, 4, 6)   # 47 video frames = (47 − 1)/2 + 1 latent frames, 4x6
    assert info.splitlines()[0] == "24 latent frames = 47 video frames (3.92 s at 12 fps)"
    assert "Test8: 24x16 px (Test8 latents, 8 channels, 4x6) at 12 fps; blocks of 2 latent frames" in info
    assert (log.frames_per_block, log.window, log.sink, log.num_frames) == (2, 10, 2, 24)
    starts = [r["query_frame"] for r in log.records]
    assert starts and all(b - a == 2 for a, b in zip(starts, starts[1:]))      # one record per block of 2


def test_the_retrieval_map_band_is_the_familys(pack_registered, models_dir):  # noqa: F811
    _, log, _ = sample_with_retrieval(models_dir)
    render = sys.modules[f"{PACK.__name__}.core.retrieval.map"].render_retrieval_map
    (img,) = N["LongLiveRAG_RetrievalMap"].execute(log, 400, 300).args
    got = (img[0] * 255).round().to(torch.uint8).numpy()
    title = "LongLive-RAG retrieval map"
    assert (got == render(list(log.records), 24, 2, 10, 2, title=title, size_px=(400, 300))).all()
    assert not (got == render(list(log.records), 24, 2, 10, 3, title=title, size_px=(400, 300))).all()
    assert window_band(24, 2, 10, 2)[1][20] == 14        # a block at 20 sees frames 14..19


def test_the_prompt_schedule_times_its_lines_for_the_connected_backbone(pack_registered, models_dir):  # noqa: F811
    backbone, _ = load_test_backbone(models_dir)
    out = schedule_node().execute(FakeCLIP(width=TEXT_DIM), "0s: a fox\n1s: a lake", "auto", True, "all", backbone)
    sched, text = out.args
    assert (sched.latent.fps, sched.latent.time_stride, sched.frames_per_block) == (12, 2, 2)
    assert [s.start for s in sched.schedule.segments] == [0, 6]
    assert text.splitlines()[1].endswith("begins at block 3 = frame 6 (1 s)")
    latent, _, info = N["LongLiveRAG_ARBlockSampler"].execute(backbone, sched, 0, 0, 23, 0, *AUTO).args
    assert latent["samples"].shape == (1, 8, 12, 4, 6)
    assert "the Prompt Schedule at" not in info          # timed for this backbone already: no re-timing shown
