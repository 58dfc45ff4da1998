"""``python -m core generate`` end to end, as a user runs it from a checkout."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import GOLDEN

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "core", *map(str, args)], cwd=ROOT, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(proc.stderr)
    return proc


@pytest.fixture(scope="module")
def embeds(tmp_path_factory):
    path = tmp_path_factory.mktemp("emb") / "emb.safetensors"
    save_file({"prompt_embeds": load_file(str(GOLDEN / "inputs.safetensors"))["prompt_embeds"]}, str(path))
    return path


def test_generate_reproduces_the_golden_case_from_the_command_line(tmp_path, embeds):
    out, log, timings = tmp_path / "out.safetensors", tmp_path / "log.json", tmp_path / "t.json"
    run_cli("generate", "--backbone", GOLDEN / "wan_tiny_t2v_bare.safetensors", "--num-heads", 2, "--embeds", embeds,
            "--frames", 48, "--latent-size", "8x12", "--seed", 42, "--mode", "rag", "--encoder", GOLDEN / "ae.pt",
            "--device", "cpu", "--out", out, "--log", log, "--timings", timings)
    ref = load_file(str(GOLDEN / "outputs.safetensors"))["latents_bcthw"]
    got = load_file(str(out))["latents"]
    assert ((got - ref).norm() / ref.norm()) < 1e-4
    records = json.loads(log.read_text())
    golden = json.loads((GOLDEN / "memory_log.json").read_text())
    assert [r["pool_indices"] for r in records] == [g["selected_pool_indices"][0] for g in golden]
    t = json.loads(timings.read_text())
    assert len(t["blocks"]) == 16 and t["pool_bytes_per_frame"] > 0 and t["peak_memory_mb"] > 0
    assert set(t["blocks"][0]) == {"block", "retrieval_s", "denoise_s", "context_s", "total_s"}


def test_native_mode_writes_no_retrievals(tmp_path, embeds):
    out, log = tmp_path / "n.safetensors", tmp_path / "n.json"
    run_cli("generate", "--backbone", GOLDEN / "wan_tiny_t2v_bare.safetensors", "--num-heads", 2, "--embeds", embeds,
            "--frames", 24, "--latent-size", "8x12", "--mode", "native", "--device", "cpu", "--out", out, "--log", log)
    assert json.loads(log.read_text()) == []
    assert load_file(str(out))["latents"].shape == (1, 16, 24, 8, 12)


@pytest.mark.parametrize("args, message", [
    (["--frames", 10], "multiple of the block size"),
    (["--frames", 24, "--local-attn-size", 8], "local_attn_size"),
    (["--frames", 24, "--backbone", "nope.pt"], "nope.pt' does not exist"),
])
def test_bad_input_exits_2_with_a_message_and_writes_nothing(tmp_path, embeds, args, message):
    out = tmp_path / "x.safetensors"
    base = ["generate", "--backbone", GOLDEN / "wan_tiny_t2v_bare.safetensors", "--num-heads", 2, "--embeds", embeds,
            "--latent-size", "8x12", "--device", "cpu", "--out", out]
    proc = run_cli(*base, *args, check=False)
    assert proc.returncode == 2 and message in proc.stderr
    assert not out.exists() and not list(tmp_path.glob("*.part*"))


def test_wrong_text_dim_is_explained(tmp_path):
    emb = tmp_path / "e.safetensors"
    save_file({"prompt_embeds": torch.zeros(1, 8, 4096)}, str(emb))
    proc = run_cli("generate", "--backbone", GOLDEN / "wan_tiny_t2v_bare.safetensors", "--num-heads", 2,
                   "--embeds", emb, "--frames", 3, "--latent-size", "8x12", "--device", "cpu",
                   "--out", tmp_path / "o.safetensors", check=False)
    assert proc.returncode == 2 and "text_dim 4096 but the backbone expects 64" in proc.stderr


def test_corpus_then_training_then_generation_with_the_trained_encoder(tmp_path):
    """build-corpus → train-encoder → generate --encoder, all from the command line."""
    emb = tmp_path / "emb.safetensors"
    save_file({"prompt_embeds": torch.randn(3, 10, 64, generator=torch.Generator().manual_seed(1))}, str(emb))
    backbone = GOLDEN / "wan_tiny_t2v_bare.safetensors"
    run_cli("build-corpus", "--backbone", backbone, "--num-heads", 2, "--embeds", emb, "--frames", 12,
            "--latent-size", "8x12", "--device", "cpu", "--out", tmp_path / "corpus")
    files = sorted((tmp_path / "corpus").glob("*.safetensors"))
    assert [f.name for f in files] == ["emb_000.safetensors", "emb_001.safetensors", "emb_002.safetensors"]
    assert load_file(str(files[0]))["latents"].shape == (12, 16, 8, 12)
    run_cli("train-encoder", "--data", tmp_path / "corpus", "--out", tmp_path / "enc", "--epochs", 2,
            "--batch-size", 2, "--latent-dim", 16, "--hidden-dims", 8, 16, "--device", "cpu")
    log = tmp_path / "log.json"
    run_cli("generate", "--backbone", backbone, "--num-heads", 2, "--embeds", GOLDEN / "inputs.safetensors",
            "--frames", 27, "--latent-size", "8x12", "--device", "cpu",
            "--encoder", tmp_path / "enc" / "encoder_best.pt", "--out", tmp_path / "o.safetensors", "--log", log)
    assert len(json.loads(log.read_text())) > 0
