"""The Prompt Schedule node with a stand-in CLIP (the two calls CLIPTextEncode makes, recorded), and the AR Block
Sampler taking a schedule in place of a CONDITIONING."""
import gc
import sys

import pytest
import torch

from pack import FakeCLIP, N, PACK, STORY, build, conditioning, load, schedule_node

schedule_mod = sys.modules[f"{PACK.__name__}.nodes.schedule"]


def encoded(clip):
    return [text for kind, text in clip.calls if kind == "encode"]


def test_each_line_is_encoded_the_way_clip_text_encode_does_it():
    clip = FakeCLIP()
    _, sched, _, _ = build(clip)
    assert clip.calls == [("tokenize", "a red fox in the snow"), ("encode", "a red fox in the snow"),
                          ("tokenize", "the fox at a frozen lake"), ("encode", "the fox at a frozen lake"),
                          ("tokenize", "the ice cracks"), ("encode", "the ice cracks")]
    segs = sched.schedule.segments
    assert [s.start for s in segs] == [0, 6, 12]
    assert torch.equal(segs[1].embeds, FakeCLIP().encode_from_tokens_scheduled(
        FakeCLIP().tokenize("the fox at a frozen lake"))[0][0])


def test_the_output_shows_where_each_line_begins_after_rounding():
    _, sched, timeline, ui = build(FakeCLIP(), "0s: a\n1.25s: b\n4.5s: c")
    assert ui == {"text": (timeline,)} and sched.timeline == timeline
    lines = timeline.splitlines()
    assert lines[1] == ("Prompt Schedule line 2 '1.25s: b': asks for frame 5 (1.25 s), inside a block: rounded up to "
                        "the next block start, block 2 = frame 6 (1.5 s)")
    assert lines[2] == "Prompt Schedule line 3 '4.5s: c': begins at block 6 = frame 18 (4.5 s)"


def test_requeueing_with_one_changed_line_encodes_only_that_line():
    clip = FakeCLIP()
    node, first, _, _ = build(clip)
    clip.calls.clear()
    _, second, _, _ = build(clip, STORY.replace("the ice cracks", "the ice holds"), node=node)
    assert encoded(clip) == ["the ice holds"]
    assert torch.equal(first.schedule.segments[0].embeds, second.schedule.segments[0].embeds)
    clip.calls.clear()
    build(clip, "0s: a red fox in the snow\n3s: the ice holds", node=node)   # retimed lines are not re-encoded
    assert encoded(clip) == []


def test_another_text_encoder_encodes_everything_again():
    node, _, _, _ = build(FakeCLIP())
    other = FakeCLIP()
    build(other, node=node)
    assert len(encoded(other)) == 3


def test_two_schedule_nodes_on_one_text_encoder_keep_their_own_lines():
    clip = FakeCLIP()
    first, _, _, _ = build(clip)
    build(clip, "0s: a lake at night", node=schedule_node())
    clip.calls.clear()
    build(clip, node=first)
    assert encoded(clip) == []


def test_the_lines_of_a_text_encoder_that_is_gone_are_dropped():
    node, _, _, _ = build(FakeCLIP())
    gc.collect()
    build(FakeCLIP(), "0s: a", node=schedule_node())
    assert node.hidden.unique_id not in schedule_mod.LINES.entries


def test_a_text_encoder_that_is_not_umt5_is_refused_naming_the_line():
    with pytest.raises(ValueError) as err:
        build(FakeCLIP(key="t5xxl"))
    assert str(err.value) == ("Prompt Schedule line 1 '0s: a red fox in the snow': the connected text encoder is not "
                              "Wan's umT5-XXL (its tokenizer gives ['t5xxl']); load umt5_xxl with CLIPLoader type 'wan'")


@pytest.mark.parametrize("text, message", [
    ("0s: a\n5s: b\n3s: c", "Prompt Schedule line 3 '3s: c' asks for latent frame 12, not after"),
    ("0s: a\n5s:", "Prompt Schedule line 2 '5s:' has no prompt"),
    ("0s: a\nfive seconds: b", "Prompt Schedule line 2 'five seconds: b' does not parse"),
])
def test_bad_lines_are_refused_naming_the_line(text, message):
    clip = FakeCLIP()
    with pytest.raises(ValueError, match=message):
        build(clip, text)


def sample(backbone, positive, length=93, retrieval=None):
    # 93 video frames = 24 latent frames; 96x64 px = 8x12 latents
    return N["LongLiveRAG_ARBlockSampler"].execute(backbone, positive, 96, 64, length, 42, 1, 12, 3,
                                                   "1000,750,500,250", 5.0, retrieval).args[:2]


def test_the_sampler_takes_a_schedule_in_place_of_a_conditioning(models_dir):  # noqa: F811
    backbone, _ = load(models_dir)
    cond = conditioning()
    clip = FakeCLIP()
    clip.encode_from_tokens_scheduled = lambda tokens: cond          # every line: the same prompt as `cond`
    _, same, _, _ = build(clip, "0s: a\n2s: b\n4s: c", switch="none")
    plain_latent, _ = sample(backbone, cond)
    sched_latent, log = sample(backbone, same)
    assert torch.equal(plain_latent["samples"], sched_latent["samples"])
    assert [s["block_start"] for s in log.switches] == [9, 18]
    _, recached, _, _ = build(clip, "0s: a\n2s: b\n4s: c")          # the switch setting travels with the schedule
    assert not torch.equal(sample(backbone, recached)[0]["samples"], plain_latent["samples"])


def test_a_story_with_retrieval_marks_its_switches_on_the_retrieval_map(models_dir):  # noqa: F811
    backbone, _ = load(models_dir)
    (enc,) = N["LongLiveRAG_LoadLatentEncoder"].execute("ae_latent_mem.pt").args
    retrieval = N["LongLiveRAG_RetrieveContext"].execute(enc, 6, 5, None).args[0]
    _, sched, _, _ = build(FakeCLIP(), "0s: a fox\n5s: a lake\n9s: the ice", scope="segment")
    latent, log = sample(backbone, sched, length=189, retrieval=retrieval)       # 48 latent frames
    assert latent["samples"].shape == (1, 16, 48, 8, 12)
    assert [s["block_start"] for s in log.switches] == [21, 36]
    starts = {0: 0, 1: 21, 2: 36}
    assert log.records and all(min(r["global_frames"]) >= starts[r["segment"]] for r in log.records)
    (img,) = N["LongLiveRAG_RetrievalMap"].execute(log, 600, 400).args
    assert img.shape == (1, 400, 600, 3)


def test_a_line_that_begins_after_the_video_ends_is_refused_naming_it(models_dir):  # noqa: F811
    backbone, _ = load(models_dir)
    _, sched, _, _ = build(FakeCLIP(), "0s: a\n2s: b\n30s: c")
    with pytest.raises(ValueError, match="Prompt Schedule line 3 '30s: c' would begin at latent frame 120"):
        sample(backbone, sched)


def test_a_schedule_encoded_for_another_backbone_is_refused(models_dir):  # noqa: F811
    backbone, _ = load(models_dir)
    _, sched, _, _ = build(FakeCLIP(width=4096), "0s: a")
    with pytest.raises(ValueError, match="4096 wide but the backbone expects 64"):
        sample(backbone, sched)
