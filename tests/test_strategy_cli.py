"""``generate --strategy NAME`` from the command line: published defaults filled in, goldens reproduced, clear errors."""
import pytest
import torch
from safetensors.torch import load_file, save_file

from test_cli import run_cli

from conftest import DATA, GOLDEN

CASES = DATA / "golden_extra"
BASE = ["generate", "--backbone", GOLDEN / "wan_tiny_t2v_bare.safetensors", "--num-heads", 2, "--latent-size", "8x12",
        "--device", "cpu", "--noise-contract", "reference"]


def rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


def test_infinity_rope_with_its_defaults_reproduces_the_golden(tmp_path):
    inputs = load_file(str(CASES / "infinity_rope_win6" / "inputs.safetensors"))
    save_file({"prompt_embeds": inputs["prompt_embeds"]}, str(tmp_path / "emb.safetensors"))
    run_cli(*BASE, "--strategy", "infinity-rope", "--embeds", tmp_path / "emb.safetensors", "--frames", 36,
            "--seed", 42, "--out", tmp_path / "out.safetensors")
    ref = load_file(str(CASES / "infinity_rope_win6" / "outputs.safetensors"))["latents_bcthw"]
    assert rel_err(load_file(str(tmp_path / "out.safetensors"))["latents"], ref) <= 1e-4


def test_a_schedule_file_with_a_cut_reproduces_the_flush_and_cut_golden(tmp_path):
    emb = load_file(str(CASES / "infinity_rope_flush" / "inputs.safetensors"))["prompt_embeds"]
    save_file({"prompt_embeds": emb[:1], "prompt_embeds_1": emb[1:2], "prompt_embeds_2": emb[2:3],
               "switch_frames": torch.tensor([12, 24]), "switch_cuts": torch.tensor([0, 1])},
              str(tmp_path / "emb.safetensors"))
    run_cli(*BASE, "--strategy", "infinity-rope", "--embeds", tmp_path / "emb.safetensors", "--frames", 36,
            "--seed", 43, "--out", tmp_path / "out.safetensors")
    ref = load_file(str(CASES / "infinity_rope_flush" / "outputs.safetensors"))["latents_bcthw"]
    assert rel_err(load_file(str(tmp_path / "out.safetensors"))["latents"], ref) <= 1e-4


@pytest.mark.parametrize("args, message", [
    (["--strategy", "memrope", "--local-attn-size", 7], "at least 8 frames, but the window is 7; use a window "
                                                         "(local_attn_size) ≥ 8"),
    (["--strategy", "memrope", "--mode", "rag"], "--strategy memrope and --mode rag disagree"),
    (["--strategy", "infinite-rope"], "invalid choice: 'infinite-rope' (choose from"),
    (["--strategy", "deep-forcing", "--switch", "recache"], "switch 'recache' does not apply to strategy 'deep-forcing'"),
])
def test_bad_strategy_input_exits_2_with_the_numbers_or_the_names(tmp_path, args, message):
    emb = tmp_path / "emb.safetensors"
    save_file({"prompt_embeds": torch.zeros(1, 4, 64)}, str(emb))
    proc = run_cli(*BASE, "--embeds", emb, "--frames", 24, "--out", tmp_path / "x.safetensors", *args, check=False)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    if "invalid choice" in message:
        assert all(name in proc.stderr for name in ("native", "rag", "infinity-rope", "memrope", "deep-forcing"))
    assert not (tmp_path / "x.safetensors").exists()


def test_help_lists_every_strategy_with_its_defaults():
    out = run_cli("generate", "--help").stdout
    for text in ("infinity-rope (Wan 1.3B 6, LongLive 2.0 16)", "memrope (Wan 1.3B 12, LongLive 2.0 32)",
                 "deep-forcing (Wan 1.3B 21, LongLive 2.0 56)", "rag (Wan 1.3B 12, LongLive 2.0 32)",
                 "(Wan 1.3B 10, LongLive 2.0 27)", "(∞-RoPE): block-relativistic RoPE"):
        assert text in " ".join(out.split()), text
