"""``python -m core convert``: what it writes and says, and one line with exit code 2 for a bad request."""
import pytest
import torch

from core.app.cli import main
from core.formats import load_backbone
from core.formats.convert import read_file_settings

from checkpoints import assert_same_weights, peft_lora, prefixed
from factory import tiny_model


@pytest.fixture
def released(tmp_path):
    state = {k: v.to(torch.bfloat16) for k, v in tiny_model(0, dim=256, heads=2, text_dim=64).state_dict().items()}
    torch.save({"generator_ema": prefixed(state, "model.")}, tmp_path / "longlive_base.pt")
    torch.save(peft_lora(state), tmp_path / "longlive_lora.pt")
    return tmp_path, state


def test_convert_writes_the_backbone_and_the_lora_and_says_how_to_load_them(released, capsys):
    root, state = released
    code = main(["convert", "--backbone", str(root / "longlive_base.pt"), "--lora", str(root / "longlive_lora.pt"),
                 "--lora-out", f"{root}/loras/", "--out", f"{root}/models/"])
    lines = capsys.readouterr().err.splitlines()
    assert code == 0 and len(lines) == 2
    assert "longlive_base_bf16.safetensors (Self-Forcing, Wan2.1 text-to-video; bf16" in lines[0]   # generator_ema
    assert "Load Diffusion Model" in lines[0] and "LoraLoaderModelOnly" in lines[1] and "(LongLive LoRA, 20 layers)" in lines[1]
    assert_same_weights(load_backbone(root / "models" / "longlive_base_bf16.safetensors"), state)
    assert read_file_settings(root / "loras" / "longlive_lora.safetensors").kind == "lora"


def test_convert_to_fp8_prints_the_weight_error(released, capsys):
    root, _ = released
    assert main(["convert", "--backbone", str(root / "longlive_base.pt"), "--dtype", "fp8",
                 "--out", str(root / "sf.safetensors")]) == 0
    err = capsys.readouterr().err
    assert "fp8: relative weight error 2." in err and "% overall" in err
    assert read_file_settings(root / "sf.safetensors").preset == "Self-Forcing"


@pytest.mark.parametrize("args,message", [
    (["--out", "{root}/longlive_base.pt"], "does not end in .safetensors"),
    (["--out", "{root}/o.safetensors", "--lora-out", "{root}/o.safetensors", "--lora", "{root}/longlive_lora.pt"],
     "same file as output"),
    (["--out", "{root}/missing/deeper/o.safetensors"], "does not exist either"),
])
def test_a_bad_request_is_one_line_and_exit_2(released, capsys, args, message):
    root, _ = released
    before = sorted(root.iterdir())
    code = main(["convert", "--backbone", str(root / "longlive_base.pt"), *[a.format(root=root) for a in args]])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1 and sorted(root.iterdir()) == before
