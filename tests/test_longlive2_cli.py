"""``python -m core`` with a LongLive 2.0 / Wan2.2-TI2V-5B backbone: the family's published settings are
picked from the file (the CLI output equals the golden T2V case with no sampling option given), image
to video holds the image in the first block, cuts in a story, build-corpus → train-encoder → retrieval
on 48-channel latents, and the wrong kind of VAE, start or LoRA is refused naming the fix."""
import json
import os

import pytest
import torch
from safetensors.torch import load_file, save_file

from core.app.cli import main as cli_main
from core.model.transformer import WanConfig, WanTransformer
from core.files.video import read_video

from conftest import DATA
from test_text_encoder import WORDS, build_tokenizer, wan_state_dict
from test_vae import write_tiny_vae
from test_vae22 import write_tiny_vae22

GOLDEN = DATA / "golden_extra"
MODEL = GOLDEN / "longlive2_model"


def rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


def test_generate_picks_the_family_settings_and_reproduces_the_golden_t2v(tmp_path, capsys):
    case = json.loads((GOLDEN / "longlive2_t2v" / "case.json").read_text())
    inputs = load_file(str(GOLDEN / "longlive2_t2v" / "inputs.safetensors"))
    save_file({"prompt_embeds": inputs["prompt_embeds"][:1].contiguous()}, str(tmp_path / "p.safetensors"))
    _, _, t, h, w = case["latent_shape_bcthw"]
    rc = cli_main(["generate", "--embeds", str(tmp_path / "p.safetensors"), "--backbone", str(MODEL / "generator.safetensors"),
                   "--lora", str(MODEL / "lora.pt"), "--num-heads", "2", "--mode", "native", "--frames", str(t),
                   "--latent-size", f"{h}x{w}", "--seed", str(case["seeds"]["noise"]), "--noise-contract", "reference",
                   "--device", "cpu", "--out", str(tmp_path / "out.safetensors")])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "Wan2.2 TI2V-5B backbone: 1280x704 px (Wan2.2 latents, 48 channels, 44x80) at 24 fps; blocks of 8 latent frames, window 32, sink 8, UniPC 4 steps" in err
    ref = load_file(str(GOLDEN / "longlive2_t2v" / "outputs.safetensors"))["latents_bcthw"]
    assert rel_err(load_file(str(tmp_path / "out.safetensors"))["latents"], ref) <= 1e-4


def test_a_16_channel_start_on_the_5b_is_refused_before_generating(tmp_path, capsys):
    save_file({"prompt_embeds": torch.zeros(1, 4, 64)}, str(tmp_path / "p.safetensors"))
    save_file({"latents": torch.zeros(1, 16, 8, 2, 4)}, str(tmp_path / "start.safetensors"))
    rc = cli_main(["generate", "--embeds", str(tmp_path / "p.safetensors"), "--backbone", str(MODEL / "generator.safetensors"),
                   "--num-heads", "2", "--mode", "native", "--frames", "16", "--latent-size", "2x4", "--device", "cpu",
                   "--continue-from", str(tmp_path / "start.safetensors"), "--out", str(tmp_path / "o.safetensors")])
    assert rc == 2
    assert "takes 48-channel Wan2.2 latents: encode the start with the Wan2.2 VAE" in capsys.readouterr().err
    assert not (tmp_path / "o.safetensors").exists()


def test_a_wan2_1_lora_on_the_5b_names_the_lora_to_use(tmp_path, capsys):
    save_file({"prompt_embeds": torch.zeros(1, 4, 64)}, str(tmp_path / "p.safetensors"))
    rc = cli_main(["generate", "--embeds", str(tmp_path / "p.safetensors"), "--backbone", str(MODEL / "generator.safetensors"),
                   "--lora", str(_small_lora(tmp_path)),
                   "--num-heads", "2", "--frames", "8", "--latent-size", "2x4", "--device", "cpu",
                   "--out", str(tmp_path / "o.safetensors")])
    assert rc == 2 and "use LongLive 2.0's lora_checkpoint.pt" in capsys.readouterr().err


