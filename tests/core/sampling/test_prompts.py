"""Prompt schedules as a user writes them (core/sampling/prompts.py): the text and JSON forms, cut marks, where each
prompt begins, and the one-line errors. Schedules in embeddings files: test_prompt_files.py."""
import pytest
import torch

from core.latents.format import WAN21
from core.sampling.prompts import (PromptSchedule, Segment, fire_frames, parse_schedule_json, parse_schedule_text,
                                   read_schedule_file, timeline)

STORY = """# a fox's morning
0s: a red fox trots through a snowy birch forest
10s: the fox stops at the edge of a frozen lake

60f: the ice cracks under its paws
"""


def test_text_schedule_reads_seconds_and_latent_frames():
    timed = parse_schedule_text(STORY, latent=WAN21)
    assert [(p.frame, p.text) for p in timed] == [(0, "a red fox trots through a snowy birch forest"),
                                                  (40, "the fox stops at the edge of a frozen lake"),
                                                  (60, "the ice cracks under its paws")]
    assert [p.where for p in timed] == ["schedule line 2", "schedule line 3", "schedule line 5"]


def test_seconds_become_the_first_latent_frame_at_or_after_them():
    assert [p.frame for p in parse_schedule_text("0s: a\n0.3s: b\n2.5s: c", latent=WAN21)] == [0, 2, 10]
    assert parse_schedule_text("0s: a\n11f: d: with a colon", latent=WAN21)[1].text == "d: with a colon"


def test_json_schedule_is_the_same_schedule():
    data = [{"time": "0s", "prompt": "a red fox trots through a snowy birch forest"},
            {"time": 10, "prompt": "the fox stops at the edge of a frozen lake"},
            {"time": "60f", "prompt": "the ice cracks under its paws"}]
    assert [(p.frame, p.text) for p in parse_schedule_json(data, latent=WAN21)] == \
           [(p.frame, p.text) for p in parse_schedule_text(STORY, latent=WAN21)]


def test_a_schedule_file_is_read_by_its_suffix(tmp_path):
    (tmp_path / "story.txt").write_text(STORY)
    (tmp_path / "story.json").write_text('[{"time": "0s", "prompt": "a"}, {"time": "3s", "prompt": "b"}]')
    assert [p.frame for p in read_schedule_file(tmp_path / "story.txt", WAN21)] == [0, 40, 60]
    assert [p.frame for p in read_schedule_file(tmp_path / "story.json", WAN21)] == [0, 12]
    assert read_schedule_file(tmp_path / "story.txt", WAN21)[1].where == "story.txt line 3"


@pytest.mark.parametrize("text, message", [
    ("0s: a\n12s: b\n10s: c", "line 3 '10s: c' asks for latent frame 40, not after schedule line 2"),
    ("0s: a\n12s: b\n12s: c", "times must increase"),
    ("0s: a\n12s:", "line 2 '12s:' has no prompt after the time"),
    ("0s: a\nthe fox stops", "line 2 'the fox stops' does not parse; write '<time>: <prompt>'"),
    ("0s: a\n12 s: b", "line 2 '12 s: b' does not parse"),
    ("0s: a\n12m: b", "does not parse"),
    ("0s: a\n1.5f: b", "time '1.5f' does not parse"),
    ("5s: a", "the first prompt must start at 0s"),
    ("# nothing\n\n", "holds no prompt"),
])
def test_bad_schedule_lines_give_one_clear_line_naming_the_line_and_the_fix(text, message):
    with pytest.raises(ValueError) as err:
        parse_schedule_text(text, latent=WAN21)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_switch_fires_at_the_next_block_start_and_once_per_block():
    assert fire_frames([0, 15, 27], 3) == [0, 15, 27]
    assert fire_frames([0, 13, 20], 3) == [0, 15, 21]            # inside a block: rounded up
    assert fire_frames([0, 12, 25, 26], 3) == [0, 12, 27, 30]    # two in one block: the second one block later


def test_the_timeline_shows_the_rounding():
    lines = timeline([0, 40, 60], ["a", "b", "c"], 3, WAN21)
    assert lines[0] == "a: begins at block 0 = frame 0 (0 s)"
    assert lines[1] == ("b: asks for frame 40 (10 s), inside a block: rounded up to the next block start, "
                        "block 14 = frame 42 (10.5 s)")
    assert lines[2] == "c: begins at block 20 = frame 60 (15 s)"
    assert "already switches" in timeline([0, 25, 26], ["a", "b", "c"], 3, WAN21)[2]


def test_a_prompt_beginning_at_or_past_the_end_is_an_error_naming_it():
    with pytest.raises(ValueError, match="line 3 would begin at latent frame 60 .* at or past the end of the video "
                                         r"\(60 latent frames, 15 s\); make the video longer"):
        fire_frames([0, 40, 58], 3, 60, ["line 1", "line 2", "line 3"], WAN21)
    with pytest.raises(ValueError, match=r"begin at latent frame 60, at or past the end of the video \(60 latent "
                                         r"frames\)"):       # without a format (the loop): frames only
        fire_frames([0, 40, 58], 3, 60, ["line 1", "line 2", "line 3"])
    assert fire_frames([0, 40, 57], 3, 60) == [0, 42, 57]


def test_schedule_segments_must_agree_on_batch_and_width():
    a = torch.zeros(1, 5, 8)
    with pytest.raises(ValueError, match="text_dim = 8"):
        PromptSchedule((Segment(0, a), Segment(6, torch.zeros(1, 5, 4), "line 2")))
    with pytest.raises(ValueError, match="starts must increase"):
        PromptSchedule((Segment(0, a), Segment(6, a), Segment(6, a)))
    with pytest.raises(ValueError, match="first prompt must start at frame 0"):
        PromptSchedule((Segment(3, a),))


def test_a_hash_after_the_time_marks_a_cut_and_old_schedules_read_as_before():
    timed = parse_schedule_text("0s: a fox\n# a comment\n3s: it runs\n6s#: a lighthouse at night", latent=WAN21)
    assert [(p.frame, p.cut) for p in timed] == [(0, False), (12, False), (24, True)]
    assert timed[2].text == "a lighthouse at night"


def test_json_schedules_mark_cuts_with_a_flag():
    timed = parse_schedule_json([{"time": 0, "prompt": "a"}, {"time": "6s", "prompt": "b", "cut": True}], latent=WAN21)
    assert [p.cut for p in timed] == [False, True]
    with pytest.raises(ValueError, match='"cut" is "yes"; write true or false'):
        parse_schedule_json([{"time": 0, "prompt": "a"}, {"time": 6, "prompt": "b", "cut": "yes"}], latent=WAN21)


def test_the_first_prompt_cannot_be_a_cut():
    with pytest.raises(ValueError, match="the first prompt begins the video, not a new scene or shot"):
        parse_schedule_text("0s#: a fox", latent=WAN21)
