"""LongLive 2.0's guidance (negative prompt, second cache) and shot_clean_recache through the front ends: the CLI's
--embeds route and the AR Block Sampler's 'negative' input with Sampler Settings reproduce the golden cases made
from the published code (tests/data/golden_extra/guidance_ll2_*, cleanrecache_ll2_*)."""
import json
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from core.app.cli import main as cli_main

from pack import N, PACK
from paths import DATA

latent_format = sys.modules[f"{PACK.__name__}.core.latents.format"]
start_mod = sys.modules[f"{PACK.__name__}.nodes.start"]
GOLDEN = DATA / "golden_extra"
MODEL = GOLDEN / "longlive2_model"
AUTO = (-1, 0, 0, "auto", 0.0)          # sink_size, local_attn_size, frames_per_block, steps, shift
TOL = 1e-5


def rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


def case(name):
    folder = GOLDEN / name
    return json.loads((folder / "case.json").read_text()), load_file(str(folder / "inputs.safetensors")), \
        load_file(str(folder / "outputs.safetensors"))["latents_bcthw"]


def cli(tmp_path, embeds: dict, spec: dict, *extra) -> int:
    save_file(embeds, str(tmp_path / "p.safetensors"))
    _, _, t, h, w = spec["latent_shape_bcthw"]
    rc = cli_main(["generate", "--embeds", str(tmp_path / "p.safetensors"), "--backbone", str(MODEL / "generator.safetensors"),
                   "--lora", str(MODEL / "lora.pt"), "--num-heads", "2", "--strategy", "native", "--frames", str(t),
                   "--latent-size", f"{h}x{w}", "--seed", str(spec["seeds"]["noise"]), "--noise-contract", "reference",
                   "--device", "cpu", "--out", str(tmp_path / "out.safetensors"), *extra])
    return rc


def test_the_cli_reproduces_guidance_with_a_clean_recache_from_an_embeddings_file(tmp_path, capsys):
    spec, inputs, ref = case("guidance_ll2_cleanrecache_4x8")
    e, rows = inputs["prompt_embeds"], spec["prompt_rows"]
    row = lambda text: e[rows[text]:rows[text] + 1].contiguous()   # noqa: E731
    cut1, cut2 = "The scene transitions. p1", "The scene transitions. p2"     # shot 2 is one block: its cut row
    embeds = {"prompt_embeds": row("p0"), "prompt_embeds_1": row("p1"), "prompt_embeds_2": row(cut2).clone(),
              "prompt_embeds_1_cut": row(cut1), "prompt_embeds_2_cut": row(cut2), "switch_frames": torch.tensor([24, 40]),
              "cuts": torch.tensor([1, 1]), "negative_prompt_embeds": inputs["negative_prompt_embeds"]}
    rc = cli(tmp_path, embeds, spec, "--guidance-scale", "3", "--shot-clean-recache")
    assert rc == 0, capsys.readouterr().err
    assert rel_err(load_file(str(tmp_path / "out.safetensors"))["latents"], ref) <= TOL


@pytest.mark.parametrize("extra, says", [
    (["--guidance-scale", "3"], "guidance scale 3 needs a negative prompt"),
    (["--guidance-scale", "3", "--negative-prompt", "blurry"], "--negative-prompt is text: an --embeds run reads"),
    (["--shot-clean-recache", "--no-multi-shot-sink"], "shot_clean_recache clears the cache down to the sink"),
])
def test_the_cli_refuses_guidance_and_clean_recache_it_cannot_run_in_one_line(tmp_path, capsys, extra, says):
    spec, inputs, _ = case("guidance_ll2_t2v_6x8")
    rc = cli(tmp_path, {"prompt_embeds": inputs["prompt_embeds"][:1].contiguous()}, spec, *extra)
    err = capsys.readouterr().err
    assert rc != 0 and says in err, err
    assert not (tmp_path / "out.safetensors").exists()


def test_guidance_with_retrieval_is_refused_naming_the_strategies_that_take_it(tmp_path, capsys):
    spec, inputs, _ = case("guidance_ll2_t2v_6x8")
    embeds = {"prompt_embeds": inputs["prompt_embeds"][:1].contiguous(),
              "negative_prompt_embeds": inputs["negative_prompt_embeds"]}
    save_file(embeds, str(tmp_path / "p.safetensors"))
    rc = cli_main(["generate", "--embeds", str(tmp_path / "p.safetensors"), "--backbone", str(MODEL / "generator.safetensors"),
                   "--num-heads", "2", "--strategy", "rag", "--frames", "16", "--latent-size", "6x8", "--device", "cpu",
                   "--guidance-scale", "3", "--out", str(tmp_path / "out.safetensors")])
    err = capsys.readouterr().err
    assert rc != 0 and "second KV cache for the negative prompt, which retrieval (strategy rag) has no history pool" in err


@pytest.fixture
def ll2_dir(models_dir):  # noqa: F811
    state = load_file(str(MODEL / "generator.safetensors"))
    torch.save({"generator": state}, models_dir / "diffusion_models" / "model_bf16.pt")
    (models_dir / "loras" / "lora_checkpoint.pt").symlink_to(MODEL / "lora.pt")
    start_mod.MEMO.clear()
    yield models_dir
    start_mod.MEMO.clear()


def test_the_sampler_with_a_negative_and_guidance_3_reproduces_the_golden(ll2_dir):
    spec, inputs, ref = case("guidance_ll2_t2v_6x8")
    backbone, _ = N["LongLiveRAG_LoadBackbone"].execute("model_bf16.pt", "lora_checkpoint.pt", 1.0, "float32", "cpu",
                                                        "offload after sampling", num_heads=2).args
    settings = N["LongLiveRAG_SamplerSettings"].execute("auto", 0.0, -1.0, "auto", guidance_scale=3.0).args[0]
    _, _, t, h, w = spec["latent_shape_bcthw"]
    run = lambda **kw: N["LongLiveRAG_ARBlockSampler"].execute(   # noqa: E731
        backbone, [[inputs["prompt_embeds"][:1], {}]], w * 16, h * 16, 4 * (t - 1) + 1, spec["seeds"]["noise"], *AUTO,
        noise_contract="reference", **kw).args[0]["samples"]
    guided = run(settings=settings, negative=[[inputs["negative_prompt_embeds"], {}]])
    assert rel_err(latent_format.to_model_space(guided), ref) <= TOL
    plain = run(negative=[[inputs["negative_prompt_embeds"], {}]])        # guidance 1 (no settings): as before
    assert rel_err(plain, guided) > 1e-2
    with pytest.raises(ValueError, match="guidance scale 3 needs a negative prompt"):
        run(settings=settings)
