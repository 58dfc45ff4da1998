"""The CLI's device-memory options (--context-buffers, --kv-cache, --block-swap, --weights) reach the run: the lossless
ones give the same latents as the defaults, the fp8 ones a close video, the run says what it used, and a bad value is
one line."""
import contextlib
import io

import pytest
import torch
from safetensors.torch import load_file, save_file

from core.app import cli
from paths import GOLDEN


@pytest.fixture(scope="module")
def embeds(tmp_path_factory):
    path = tmp_path_factory.mktemp("emb") / "emb.safetensors"
    save_file({"prompt_embeds": load_file(str(GOLDEN / "inputs.safetensors"))["prompt_embeds"]}, str(path))
    return path


def run(tmp_path, embeds, name, *more):
    out = tmp_path / f"{name}.safetensors"
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in ("generate", "--backbone", GOLDEN / "wan_tiny_t2v_bare.safetensors",
                                          "--embeds", embeds, "--frames", 24, "--latent-size", "8x12", "--device",
                                          "cpu", "--mode", "rag", "--top-k", 2, "--recent-exclude", 1, "--out", out,
                                          *more)])
    lines = err.getvalue().splitlines()
    assert code == 0, lines
    return load_file(str(out))["latents"], [line for line in lines if line.startswith("memory:")]


def test_memory_options_reach_the_run(tmp_path, embeds):
    default, said = run(tmp_path, embeds, "default")
    assert said == ["memory: context buffers per-layer, KV cache exact, block swap none (auto: "
                    + said[0].split("(auto: ")[1]]                    # a CPU with room: the exact settings
    lossless, said = run(tmp_path, embeds, "lossless", "--context-buffers", "shared", "--block-swap", "1")
    assert torch.equal(lossless, default)
    assert said[0].startswith("memory: context buffers shared, KV cache exact, block swap 1 block (auto: ")
    compact, said = run(tmp_path, embeds, "compact", "--kv-cache", "fp8", "--weights", "fp8",
                        "--context-buffers", "shared")
    error = ((compact - default).norm() / default.norm()).item()
    assert 0 < error < 0.05, error                                    # fp8 moves the video a little, not much
    assert said[0].startswith("memory: context buffers shared, KV cache fp8")


def test_a_bad_memory_value_is_one_line(capsys):
    with pytest.raises(SystemExit):
        cli.main(["generate", "--kv-cache", "fp4"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--kv-cache" in err and "fp4" in err and "exact" in err