def _small_lora(tmp_path):
    from test_checkpoint import peft_lora, random_state
    torch.save({"generator_lora": peft_lora(random_state(0, WanConfig(dim=64, ffn_dim=128, num_layers=2, num_heads=1,
                                                                      text_dim=64)))}, tmp_path / "longlive_lora.pt")
    return tmp_path / "longlive_lora.pt"


# ------------------------------------------------------------------------------ text mode
@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """A tiny umT5 (Wan layout), the tiny Wan2.2 and Wan2.1 VAEs and a tiny 5B-style backbone (text_dim 32)."""
    root = tmp_path_factory.mktemp("ll2")
    vocab = 3 + len(WORDS) + 27
    build_tokenizer(root / "wan" / "google" / "umt5-xxl")
    torch.save({k: v.to(torch.bfloat16) for k, v in wan_state_dict(vocab).items()},
               root / "wan" / "models_t5_umt5-xxl-enc-bf16.pth")
    write_tiny_vae22(root)
    write_tiny_vae(root)
    torch.manual_seed(1)
    model = WanTransformer(WanConfig(dim=64, ffn_dim=128, num_layers=2, num_heads=2, text_dim=32, freq_dim=32,
                                     in_dim=48, out_dim=48))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(root / "wan2.2_ti2v_5B_tiny.safetensors"))
    return root


