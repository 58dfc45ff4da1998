"""Stories from the command line: ``generate --embeds`` with a schedule, ``--prompt-schedule`` text → video, the
switch options and their errors."""
import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from core.app.cli import build_parser, sampling_request
from core.app.plan import default_family
from core.sampling.request import resolve
from core.sampling.config import SwitchConfig
from core.files.video import read_video

from paths import DATA, GOLDEN, ROOT

CASE = DATA / "golden_extra" / "longlive_switch_offgrid_sink1_win9"
BASE = ["generate", "--backbone", GOLDEN / "wan_tiny_t2v_bare.safetensors", "--num-heads", 2, "--latent-size", "8x12",
        "--device", "cpu", "--mode", "native"]


def run_cli(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "core", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          env=dict(os.environ, HF_HUB_OFFLINE="1"), timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(proc.stderr[-3000:])
    return proc


@pytest.fixture(scope="module")
def schedule_file(tmp_path_factory):
    e = load_file(str(CASE / "inputs.safetensors"))["prompt_embeds"]
    path = tmp_path_factory.mktemp("sched") / "story.safetensors"
    save_file({"prompt_embeds": e[0:1].contiguous(), "prompt_embeds_1": e[1:2].contiguous(),
               "prompt_embeds_2": e[2:3].contiguous(), "switch_frames": torch.tensor([13, 20])}, str(path))
    return path


def test_embeds_schedule_reproduces_longlive_from_the_command_line(tmp_path, schedule_file):
    out = tmp_path / "out.safetensors"
    proc = run_cli(*BASE, "--embeds", schedule_file, "--frames", 30, "--seed", 44, "--sink-size", 1,
                   "--local-attn-size", 9, "--switch", "recache", "--global-sink", "--out", out,
                   "--noise-contract", "reference")
    ref = load_file(str(CASE / "outputs.safetensors"))["latents_bcthw"]
    got = load_file(str(out))["latents"]
    assert ((got - ref).norm() / ref.norm()) < 1e-5
    assert "switch_frames[0] = 13 (prompt_embeds_1): asks for frame 13 (3.25 s), inside a block: rounded up to " \
           "the next block start, block 5 = frame 15 (3.75 s)" in proc.stderr


def test_identical_prompts_with_switch_none_equal_one_prompt_from_the_command_line(tmp_path):
    e = load_file(str(GOLDEN / "inputs.safetensors"))["prompt_embeds"]
    save_file({"prompt_embeds": e}, str(tmp_path / "one.safetensors"))
    save_file({"prompt_embeds": e, "prompt_embeds_1": e.clone(), "switch_frames": torch.tensor([7])},
              str(tmp_path / "two.safetensors"))
    outs = []
    for name in ("one", "two"):
        outs.append(tmp_path / f"{name}_out.safetensors")
        run_cli(*BASE[:-2], "--mode", "rag", "--embeds", tmp_path / f"{name}.safetensors", "--frames", 30,
                "--switch", "none", "--out", outs[-1])
    assert torch.equal(load_file(str(outs[0]))["latents"], load_file(str(outs[1]))["latents"])


def test_switch_options_keep_their_spellings():
    args = build_parser().parse_args(["generate", "--backbone", "b", "--embeds", "e", "--switch", "none",
                                      "--no-global-sink", "--retrieval-scope", "segment"])
    assert resolve(sampling_request(args, "rag"), default_family().defaults).switch == SwitchConfig("none", False, "segment")
    args = build_parser().parse_args(["generate", "--backbone", "b", "--embeds", "e"])
    assert resolve(sampling_request(args, "rag"), default_family().defaults).switch == SwitchConfig("recache", True, "all")


def test_a_switch_past_the_end_exits_2_naming_it(tmp_path, schedule_file):
    out = tmp_path / "x.safetensors"
    proc = run_cli(*BASE, "--embeds", schedule_file, "--frames", 21, "--out", out, check=False)
    assert proc.returncode == 2 and not out.exists()
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: switch_frames[1] = 20 (prompt_embeds_2) would begin at latent frame 21 (5.25 s), at or past the end "
        "of the video (21 latent frames, 5.25 s); make the video longer or move it earlier")


@pytest.mark.parametrize("text, message", [
    ("0s: a fox\n12s: a lake\n10s: ice", "story.txt line 3 '10s: ice' asks for latent frame 40, not after"),
    ("0s: a fox\n12s:\n", "story.txt line 2 '12s:' has no prompt after the time"),
    ("0s: a fox\nthe fox stops", "story.txt line 2 'the fox stops' does not parse"),
    ("0s: a fox\n30s: the end", "story.txt line 2 '30s: the end' would begin at latent frame 120 (30 s), at or past "
                                "the end of the video (24 latent frames, 6 s)"),
])
def test_bad_prompt_schedules_exit_2_with_one_line_before_loading_anything(tmp_path, text, message):
    (tmp_path / "story.txt").write_text(text)
    proc = run_cli(*BASE, "--prompt-schedule", tmp_path / "story.txt", "--frames", 24, "--text-encoder",
                   tmp_path / "no_te", "--vae", tmp_path / "no_vae", "--out-dir", tmp_path / "out", check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]


def test_a_schedule_without_a_text_encoder_names_the_embeds_route(tmp_path, capsys):
    from core.app.cli import main
    (tmp_path / "story.txt").write_text("0s: a fox\n1s: a lake\n")
    code = main([*map(str, BASE), "--prompt-schedule", str(tmp_path / "story.txt"), "--frames", "24",
                 "--out-dir", str(tmp_path / "out")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and not (tmp_path / "out").exists()
    assert lines[0].startswith("error: generating from text (--prompt-schedule) needs --text-encoder, --vae; ")
    assert "--embeds FILE with --out" in lines[0] and "'switch_frames'" in lines[0]


def test_prompt_schedule_makes_one_story_per_mode(assets, tmp_path):  # noqa: F811
    (tmp_path / "story.txt").write_text("0s: a red cat runs in the snow\n2s: the cat sleeps\n3.5s: a dog barks\n")
    out = tmp_path / "videos"
    proc = run_cli("generate", "--prompt-schedule", tmp_path / "story.txt", "--frames", 21, "--latent-size", "4x6",
                   "--mode", "both", "--backbone", assets / "causal_forcing_tiny.safetensors", "--num-heads", 2,
                   "--text-encoder", assets / "wan", "--vae", assets / "wan" / "Wan2.1_VAE.pth", "--device", "cpu",
                   "--out-dir", out)
    stem = "story_a_red_cat_runs_in_the_snow"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{stem}_native.mp4", f"{stem}_rag.mp4", f"{stem}_rag.retrieval.json", f"{stem}_rag.retrieval_map.png",
         f"{stem}_grid.mp4"])
    assert "story.txt line 3 '3.5s: a dog barks': asks for frame 14 (3.5 s), inside a block: rounded up" in proc.stderr
    log = json.loads((out / f"{stem}_rag.retrieval.json").read_text())
    assert [(s["segment"], s["block_start"]) for s in log["switches"]] == [(1, 9), (2, 15)]
    assert len(log["schedule"]) == 3 and log["blocks"][-1]["segment"] == 2
    assert read_video(out / f"{stem}_native.mp4").shape == (4 * 20 + 1, 32, 48, 3)
