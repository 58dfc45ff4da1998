"""Frame-wise Causal Forcing++ reproduces its published code: tests/data/golden_extra/cfpp_* were made with
thu-ml/Causal-Forcing 1fc7bbc (configs/causal_forcing_dmd_framewise_{2step,1step}.yaml) on CPU in float32 with the
tiny random Wan backbone of tests/data/golden and the pipeline's own local_attn_size / sink_size, so the cache
evicts (cfpp_README.md says how). Checked: latents (whole and per frame), the timesteps fed to each block, the
noise draws, and per block the frames its first call attends and whether it evicted — through core, and one case
each through ``python -m core`` and the nodes, with the backbone told apart by its released file name."""
import json
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from core.app.cli import main as cli_main
from core.app.plan import sampling_config
from core.context.kv_cache import KVCache
from core.families.framewise import CF_PP_1STEP, CF_PP_2STEP
from core.families.wan21_t2v import WAN21_T2V
from core.formats import load_backbone
from core.sampling.loop import generate
from core.sampling.noise import NoiseSource
from core.sampling.timesteps import FlowMatchTimesteps

from paths import DATA, GOLDEN

CASES = DATA / "golden_extra"
NAMES = sorted(p.parent.name for p in CASES.glob("cfpp_*/case.json"))
TOL = 1e-5        # relative L2 on the latents (measured ~3.4e-7)
WEIGHTS = GOLDEN / "wan_tiny_t2v_bare.safetensors"


def rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


def load(name):
    folder = CASES / name
    return (json.loads((folder / "case.json").read_text()), load_file(str(folder / "inputs.safetensors")),
            load_file(str(folder / "outputs.safetensors"))["latents_bcthw"])


def preset(case) -> str:
    return {(1000, 500): CF_PP_2STEP, (1000,): CF_PP_1STEP}[tuple(case["pipeline_config"]["denoising_step_list"])]


def config(case):
    """The preset's defaults, with the case's window and sink where they are not the pack's default."""
    defaults = WAN21_T2V.variants[preset(case)]
    kw = case["pipeline_config"]["model_kwargs"]
    moved = {} if (kw["local_attn_size"], kw["sink_size"]) == (defaults.window, defaults.sink) else \
        {"window": kw["local_attn_size"], "sink": kw["sink_size"]}
    return sampling_config(defaults, strategy="native", noise="reference", **moved)


@pytest.fixture(scope="module")
def model():
    return load_backbone(WEIGHTS, num_heads=2).model


def run(name, model):
    case, inputs, _ = load(name)
    _, _, t, h, w = case["latent_shape_bcthw"]
    return generate(model, inputs["prompt_embeds"], t, (h, w), case["seeds"]["noise"], config(case))


@pytest.fixture(scope="module")
def results(model):
    return {name: run(name, model) for name in NAMES}


def test_the_cases_cover_both_step_counts_two_sizes_evictions_and_the_default_window():
    cases = {n: load(n)[0] for n in NAMES}
    assert {preset(c) for c in cases.values()} == {CF_PP_2STEP, CF_PP_1STEP}
    assert len({tuple(c["latent_shape_bcthw"][3:]) for c in cases.values()}) >= 3
    assert all(c["evictions_at_blocks"] for c in cases.values())
    assert any(c["pipeline_config"]["model_kwargs"]["local_attn_size"] == WAN21_T2V.variants[CF_PP_2STEP].window
               for c in cases.values())
    assert all(c["reference"]["commit"].startswith("1fc7bbc") for c in cases.values())


@pytest.mark.parametrize("name", NAMES)
def test_the_first_block_and_the_later_blocks_are_fed_the_published_timesteps(name):
    case = load(name)[0]
    cfg = config(case)
    schedule = FlowMatchTimesteps(cfg.shift)
    assert schedule.denoising_timesteps(cfg.opening.steps).tolist() == case["steps_fed"]["first_block"]
    assert schedule.denoising_timesteps(cfg.steps).tolist() == case["steps_fed"]["later_blocks"]
    assert cfg.frames_per_block == case["pipeline_config"]["num_frame_per_block"] == 1


@pytest.mark.parametrize("name", NAMES)
def test_latents_match_causal_forcing_plus_plus(name, results):
    _, _, ref = load(name)
    err = rel_err(results[name].latents, ref)
    print(f"{name}: rel L2 {err:.3g}")
    assert results[name].latents.shape == ref.shape and err <= TOL


@pytest.mark.parametrize("name", NAMES)
def test_each_frame_matches(name, results):
    """Per frame (one block each): the first frame's four steps and every later frame are right on their own."""
    _, _, ref = load(name)
    errs = [rel_err(results[name].latents[:, :, f], ref[:, :, f]) for f in range(ref.shape[2])]
    assert max(errs) <= TOL, errs


