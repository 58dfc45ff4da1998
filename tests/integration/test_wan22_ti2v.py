"""The Wan2.2 TI2V-5B family (LongLive 2.0) end to end through both front ends.

The nodes, without ComfyUI: a LongLive 2.0 backbone on Load Backbone and the AR Block Sampler. Its family's
settings are picked when the widgets are left at auto, and the golden cases of the published code
(tests/data/golden_extra/longlive2_*) reproduce through the nodes; the LATENT is ComfyUI's Wan22 layout; a Prompt
Schedule reads seconds at 24 fps and cut lines start shots; bad inputs (a Wan2.1 start or VAE, a 1.3B LoRA,
timesteps for a UniPC backbone) are refused naming the fix.

``python -m core``: the family's published settings are picked from the file (the CLI output equals the golden T2V
case with no sampling option given), image to video holds the image in the first block, cuts in a story,
build-corpus → train-encoder → retrieval on 48-channel latents, and the wrong kind of VAE, start or LoRA is refused
naming the fix."""
import json
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from core.app.cli import main as cli_main
from core.files.video import read_video

from factory import tiny_config, tiny_model
from pack import FakeCLIP, N, PACK, bridge, conditioning, load
from paths import DATA
from tiny_files import umt5_state_dict, write_tiny_vae, write_tiny_vae22, write_tokenizer

latent_format = sys.modules[f"{PACK.__name__}.core.latents.format"]
start_mod = sys.modules[f"{PACK.__name__}.nodes.start"]
CASES = DATA / "golden_extra"
LL2 = CASES / "longlive2_model"
AUTO = (-1, 0, 0, "auto", 0.0)          # sink_size, local_attn_size, frames_per_block, steps, shift


@pytest.fixture(autouse=True)
def empty_memo():
    start_mod.MEMO.clear()
    yield
    start_mod.MEMO.clear()


@pytest.fixture
def ll2_dir(models_dir):  # noqa: F811
    """models_dir + the golden tiny LongLive 2.0 as model_bf16.pt (its released layout) and its LoRA."""
    state = load_file(str(LL2 / "generator.safetensors"))            # "model.<Wan name>", the generator dict
    torch.save({"generator": state}, models_dir / "diffusion_models" / "model_bf16.pt")
    (models_dir / "loras" / "lora_checkpoint.pt").symlink_to(LL2 / "lora.pt")
    return models_dir


def load_ll2(lora="lora_checkpoint.pt"):
    return N["LongLiveRAG_LoadBackbone"].execute("model_bf16.pt", lora, 1.0, "float32", "cpu",
                                                 "offload after sampling", num_heads=2)


def case(name):
    folder = CASES / name
    return json.loads((folder / "case.json").read_text()), load_file(str(folder / "inputs.safetensors")), \
        load_file(str(folder / "outputs.safetensors"))["latents_bcthw"]


def rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


def sample(backbone, positive, width, height, length, seed, widgets=AUTO, **kw):
    out = N["LongLiveRAG_ARBlockSampler"].execute(backbone, positive, width, height, length, seed, *widgets, **kw)
    return out.args


def test_load_backbone_names_the_family_and_the_settings_the_sampler_takes_from_it(ll2_dir):
    out = load_ll2()
    backbone, info = out.args
    first, auto, memory = info.splitlines()
    assert memory.startswith("GPU memory of a run at 1280×704 (estimate): native ")
    assert first.startswith("LongLive 2.0 (longlive), Wan2.2 TI2V-5B family; 2 layers, dim 128, 2 heads")
    assert "LoRA lora_checkpoint.pt x1.0 on 20 weights" in first
    assert auto == ("AR Block Sampler at auto: 1280x704 px (Wan2.2 latents, 48 channels, 44x80) at 24 fps; blocks of 8 "
                    "latent frames, window 32, sink 8, UniPC 4 steps, shift 5; a cut line starts a new shot (RoPE "
                    "offset 8, multi-shot sink on)")
    assert out.ui.as_dict() == {"text": (info,)}                     # shown on the node
    assert backbone.backbone.defaults.latent.channels == 48


