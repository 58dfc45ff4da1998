"""The rolling sampler reproduces the published Rolling Forcing code: tests/data/golden_extra/rolling_* were made with
TencentARC/RollingForcing a1477d0 and Causal-Forcing 1fc7bbc long_video/ on CPU (rolling_README.md says how). The
latents, and per model call the noise levels of the window's blocks and the frames attended (anchor at its rotated
position, clean cached frames, the window), are checked through core; one case each through the CLI and the nodes,
with the checkpoint detected by its released file name."""
import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from core.sampling.loop import _BlockLoop, generate
from core.sampling.request import SamplingRequest, resolve
from core.families.registry import family
from core.formats.loader import detect_defaults

from pack import N, latent_format
from paths import DATA, GOLDEN, ROOT

CASES = DATA / "golden_extra"
NAMES = ["rolling_forcing_8x12", "rolling_forcing_6x10", "rolling_cf_longvideo_8x12", "rolling_cf_longvideo_10x6"]
TOL = 1e-5          # measured 3.3e-7 … 3.5e-7


def run_cli(*args):
    proc = subprocess.run([sys.executable, "-m", "core", *map(str, args)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc


def rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


def case_of(name):
    case = json.loads((CASES / name / "case.json").read_text())
    return case, load_file(str(CASES / name / "inputs.safetensors")), \
        load_file(str(CASES / name / "outputs.safetensors"))["latents_bcthw"]


def run(name, model):
    case, inputs, _ = case_of(name)
    steps = tuple(case["pipeline_config"]["denoising_step_list"])
    cfg = resolve(SamplingRequest(sampler="rolling", steps=steps, noise="reference"),
                  family("Wan2.1 text-to-video").defaults)
    caches, close = [], _BlockLoop.close

    def spy_close(loop):
        caches.append(loop.cache)
        close(loop)
    _, c, t, h, w = case["latent_shape_bcthw"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_BlockLoop, "close", spy_close)
        res = generate(model, inputs["prompt_embeds"], t, (h, w), case["seeds"]["noise"], cfg)
    return res, caches[0]


@pytest.fixture(scope="module")
def results(golden_model):
    return {name: run(name, golden_model) for name in NAMES}


def reference_calls(name):
    """The reference's calls without the context passes it runs while block 0 is still in the window (each rewrites
    the anchor slot, which nothing reads before the next: rolling_README.md)."""
    calls = json.loads((CASES / name / "trace.json").read_text())["generator_calls"]
    return [c for i, c in enumerate(calls) if c["kind"] == "window" or calls[i - 1]["block_leaves"]]


@pytest.mark.parametrize("name", NAMES)
def test_latents_match_the_published_code(name, results):
    _, _, ref = case_of(name)
    assert results[name][0].latents.shape == ref.shape
    assert rel_err(results[name][0].latents, ref) <= TOL


@pytest.mark.parametrize("name", NAMES)
def test_each_call_denoises_the_window_at_the_reference_noise_levels(name, results):
    ours, theirs = results[name][1].calls, reference_calls(name)
    assert [(c["kind"], c["start"], c["frames"]) for c in ours] == \
        [(c["kind"], c["start_frame"], c["num_frames"]) for c in theirs]
    for o, r in zip(ours, theirs):
        if o["kind"] == "window":
            assert o["timesteps"] == pytest.approx(r["timesteps"], abs=1e-3)


@pytest.mark.parametrize("name", NAMES)
def test_each_call_attends_the_frames_the_reference_attends(name, results):
    for o, r in zip(results[name][1].calls, reference_calls(name)):
        assert o["attended"] == [a["frame"] for a in r["attended"]], (o["kind"], o["start"])
        positions = [a["anchor_position"] for a in r["attended"] if "anchor_position" in a]
        anchor = o["anchor_at"]
        assert positions == ([] if anchor is None else list(range(anchor, anchor + len(positions))))


@pytest.mark.parametrize("name", NAMES)
def test_the_cache_evicts_behind_the_anchor(name, results):
    case = json.loads((CASES / name / "case.json").read_text())
    cache = results[name][1]
    frames = case["latent_shape_bcthw"][2]
    assert cache.evicted == frames - case["cache_frames"] > 0
    assert cache.first == case["anchor_frames"] + cache.evicted


def test_the_cli_detects_rolling_forcing_by_its_file_name_and_reproduces_it(tmp_path):
    name = "rolling_forcing_8x12"
    case, inputs, ref = case_of(name)
    backbone = tmp_path / "rolling_forcing_dmd.safetensors"
    backbone.symlink_to(GOLDEN / "wan_tiny_t2v_bare.safetensors")
    embeds, out = tmp_path / "emb.safetensors", tmp_path / "out.safetensors"
    save_file({"prompt_embeds": inputs["prompt_embeds"]}, str(embeds))
    _, _, t, h, w = case["latent_shape_bcthw"]
    proc = run_cli("generate", "--backbone", backbone, "--num-heads", 2, "--embeds", embeds, "--frames", t,
                   "--latent-size", f"{h}x{w}", "--seed", case["seeds"]["noise"], "--mode", "native", "--device", "cpu",
                   "--out", out, "--noise-contract", "reference")
    assert "rolling window of 5 blocks" in proc.stdout + proc.stderr
    assert rel_err(load_file(str(out))["latents"], ref) <= TOL


def test_the_nodes_detect_causal_forcing_long_video_and_reproduce_it(models_dir):
    name = "rolling_cf_longvideo_8x12"
    case, inputs, ref = case_of(name)
    state = load_file(str(GOLDEN / "wan_tiny_t2v_bare.safetensors"))
    (models_dir / "diffusion_models" / "chunkwise").mkdir()
    torch.save({"generator_ema": {f"model.{k}": v for k, v in state.items()}},
               models_dir / "diffusion_models" / "chunkwise" / "longvideo.pt")
    backbone, info = N["LongLiveRAG_LoadBackbone"].execute("chunkwise/longvideo.pt", "none", 1.0, "float32", "cpu",
                                                           "offload after sampling", num_heads=2).args
    assert "rolling window of 4 blocks, steps 1000,750,500,250" in info and "window 21, sink 3" in info
    _, _, t, h, w = case["latent_shape_bcthw"]
    out = N["LongLiveRAG_ARBlockSampler"].execute(backbone, [[inputs["prompt_embeds"], {"pooled_output": None}]],
                                                  w * 8, h * 8, 4 * (t - 1) + 1, case["seeds"]["noise"], -1, 0, 0,
                                                  "auto", 0.0, None, noise_contract="reference")
    assert rel_err(latent_format.to_model_space(out.args[0]["samples"]), ref) <= TOL


def test_the_released_file_names_bring_the_rolling_defaults(tmp_path):
    for rel, preset, steps in (("checkpoints/rolling_forcing_dmd.safetensors", "Rolling Forcing", (1000, 800, 600, 400, 200)),
                               ("chunkwise/longvideo.safetensors", "Causal-Forcing long video", (1000, 750, 500, 250))):
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(GOLDEN / "wan_tiny_t2v_bare.safetensors")
        _, found, defaults = detect_defaults(path)
        assert found == preset
        assert (defaults.sampler, defaults.steps, defaults.window, defaults.sink) == ("rolling", steps, 21, 3)
    plain = tmp_path / "self_forcing_dmd.safetensors"
    plain.symlink_to(GOLDEN / "wan_tiny_t2v_bare.safetensors")
    assert detect_defaults(plain)[2].sampler == "renoise"
