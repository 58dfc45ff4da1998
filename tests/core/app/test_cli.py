"""``python -m core generate`` end to end, as a user runs it from a checkout; ``generate --strategy NAME``: published
defaults filled in, goldens reproduced, clear errors."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from paths import DATA, GOLDEN, ROOT


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
            "--device", "cpu", "--out", out, "--log", log, "--timings", timings, "--noise-contract", "reference")
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
    (["--frames", 24, "--local-attn-size", 8], "window (local_attn_size) ≥ 10"),
    (["--frames", 24, "--backbone", "nope.pt"], "nope.pt' does not exist"),
])
def test_bad_input_exits_2_with_a_message_and_writes_nothing(tmp_path, embeds, args, message):
    out = tmp_path / "x.safetensors"
    base = ["generate", "--backbone", GOLDEN / "wan_tiny_t2v_bare.safetensors", "--num-heads", 2, "--embeds", embeds,
            "--latent-size", "8x12", "--device", "cpu", "--out", out]
    proc = run_cli(*base, *args, check=False)
    assert proc.returncode == 2 and message in proc.stderr
    assert not out.exists() and not list(tmp_path.glob("*.part*"))


def _blocked_output(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    return blocker / "out.safetensors"


def _read_only_output(tmp_path):
    if os.geteuid() == 0:          # root writes through file modes; /proc refuses everyone
        return Path("/proc/out.safetensors")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    return folder / "out.safetensors"


@pytest.mark.parametrize("args, message", [
    (["--frames", 25], "frames=25: latent frames must be a positive multiple of the block size 3"),
    (["--latent-size", "7x9"], "latent size 7x9 must be divisible by the patch size 2x2"),
    (["--latent-size", "0x0"], "latent size 0x0 must be positive"),
    (["--latent-size", "big"], "must look like HxW"),
    (["--out", _blocked_output], "is a file, not a folder"),
    (["--out", _read_only_output], "is not writable"),
    (["--log", _blocked_output], "is a file, not a folder"),
])
def test_bad_input_is_refused_before_the_backbone_is_loaded(tmp_path, embeds, args, message):
    """The backbone path does not exist: had anything been loaded first, that would be the error."""
    args = [a(tmp_path) if callable(a) else a for a in args]
    base = {"--frames": 24, "--latent-size": "8x12", "--out": tmp_path / "x.safetensors"}
    base.update(zip(args[::2], args[1::2]))
    flat = [str(x) for kv in base.items() for x in kv]
    proc = run_cli("generate", "--backbone", tmp_path / "never_loaded.pt", "--embeds", embeds, "--device", "cpu",
                   *flat, check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert message in proc.stderr and "never_loaded" not in proc.stderr
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert not list(tmp_path.glob("**/*.safetensors")) and not list(tmp_path.glob("**/*.part*"))


def test_demo_into_an_unwritable_folder_is_one_line_and_exit_2(tmp_path):
    proc = run_cli("demo", "--out", _blocked_output(tmp_path), check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "is a file, not a folder" in proc.stderr


def _interrupt_after_block(cmd, block: int) -> tuple[int, list[str]]:
    # SIGINT back to its default in the child: a test run started in the background (e.g. `cmd &` in a
    # script) inherits SIGINT ignored, and Python then never turns it into KeyboardInterrupt
    proc = subprocess.Popen(list(map(str, cmd)), cwd=ROOT, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = []
    while not any(line.startswith(f"block {block}/") for line in seen):
        line = proc.stderr.readline()
        assert line, "".join(seen)
        seen.append(line)
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    return proc.wait(timeout=60), [line for line in rest.splitlines() if not line.startswith("block")]


def test_ctrl_c_keeps_the_finished_blocks_and_resume_finishes_the_run_exactly(tmp_path, embeds):
    # 100 blocks of 16x24 (~50 ms each on one thread): the run outlasts the parent's reaction to "block 3"
    # by seconds even on a busy machine
    common = ["--backbone", GOLDEN / "wan_tiny_t2v_bare.safetensors", "--embeds", embeds, "--frames", 300,
              "--latent-size", "16x24", "--device", "cpu", "--seed", 3]
    ref_dir = tmp_path / "ref"
    ref_dir.mkdir()
    run_cli("generate", *common, "--out", ref_dir / "long.safetensors", "--log", ref_dir / "log.json")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    out, log = run_dir / "long.safetensors", run_dir / "log.json"
    code, tail = _interrupt_after_block([sys.executable, "-m", "core", "generate", *common, "--out", out, "--log", log], 3)
    assert code == 130, f"the run ended with {code} before the interrupt reached it: {tail}"
    partial = run_dir / "long.partial.safetensors"
    assert len(tail) == 2 and tail[0].startswith("kept the ") and f"--resume {partial}" in tail[0]
    assert tail[1].startswith("interrupted after block ") and "nothing half-written" in tail[1]
    assert sorted(p.name for p in run_dir.iterdir()) == [partial.name]      # no half-written output
    done = load_file(str(partial))["latents"]
    assert done.shape[2] >= 9 and done.shape[2] % 3 == 0
    # a different seed may not resume it
    bad = run_cli("generate", *common[:-1], 4, "--out", out, "--resume", partial, check=False)
    assert bad.returncode == 2 and "seed: 3 (partial) vs 4 (now)" in bad.stderr and not out.exists()
    run_cli("generate", *common, "--out", out, "--log", log, "--resume", partial)
    assert torch.equal(load_file(str(out))["latents"], load_file(str(ref_dir / "long.safetensors"))["latents"])
    assert json.loads(log.read_text()) == json.loads((ref_dir / "log.json").read_text())
    assert not partial.exists()


def test_continue_from_extends_a_finished_video_exactly(tmp_path, embeds):
    common = ["--backbone", GOLDEN / "wan_tiny_t2v_bare.safetensors", "--embeds", embeds, "--latent-size", "8x12",
              "--device", "cpu", "--seed", 5]
    run_cli("generate", *common, "--frames", 30, "--out", tmp_path / "long.safetensors")
    run_cli("generate", *common, "--frames", 15, "--out", tmp_path / "short.safetensors")
    run_cli("generate", *common, "--frames", 30, "--out", tmp_path / "ext.safetensors",
            "--continue-from", tmp_path / "short.safetensors")
    assert torch.equal(load_file(str(tmp_path / "ext.safetensors"))["latents"],
                       load_file(str(tmp_path / "long.safetensors"))["latents"])
    bad = run_cli("generate", *common, "--frames", 12, "--out", tmp_path / "x.safetensors",
                  "--continue-from", tmp_path / "long.safetensors", check=False)
    assert bad.returncode == 2 and "already holds 30 latent frames" in bad.stderr


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


def test_compile_and_prefetch_reach_the_run(monkeypatch):
    from core.app import cli, jobs
    from core.formats import loader
    args = cli.build_parser().parse_args(["generate", "--backbone", str(GOLDEN / "wan_tiny_t2v_bare.safetensors"),
                                          "--num-heads", "2", "--frames", "12", "--compile", "--prefetch", "off",
                                          "--embeds", "e.safetensors"])
    from core.app.plan import default_family
    from core.sampling.request import resolve
    wan21 = default_family().defaults
    assert cli.sampling_request(args, "rag").retrieval.prefetch == "off"
    default = resolve(cli.sampling_request(cli.build_parser().parse_args(["generate", "--backbone", "x", "--prompt",
                                                                          "p"]), "rag"), wan21)
    assert default.retrieval.prefetch == "auto"
    assert default.retrieval.prefetches(torch.device("cuda")) and not default.retrieval.prefetches(torch.device("cpu"))
    spec = cli.model_spec(args)
    compiled = []
    monkeypatch.setattr(loader.WanTransformer, "compile_blocks", lambda self, **kw: compiled.append(self) or self)
    model, _ = jobs.load_models(spec, torch.device("cpu"), torch.float32, need_encoder=False)
    assert compiled == [model.model]


# ------------------------------------------------------------------------------ --strategy
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