def test_the_sampler_at_auto_reproduces_the_longlive2_text_to_video_golden(ll2_dir):
    spec, inputs, ref = case("longlive2_t2v")
    backbone, _ = load_ll2().args
    _, _, t, h, w = spec["latent_shape_bcthw"]                     # 64 latent frames of 6x8: 253 frames, 128x96 px
    latent, log, info = sample(backbone, [[inputs["prompt_embeds"][:1], {}]], w * 16, h * 16, 4 * (t - 1) + 1,
                               spec["seeds"]["noise"], noise_contract="reference")
    raw = latent["samples"]
    assert raw.shape == (1, 48, 64, 6, 8)                          # ComfyUI's Wan22 layout [B, 48, T, H/16, W/16]
    assert rel_err(latent_format.to_model_space(raw), ref) < 1e-4
    assert log.strategy == "native" and (log.window, log.sink) == (32, 8)
    assert "64 latent frames = 253 video frames (10.54 s at 24 fps)" in info
    assert ("LongLive 2.0: 128x96 px (Wan2.2 latents, 48 channels, 6x8) at 24 fps; blocks of 8 latent frames, window 32, "
            "sink 8, UniPC 4 steps, shift 5; a cut line starts a new shot (RoPE offset 8, multi-shot sink on)") in info


def test_an_image_start_is_held_inside_the_first_block_as_the_i2v_golden(ll2_dir):
    spec, inputs, ref = case("longlive2_i2v")
    backbone, _ = load_ll2().args
    image = {"samples": latent_format.to_raw_space(inputs["initial_latent_bcthw"])}   # what VAE Encode gives
    latent, _, info = sample(backbone, [[inputs["prompt_embeds"][:1], {}]], 0, 0, 253, spec["seeds"]["noise"],
                             noise_contract="reference", start=image)           # 0 x 0: the start's size
    assert latent["samples"].shape == (1, 48, 64, 6, 8)
    assert torch.equal(latent["samples"][:, :, :1], image["samples"])            # kept as given
    assert rel_err(latent_format.to_model_space(latent["samples"]), ref) < 1e-4
    assert "starts from the given 1 latent frames (an image), kept as given, held clean inside the first block" in info
    assert "rounded" not in info                                                 # 253 = 64 latent frames: whole blocks


def test_cut_lines_of_a_prompt_schedule_start_shots_as_the_multishot_golden(ll2_dir):
    spec, inputs, ref = case("longlive2_multishot_sink")
    rows = {text: inputs["prompt_embeds"][i:i + 1] for text, i in spec["prompt_rows"].items()}
    clip = FakeCLIP()
    clip.encode_from_tokens_scheduled = lambda tokens: [[rows["".join(chr(t) for t, _ in tokens["umt5xxl"][0])], {}]]
    backbone, _ = load_ll2().args
    _, _, t, h, w = spec["latent_shape_bcthw"]
    # blocks 1 and 4 at 24 fps: 8 latent frames = 32 video frames = 1.33 s; 32f = block 4
    schedule = N["LongLiveRAG_PromptSchedule"].execute(clip, "0s: p0\n1.3s cut: p1\n32f cut: p2", "auto", True, "all",
                                                       backbone=backbone).args
    assert schedule[1].splitlines()[1:] == ["Prompt Schedule line 2 '1.3s cut: p1': begins at block 1 = frame 8 "
                                            "(1.33333 s)",
                                            "Prompt Schedule line 3 '32f cut: p2': begins at block 4 = frame 32 (5.33333 s)"]
    latent, log, info = sample(backbone, schedule[0], w * 16, h * 16, 4 * (t - 1) + 1, spec["seeds"]["noise"],
                               noise_contract="reference")
    assert rel_err(latent_format.to_model_space(latent["samples"]), ref) < 1e-4
    assert [(s["block_start"], s["cut"], s["rope_offset"]) for s in log.switches] == [(8, True, 8.0), (32, True, 16.0)]
    assert "the Prompt Schedule at" not in info                  # the node was timed for this backbone