def text_args(assets, out, *extra):
    return ["generate", "--backbone", str(assets / "wan2.2_ti2v_5B_tiny.safetensors"), "--num-heads", "2",
            "--text-encoder", str(assets / "wan"), "--vae", str(assets / "vae22" / "vae"), "--device", "cpu",
            "--latent-size", "2x4", "--out-dir", str(out), *extra]


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_image_to_video_holds_the_image_in_the_first_block_at_24_fps(assets, tmp_path, offline, capsys):
    from PIL import Image
    img = (torch.rand(32, 64, 3, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8).numpy()
    Image.fromarray(img).save(tmp_path / "start.png")
    # 16 latent frames with a one-frame start: whole blocks of 8 (the image inside the first), not 1 + 8k
    rc = cli_main(text_args(assets, tmp_path / "v", "--prompt", "a red cat runs in the snow", "--mode", "native",
                            "--image", str(tmp_path / "start.png"), "--frames", "16"))
    assert rc == 0, capsys.readouterr().err
    video = tmp_path / "v" / "0000_a_red_cat_runs_in_the_snow_native.mp4"
    assert read_video(video).shape == (4 * 15 + 1, 32, 64, 3)
    import av
    with av.open(str(video)) as f:
        assert f.streams.video[0].average_rate == 24
    # a 1 + 8k length is the Wan2.1 rule, not this family's; seconds count at 24 fps (2 s = 12 latent frames → 16)
    assert cli_main(text_args(assets, tmp_path / "w", "--prompt", "x", "--image", str(tmp_path / "start.png"),
                              "--frames", "17")) == 2
    assert "must be a positive multiple of the block size 8 (e.g. 16)" in capsys.readouterr().err


def test_a_wan2_1_vae_for_the_5b_is_refused_naming_the_wan2_2_vae(assets, tmp_path, offline, capsys):
    args = text_args(assets, tmp_path / "v", "--prompt", "x", "--frames", "8", "--mode", "native")
    args[args.index("--vae") + 1] = str(assets / "diffusers" / "vae")
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert "is the Wan2.1 VAE (16 latent channels) but the backbone works in Wan2.2 latents" in err
    assert "wan2.2_vae.safetensors" in err


def test_a_story_with_a_cut_records_the_shot_and_its_offset(assets, tmp_path, offline, capsys):
    (tmp_path / "story.txt").write_text("0s: a red cat runs\n2s cut: the snow falls\n")
    rc = cli_main(text_args(assets, tmp_path / "s", "--prompt-schedule", str(tmp_path / "story.txt"), "--mode", "rag",
                            "--frames", "24", "--top-k", "2"))
    assert rc == 0, capsys.readouterr().err
    log = json.loads(next((tmp_path / "s").glob("*_rag.retrieval.json")).read_text())
    assert [(s["block_start"], s.get("cut"), s.get("rope_offset")) for s in log["switches"]] == [(16, True, 8.0)]


def test_corpus_encoder_and_retrieval_on_48_channel_latents(tmp_path, capsys):
    """build-corpus with the 5B backbone → train-encoder → generate with the trained encoder (mode rag)."""
    torch.manual_seed(0)
    save_file({"prompt_embeds": torch.randn(2, 4, 64)}, str(tmp_path / "p.safetensors"))
    backbone = ["--backbone", str(MODEL / "generator.safetensors"), "--num-heads", "2", "--device", "cpu"]
    assert cli_main(["build-corpus", "--embeds", str(tmp_path / "p.safetensors"), "--frames", "16", "--latent-size",
                     "2x4", "--out", str(tmp_path / "corpus"), *backbone]) == 0, capsys.readouterr().err
    lat = load_file(str(next((tmp_path / "corpus").glob("*.safetensors"))))["latents"]
    assert lat.shape == (16, 48, 2, 4)
    assert cli_main(["train-encoder", "--data", str(tmp_path / "corpus"), "--out", str(tmp_path / "enc"), "--epochs",
                     "1", "--batch-size", "2", "--seq-len", "4", "--hidden-dims", "8", "--latent-dim", "8",
                     "--val-split", "0.5", "--device", "cpu", "--no-amp"]) == 0, capsys.readouterr().err
    ckpt = torch.load(tmp_path / "enc" / "encoder_last.pt", weights_only=True)
    assert ckpt["config"]["in_channels"] == 48
    rc = cli_main(["generate", "--embeds", str(tmp_path / "p.safetensors"), "--frames", "64", "--latent-size", "2x4",
                   "--mode", "rag", "--top-k", "2", "--encoder", str(tmp_path / "enc" / "encoder_last.pt"),
                   "--out", str(tmp_path / "o.safetensors"), "--log", str(tmp_path / "log.json"), *backbone])
    assert rc == 0, capsys.readouterr().err
    log = json.loads((tmp_path / "log.json").read_text())
    assert log and all(len(r["pool_indices"][0]) <= 2 for r in log)


@pytest.mark.parametrize("name, sink", [("longlive2_multishot_sink", []), ("longlive2_multishot_nosink", ["--no-multi-shot-sink"])])
def test_an_embeds_file_with_cuts_reproduces_the_golden_multishot_cases(tmp_path, capsys, name, sink):
    case = json.loads((GOLDEN / name / "case.json").read_text())
    e = load_file(str(GOLDEN / name / "inputs.safetensors"))["prompt_embeds"]
    rows = case["prompt_rows"]
    row = lambda text: e[rows[text]:rows[text] + 1].contiguous()   # noqa: E731
    save_file({"prompt_embeds": row("p0"), "prompt_embeds_1": row("p1"), "prompt_embeds_2": row("p2"),
               "prompt_embeds_1_cut": row("The scene transitions. p1"), "prompt_embeds_2_cut": row("The scene transitions. p2"),
               "switch_frames": torch.tensor([8, 32]), "cuts": torch.tensor([1, 1])}, str(tmp_path / "shots.safetensors"))
    _, _, t, h, w = case["latent_shape_bcthw"]
    rc = cli_main(["generate", "--embeds", str(tmp_path / "shots.safetensors"), "--backbone", str(MODEL / "generator.safetensors"),
                   "--lora", str(MODEL / "lora.pt"), "--num-heads", "2", "--mode", "native", "--frames", str(t),
                   "--latent-size", f"{h}x{w}", "--seed", str(case["seeds"]["noise"]), "--noise-contract", "reference",
                   "--device", "cpu", "--out", str(tmp_path / "out.safetensors"), *sink])
    assert rc == 0, capsys.readouterr().err
    ref = load_file(str(GOLDEN / name / "outputs.safetensors"))["latents_bcthw"]
    assert rel_err(load_file(str(tmp_path / "out.safetensors"))["latents"], ref) <= 1e-4