@pytest.mark.parametrize("name", NAMES)
def test_the_noise_draws_are_the_reference_s(name, model):
    """3 re-noises in the first block, then one per block (2-step) or none (1-step): count and values in order."""
    case = load(name)[0]
    drawn, original = [], NoiseSource.renoise

    def renoise(source, frames):
        x = original(source, frames)
        drawn.append({"shape": list(x.shape), "sum": x.double().sum().item()})
        return x

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(NoiseSource, "renoise", renoise)
        run(name, model)
    assert [d["shape"] for d in drawn] == [d["shape"] for d in case["rng_draws"]]
    assert [d["sum"] for d in drawn] == pytest.approx([d["sum"] for d in case["rng_draws"]], rel=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_each_block_attends_the_frames_the_reference_attends_and_evicts_where_it_does(name, model):
    """Per block's first call: the video frames in the attention (sink, then the newest) and whether the block's
    start evicted, from the reference's layer-0 cache labels."""
    case = load(name)[0]
    seen, evicted = [], []
    begin, prepare = KVCache.begin_block, KVCache._prepare_positions

    def spy_begin(cache, start, frames):
        evicted.append(cache.filled + frames > cache.policy.window)
        begin(cache, start, frames)

    def spy_prepare(cache):
        prepare(cache)
        (s0, s1), (l0, l1) = cache._sink, cache._local
        end = cache.block_start + cache.block_frames
        frames = list(range(s0, s1)) + list(range(end - (l1 - l0), end))
        if not seen or seen[-1][0] != cache.block_start:
            seen.append((cache.block_start, frames))

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(KVCache, "begin_block", spy_begin)
        mp.setattr(KVCache, "_prepare_positions", spy_prepare)
        run(name, model)
    assert [frames for _, frames in seen] == [b["attended_frames"] for b in case["blocks"]]
    assert evicted == [b["evicted"] for b in case["blocks"]]


# ------------------------------------------------------------------ the released file, the CLI and the nodes
def released(folder, name="framewise-2step.pt"):
    """The tiny weights in the released layout: causal-forcing++/<name>, {"generator", "generator_ema"}."""
    state = {f"model.{k}": v for k, v in load_file(str(WEIGHTS)).items()}
    (folder / "causal-forcing++").mkdir(parents=True, exist_ok=True)
    torch.save({"generator": state, "generator_ema": state}, folder / "causal-forcing++" / name)
    return folder / "causal-forcing++" / name


def test_the_released_file_names_pick_the_variant_and_its_defaults(tmp_path):
    for name, want in (("framewise-2step.pt", CF_PP_2STEP), ("framewise-1step.pt", CF_PP_1STEP)):
        bb = load_backbone(released(tmp_path, name), num_heads=2)
        assert (bb.info.preset, bb.info.source_key) == (want, "generator_ema")
        assert bb.defaults is WAN21_T2V.variants[want]
        assert (bb.defaults.frames_per_block, bb.defaults.window, bb.defaults.sink) == (1, 21, 1)
        assert bb.defaults.first_steps == (1000, 750, 500, 250)
    assert load_backbone(WEIGHTS, num_heads=2).defaults is WAN21_T2V.defaults     # another name: chunk-wise


def test_the_cli_picks_the_frame_wise_settings_from_the_file_and_reproduces_the_golden(tmp_path, capsys):
    case, inputs, ref = load("cfpp_2step_window21")
    save_file({"prompt_embeds": inputs["prompt_embeds"]}, str(tmp_path / "p.safetensors"))
    _, _, t, h, w = case["latent_shape_bcthw"]
    rc = cli_main(["generate", "--embeds", str(tmp_path / "p.safetensors"), "--backbone", str(released(tmp_path)),
                   "--num-heads", "2", "--mode", "native", "--frames", str(t), "--latent-size", f"{h}x{w}",
                   "--seed", str(case["seeds"]["noise"]), "--noise-contract", "reference", "--device", "cpu",
                   "--out", str(tmp_path / "out.safetensors")])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert ("Causal-Forcing++ 2-step backbone: 832x480 px (Wan2.1 latents, 16 channels, 60x104) at 16 fps; blocks of 1 "
            "latent frame, window 21, sink 1, steps 1000,500 (the first block 1000,750,500,250), shift 5") in err
    assert rel_err(load_file(str(tmp_path / "out.safetensors"))["latents"], ref) <= TOL


def test_the_nodes_at_auto_reproduce_the_golden(models_dir):
    from pack import N, PACK
    latent_format = sys.modules[f"{PACK.__name__}.core.latents.format"]
    released(models_dir / "diffusion_models")
    backbone, info = N["LongLiveRAG_LoadBackbone"].execute("causal-forcing++/framewise-2step.pt", "none", 1.0, "float32",
                                                           "cpu", "offload after sampling", num_heads=2).args
    assert info.startswith("Causal-Forcing++ 2-step (self_forcing), Wan2.1 text-to-video family")
    assert "AR Block Sampler at auto: 832x480 px" in info and "blocks of 1 latent frame, window 21, sink 1" in info
    case, inputs, ref = load("cfpp_2step_window21")
    _, _, t, h, w = case["latent_shape_bcthw"]
    latent, log, sampled = N["LongLiveRAG_ARBlockSampler"].execute(
        backbone, [[inputs["prompt_embeds"], {}]], w * 8, h * 8, 4 * (t - 1) + 1, case["seeds"]["noise"],
        -1, 0, 0, "auto", 0.0, noise_contract="reference").args
    assert (log.frames_per_block, log.window, log.sink) == (1, 21, 1)
    assert rel_err(latent_format.to_model_space(latent["samples"]), ref) <= TOL
    assert "steps 1000,500 (the first block 1000,750,500,250)" in sampled