def test_a_schedule_timed_without_the_backbone_is_read_at_24_fps_by_the_sampler(ll2_dir):
    backbone, _ = load_ll2(lora="none").args
    sched, timeline = N["LongLiveRAG_PromptSchedule"].execute(FakeCLIP(), "0s: a\n2s cut: b", "auto", True,
                                                              "all").args
    assert "frame 8 (2 s)" in timeline and "Other backbones read the seconds at their own rate (Wan2.2 TI2V-5B " \
                                           "24 fps)" in timeline
    _, log, info = sample(backbone, sched, 64, 32, 97, 0)           # 25 latent frames → 32: 4 blocks
    assert [s["block_start"] for s in log.switches] == [16]          # 2 s at 24 fps = frame 12 → block 2
    lines = info.splitlines()
    at = lines.index("the Prompt Schedule at 24 fps, blocks of 8 (this backbone):")
    assert lines[at + 2] == ("Prompt Schedule line 2 '2s cut: b': asks for frame 12 (2 s), inside a block: rounded up "
                             "to the next block start, block 2 = frame 16 (2.66667 s)")


def test_widgets_set_by_the_artist_win_over_the_family(ll2_dir):
    backbone, _ = load_ll2(lora="none").args
    _, log, info = sample(backbone, conditioning(), 64, 32, 97, 0, widgets=(4, 24, 4, "2", 3.0))
    assert (log.sink, log.window) == (4, 24)
    assert "blocks of 4 latent frames, window 24, sink 4, UniPC 2 steps, shift 3" in info
    with pytest.raises(ValueError, match=r"steps '1000,750': the unipc sampler takes a number of solver steps "
                                         r"\(LongLive 2\.0: 4\), not a list of timesteps; give a whole number"):
        sample(backbone, conditioning(), 64, 32, 97, 0, widgets=(-1, 0, 0, "1000,750", 0.0))
    with pytest.raises(ValueError, match="multiples of 32"):
        sample(backbone, conditioning(), 48, 32, 97, 0)


def test_the_1_3b_workflows_saved_values_mean_what_auto_means_on_the_1_3b(models_dir):  # noqa: F811
    backbone, _ = load(models_dir)
    saved = sample(backbone, conditioning(), 96, 64, 49, 3, widgets=(1, 12, 3, "1000,750,500,250", 5.0))
    auto = sample(backbone, conditioning(), 96, 64, 49, 3)
    assert torch.equal(saved[0]["samples"], auto[0]["samples"])
    assert "Wan2.1: 96x64 px (Wan2.1 latents, 16 channels, 8x12) at 16 fps; blocks of 3 latent frames, window 12, " \
           "sink 1, steps 1000,750,500,250, shift 5" in auto[2]


def test_a_wan2_1_start_on_the_5b_names_the_wan2_2_vae(ll2_dir):
    backbone, _ = load_ll2(lora="none").args
    with pytest.raises(ValueError, match=r"start has 16 channels \(Wan2\.1 latents, from the Wan2\.1 VAE\); this "
                                         r"backbone takes 48-channel Wan2\.2 latents: load wan2\.2_vae\.safetensors "
                                         r"in the VAELoader that feeds VAE Encode"):
        sample(backbone, conditioning(), 0, 0, 97, 0, start={"samples": torch.zeros(1, 16, 1, 4, 6)})


def test_a_1_3b_lora_on_the_5b_is_refused_by_load_backbone_naming_the_right_lora(ll2_dir):
    from checkpoints import peft_lora, random_state
    small = peft_lora(random_state(0, tiny_config(heads=1, text_dim=64, freq_dim=256)))
    torch.save({"generator_lora": small}, ll2_dir / "loras" / "longlive_lora.pt")
    with pytest.raises(Exception, match=r"longlive_lora\.pt'.*do not fit.*Wan2\.2 TI2V-5B backbone.*use LongLive "
                                        r"2\.0's lora_checkpoint\.pt"):
        load_ll2(lora="longlive_lora.pt")


def test_decode_refuses_the_wan2_1_vae_for_wan2_2_latents():
    class Wan21VAE:
        latent_channels = 16

        def decode(self, z):
            raise AssertionError("not reached")

    with pytest.raises(ValueError, match=r"samples are Wan2\.2 latents \(48 channels\) but the VAE is the Wan2\.1 VAE "
                                         r"\(wan_2\.1_vae\.safetensors\): load wan2\.2_vae\.safetensors"):
        N["LongLiveRAG_Decode"].execute(Wan21VAE(), {"samples": torch.zeros(1, 48, 2, 2, 4)}, 8)


def test_the_latent_preview_of_a_5b_run_uses_comfyuis_wan22_format(monkeypatch):
    import types
    made = []
    fake = {"comfy": types.ModuleType("comfy"), "comfy.utils": types.ModuleType("comfy.utils"),
            "comfy.latent_formats": types.ModuleType("comfy.latent_formats"),
            "latent_preview": types.ModuleType("latent_preview")}
    fake["comfy.utils"].ProgressBar = lambda total: None
    fake["comfy"].utils, fake["comfy"].latent_formats = fake["comfy.utils"], fake["comfy.latent_formats"]
    fake["comfy.latent_formats"].Wan21 = lambda: "Wan21"
    fake["comfy.latent_formats"].Wan22 = lambda: "Wan22"
    fake["latent_preview"].get_previewer = lambda device, fmt: made.append(fmt)
    for name, module in fake.items():
        monkeypatch.setitem(sys.modules, name, module)
    bridge.Progress(3, latent_format.WAN22.comfy_latent)
    bridge.Progress(3, latent_format.WAN21.comfy_latent)
    assert made == ["Wan22", "Wan21"]
    assert bridge.Progress(3, "NotAComfyFormat").previewer is None      # a bar without previews


def test_ae_latent_mem_on_the_5b_says_to_use_avg_pool_or_train_one(ll2_dir):
    backbone, _ = load_ll2(lora="none").args
    (enc,) = N["LongLiveRAG_LoadLatentEncoder"].execute("ae_latent_mem.pt").args
    retrieval = N["LongLiveRAG_RetrieveContext"].execute(enc, 6, 5, None).args[0]
    with pytest.raises(ValueError, match="trained on 16-channel Wan2.1 latents; this backbone makes 48-channel Wan2.2 "
                                         "latents: train one for it"):
        sample(backbone, conditioning(), 64, 32, 97, 0, retrieval=retrieval)
    (pool,) = N["LongLiveRAG_LoadLatentEncoder"].execute("avg_pool (no file)").args
    avg = N["LongLiveRAG_RetrieveContext"].execute(pool, 6, 5, None).args[0]
    _, log, info = sample(backbone, conditioning(), 64, 32, 189, 0, retrieval=avg)   # 48 latent frames
    assert log.strategy == "rag" and [r["block"] for r in log.records] == [5]   # block 4 evicted 8 frames: 3 retrievable
    assert "multi-shot sink off with retrieval" in info


# ------------------------------------------------------------------------------ python -m core
GOLDEN = DATA / "golden_extra"
MODEL = GOLDEN / "longlive2_model"


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
    from checkpoints import peft_lora, random_state
    torch.save({"generator_lora": peft_lora(random_state(0, tiny_config(heads=1, text_dim=64, freq_dim=256)))},
               tmp_path / "longlive_lora.pt")
    return tmp_path / "longlive_lora.pt"


# ------------------------------------------------------------------------------ text mode
@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """A tiny umT5 (Wan layout), the tiny Wan2.2 and Wan2.1 VAEs and a tiny 5B-style backbone (text_dim 32)."""
    root = tmp_path_factory.mktemp("ll2")
    write_tokenizer(root / "wan" / "google" / "umt5-xxl")
    torch.save({k: v.to(torch.bfloat16) for k, v in umt5_state_dict().items()},
               root / "wan" / "models_t5_umt5-xxl-enc-bf16.pth")
    write_tiny_vae22(root)
    write_tiny_vae(root)
    model = tiny_model(1, channels=48, bias_std=0.05)
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
