"""The Wan2.2 TI2V-5B family (LongLive 2.0). The real 5B key set is accepted on the meta device with the published
sizes; every file layout people have (LongLive 2.0 pickles + LoRA, Wan / ComfyUI safetensors, fp8 variants,
diffusers) loads to the same weights; neighbouring models and mismatched LoRAs fail naming the problem and the fix.

Its runs beyond the goldens (tests/golden/test_longlive2.py): image-to-video starts, shots, the shot sink's limits,
retrieval on 48-channel latents, and clear errors for inputs of the other latent kind. Through the CLI and the
nodes: tests/integration/test_wan22_ti2v.py."""
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from core.formats import (FAMILIES, CheckpointError, detect_preset, expected_shapes, identify, infer_config,
                          is_backbone_checkpoint, load_backbone, match_lora, normalise_lora, normalise_names,
                          read_backbone, validate_backbone)
from core.families.wan22_ti2v import WAN22_TI2V
from core.families.wan21_t2v import WAN21_T2V
from core.model.transformer import WanConfig, WanTransformer
from core.app.plan import sampling_config
from core.context.kv_cache import CachePolicy, KVCache
from core.families.wan22_ti2v import DEFAULTS
from core.latents.format import WAN21, WAN22
from core.retrieval.config import RetrievalConfig
from core.retrieval.encoder import EncoderConfig, RetrievalEncoder
from core.sampling.config import ShotConfig
from core.sampling.loop import generate
from core.sampling.prompts import PromptSchedule, Segment, parse_schedule_text

from checkpoints import peft_lora, random_state
from paths import DATA
from factory import tiny_config
from factory import tiny_model

LL2 = DATA / "golden_extra" / "longlive2_model"
TINY = WanConfig(dim=128, ffn_dim=256, num_layers=2, num_heads=2, text_dim=64, freq_dim=256, in_dim=48, out_dim=48)


@pytest.fixture(scope="module")
def keys_5b():
    return json.loads((DATA / "wan2.2_ti2v_5b_keys.json").read_text())


def meta_state(shapes: dict) -> dict:
    with torch.device("meta"):
        return {k: torch.empty(s) for k, s in shapes.items()}


@pytest.fixture(scope="module")
def golden_state():
    """The tiny LongLive 2.0 golden backbone with bare Wan names (its file is 'model.'-prefixed)."""
    return {k.removeprefix("model."): v for k, v in load_file(str(LL2 / "generator.safetensors")).items()}


# ------------------------------------------------------------------------------ the real 5B key set
def test_the_real_5b_key_set_is_accepted_on_the_meta_device_with_the_published_sizes(keys_5b):
    sd = meta_state(keys_5b["base_keys"])
    cfg = infer_config(sd)
    arch = keys_5b["arch"]
    assert (cfg.dim, cfg.num_layers, cfg.num_heads, cfg.head_dim, cfg.ffn_dim, cfg.in_dim, cfg.out_dim, cfg.text_dim,
            cfg.freq_dim, cfg.patch_size, cfg.text_len, cfg.eps) == \
        (3072, 30, 24, 128, 14336, 48, 48, 4096, 256, (1, 2, 2), 512, 1e-6)
    assert (cfg.dim, cfg.num_layers, cfg.num_heads, cfg.ffn_dim, cfg.in_dim, cfg.text_dim) == \
        (arch["dim"], arch["num_layers"], arch["num_heads"], arch["ffn_dim"], arch["in_dim"], arch["text_dim"])
    assert identify(sd, "wan2.2_ti2v_5B_fp16.safetensors") is WAN22_TI2V
    validate_backbone(sd, cfg, "wan2.2_ti2v_5B")
    assert expected_shapes(cfg) == {k: tuple(s) for k, s in keys_5b["base_keys"].items()}
    with torch.device("meta"):
        model = WanTransformer(cfg)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected_shapes(cfg)
    assert sum(v.numel() for v in model.state_dict().values()) == keys_5b["num_parameters"]


def test_the_longlive_2_layout_and_its_rank_128_lora_are_accepted_on_the_meta_device(keys_5b):
    """model_bf16.pt / generator_checkpoint.pt: {"generator": {"model.<name>": ...}}; lora_checkpoint.pt:
    {"generator_lora": peft keys}, rank 128, alpha 128 → scale 1 on 10 Linear layers of each of 30 blocks."""
    sd, _ = normalise_names({"model." + k: v for k, v in meta_state(keys_5b["base_keys"]).items()})
    assert infer_config(sd).dim == 3072
    lora = meta_state(keys_5b["longlive_lora_keys"])
    factors, _ = normalise_lora({keys_5b["lora"]["container_key"]: lora})
    for file_alpha in (None, keys_5b["lora"]["alpha"]):
        pairs = match_lora(factors, sd, "lora_checkpoint.pt", alpha=file_alpha)
        assert len(pairs) == 30 * 10 and {s for *_, s in pairs.values()} == {1.0}
        assert {a.shape[0] for a, *_ in pairs.values()} == {keys_5b["lora"]["rank"]}


def test_fp8_variants_of_the_real_key_set_are_accepted_on_the_meta_device(keys_5b):
    """ComfyUI's comfy_quant layout adds per-layer records and scales; names and shapes stay the 5B's."""
    from core.formats.wan_names import dequantize_scaled_fp8
    base = meta_state(keys_5b["base_keys"])
    extra = {}
    for k, v in base.items():
        if v.dim() == 2 and k.startswith("blocks."):
            extra[k[: -len("weight")] + "weight_scale"] = torch.empty((), device="meta")
            extra[k[: -len("weight")] + "comfy_quant"] = torch.empty(20, device="meta")
    sd = dequantize_scaled_fp8({**base, **extra}, "wan2.2_ti2v_5B_fp8_scaled.safetensors")
    assert set(sd) == set(base) and infer_config(sd).num_heads == 24


# ------------------------------------------------------------------------------ file layouts
def test_the_golden_longlive_2_generator_loads_with_its_architecture(golden_state):
    b = load_backbone(LL2 / "generator.safetensors", num_heads=2)
    assert b.config == TINY and b.info.family == "Wan2.2 TI2V-5B" and b.defaults is WAN22_TI2V.defaults
    assert b.info.preset == "LongLive 2.0" and b.config.in_dim == 48      # the folder name says so
    for k, v in golden_state.items():
        assert torch.equal(b.model.state_dict()[k], v), k


@pytest.mark.parametrize("top", ["generator", "generator_ema", "model"])
def test_a_longlive_2_pickle_loads_from_its_container(tmp_path, golden_state, top):
    obj = {top: {"model." + k: v.to(torch.bfloat16) for k, v in golden_state.items()},
           "checkpoint_format": "longlive_generator_merged_lora", "merged_lora": True}
    torch.save(obj, tmp_path / "model_bf16.pt")
    b = load_backbone(tmp_path / "model_bf16.pt", num_heads=2)
    assert b.info.preset == "LongLive 2.0" and b.info.dtype == "bfloat16"
    for k, v in golden_state.items():
        assert torch.equal(b.model.state_dict()[k], v.to(torch.bfloat16).float()), k


def test_the_longlive_2_lora_is_merged_at_load(tmp_path, golden_state):
    """lora.pt is the golden's: {"generator_lora": peft keys}, rank 16, no alpha (scale 1)."""
    torch.save({"generator": {"model." + k: v for k, v in golden_state.items()}}, tmp_path / "generator_checkpoint.pt")
    b = load_backbone(tmp_path / "generator_checkpoint.pt", lora=LL2 / "lora.pt", num_heads=2)
    lora = torch.load(LL2 / "lora.pt", weights_only=True)["generator_lora"]
    a = lora["base_model.model.blocks.1.ffn.2.lora_A.weight"]
    bb = lora["base_model.model.blocks.1.ffn.2.lora_B.weight"]
    want = golden_state["blocks.1.ffn.2.weight"] + bb @ a
    assert torch.allclose(b.model.state_dict()["blocks.1.ffn.2.weight"], want, atol=1e-6)
    assert b.info.preset == "LongLive 2.0" and b.info.lora_layers == 20


@pytest.mark.parametrize("prefix", ["", "model.diffusion_model."])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float8_e4m3fn])
def test_comfyui_5b_safetensors_load_in_any_stored_dtype(tmp_path, golden_state, prefix, dtype):
    save_file({prefix + k: v.to(dtype) for k, v in golden_state.items()}, str(tmp_path / "wan2.2_ti2v_5B.safetensors"))
    b = load_backbone(tmp_path / "wan2.2_ti2v_5B.safetensors", num_heads=2)
    for k, v in golden_state.items():
        assert torch.equal(b.model.state_dict()[k], v.to(dtype).float()), k


def _fp8_scaled(state, scale_name):
    stored, want = {}, {}
    for k, v in state.items():
        if v.dim() == 2:
            scale = v.abs().max() / 200
            stored[k] = (v / scale).to(torch.float8_e4m3fn)
            stored[k[: -len("weight")] + scale_name] = scale.reshape(() if scale_name == "weight_scale" else 1)
            want[k] = stored[k].float() * scale
        else:
            stored[k] = want[k] = v
    return stored, want


def test_comfyui_scaled_fp8_and_comfy_quant_fp8_5b_files_are_dequantised(tmp_path, golden_state):
    stored, want = _fp8_scaled(golden_state, "scale_weight")
    save_file({**stored, "scaled_fp8": torch.zeros(0, dtype=torch.float8_e4m3fn)}, str(tmp_path / "a.safetensors"))
    stored_q, want_q = _fp8_scaled(golden_state, "weight_scale")
    record = torch.tensor(list(b'{"format": "float8_e4m3fn"}'), dtype=torch.uint8)
    stored_q.update({k[: -len("weight")] + "comfy_quant": record.clone() for k, v in golden_state.items() if v.dim() == 2})
    save_file(stored_q, str(tmp_path / "b.safetensors"))
    for name, expect in (("a", want), ("b", want_q)):
        b = load_backbone(tmp_path / f"{name}.safetensors", num_heads=2)
        for k, v in expect.items():
            assert torch.equal(b.model.state_dict()[k], v.float()), (name, k)


def test_an_nvfp4_file_is_refused_with_the_alternative(tmp_path, golden_state):
    sd = dict(golden_state)
    sd["blocks.0.ffn.0.weight_scale_2"] = torch.ones(())
    save_file(sd, str(tmp_path / "wan2.2_ti2v_5B_nvfp4.safetensors"))
    with pytest.raises(CheckpointError, match=r"NVFP4.*use the fp16, bf16 or fp8 file"):
        load_backbone(tmp_path / "wan2.2_ti2v_5B_nvfp4.safetensors", num_heads=2)


def test_the_diffusers_layout_of_the_5b_maps_to_the_same_weights(tmp_path, golden_state):
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers
    save_file(convert_wan_transformer_to_diffusers(dict(golden_state)), str(tmp_path / "diffusion_pytorch_model.safetensors"))
    b = load_backbone(tmp_path / "diffusion_pytorch_model.safetensors", num_heads=2)
    assert b.info.format == "diffusers"
    for k, v in golden_state.items():
        assert torch.equal(b.model.state_dict()[k], v), k


def test_presets_of_the_5b_come_from_layout_and_name(tmp_path, golden_state):
    save_file(golden_state, str(tmp_path / "wan2.2_ti2v_5B_fp16.safetensors"))
    torch.save({"generator": {"model." + k: v for k, v in golden_state.items()}}, tmp_path / "checkpoint.pt")
    assert detect_preset(tmp_path / "wan2.2_ti2v_5B_fp16.safetensors") == "Wan2.2-TI2V-5B"
    assert detect_preset(tmp_path / "checkpoint.pt") == "LongLive 2.0"
    assert detect_preset(tmp_path / "wan2.2_ti2v_5B_fp16.safetensors", lora=LL2 / "lora.pt") == "LongLive 2.0"
    assert is_backbone_checkpoint(tmp_path / "wan2.2_ti2v_5B_fp16.safetensors")


def test_the_family_is_found_from_the_weights_and_carries_the_published_run_settings(golden_state):
    family = identify(golden_state, "x.safetensors")
    d = family.defaults
    assert family is WAN22_TI2V and family is FAMILIES[1]
    assert (d.frames_per_block, d.window, d.sink, d.sampler, d.sampling_steps, d.shift) == (8, 32, 8, "unipc", 4, 5.0)
    assert (d.shots.rope_offset, d.shots.sink, d.start_block, d.switch) == (8.0, True, "clamp", "none")
    assert (d.latent.channels, d.latent.stride, d.latent.fps, d.latent_hw) == (48, 16, 24, (44, 80))
    assert "704" in d.describe() and "UniPC 4 steps" in d.describe()
    assert WAN21_T2V.defaults.latent.channels == 16 and WAN21_T2V.defaults.frames_per_block == 3


# ------------------------------------------------------------------------------ bad inputs
def _a14b_like(in_dim: int) -> dict:
    """Just enough of a Wan 14B file for identification: a dim-5120 patch embedding and 40 blocks."""
    sd = {"patch_embedding.weight": torch.zeros(5120, in_dim, 1, 2, 2)}
    sd.update({f"blocks.{i}.self_attn.q.weight": torch.zeros(1, 1) for i in range(40)})
    return sd


@pytest.mark.parametrize("name, in_dim, kind", [
    ("wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors", 16, "text"),
    ("wan2.2_t2v_high_noise_14B_fp16.safetensors", 16, "text"),
    ("Wan2.2-I2V-A14B-high.safetensors", 36, "image"),
])
def test_a_wan2_2_a14b_expert_is_refused_naming_the_alternatives(tmp_path, name, in_dim, kind):
    save_file(_a14b_like(in_dim), str(tmp_path / name))
    with pytest.raises(CheckpointError, match=rf"is a Wan2\.2 A14B {kind}-to-video expert \(dim 5120, 40 layers.*"
                                              r"not supported.*LongLive 2\.0 / Wan2\.2-TI2V-5B"):
        load_backbone(tmp_path / name)


def test_a_wan2_2_a14b_diffusers_folder_is_refused(tmp_path):
    (tmp_path / "transformer").mkdir()
    (tmp_path / "transformer_2").mkdir()
    with pytest.raises(CheckpointError, match=r"Wan2\.2 A14B text-to-video expert"):
        identify(_a14b_like(16), tmp_path)


def test_a_14b_without_a_wan2_2_name_is_still_read_as_wan2_1(tmp_path):
    """The sizes alone cannot tell Wan2.2 A14B from Wan2.1 14B: only the name or the two-expert folder does."""
    sd = meta_state(expected_shapes(WanConfig(dim=5120, ffn_dim=13824, num_layers=40, num_heads=40, in_dim=16,
                                                          out_dim=16)))
    assert identify(sd, tmp_path / "wan2.1_t2v_14B_fp16.safetensors") is WAN21_T2V
    assert infer_config(sd, path="wan2.1_t2v_14B_fp16.safetensors").num_heads == 40


def test_a_1_3b_lora_on_the_5b_names_both_models_and_the_right_lora(tmp_path, golden_state):
    save_file(golden_state, str(tmp_path / "wan2.2_ti2v_5B.safetensors"))
    small = peft_lora(random_state(0, tiny_config(heads=1, text_dim=64, freq_dim=256)))
    torch.save({"generator_lora": small}, tmp_path / "longlive_lora.pt")
    with pytest.raises(CheckpointError, match=r"longlive_lora\.pt'.*do not fit the backbone weight .*\(a Wan2\.2 "
                                              r"TI2V-5B backbone, dim 128.*48 latent channels\).*model of width 64 — "
                                              r"use LongLive 2\.0's lora_checkpoint\.pt"):
        load_backbone(tmp_path / "wan2.2_ti2v_5B.safetensors", lora=tmp_path / "longlive_lora.pt", num_heads=2)


def test_the_real_1_3b_lora_on_the_real_5b_is_refused_on_the_meta_device(keys_5b):
    keys_13 = json.loads((DATA / "wan2.1_t2v_1.3b_keys.json").read_text())
    sd = meta_state(keys_5b["base_keys"])
    factors, _ = normalise_lora({"generator_lora": meta_state(keys_13["longlive_lora_keys"])})
    with pytest.raises(CheckpointError, match=r"trained for a model of width 1536"):
        match_lora(factors, sd, "longlive_lora.pt", backbone="a Wan2.2 TI2V-5B backbone")


def test_a_48_channel_file_with_16_output_channels_is_reported(tmp_path, golden_state):
    sd = dict(golden_state)
    sd["head.head.weight"] = torch.zeros(64, 128)
    sd["head.head.bias"] = torch.zeros(64)
    save_file(sd, str(tmp_path / "odd.safetensors"))
    with pytest.raises(CheckpointError, match=r"48 input / 16 output channels; expected 48 \(Wan2\.2 latents\)"):
        read_backbone(tmp_path / "odd.safetensors")


def test_the_whole_load_of_a_real_size_longlive_2_pickle_and_lora_runs_on_the_meta_device(keys_5b, monkeypatch):
    """model_bf16.pt-style pickle (meta tensors, the real 5B names under "generator" with "model.") and a rank-128
    LoRA through every step of load_backbone: unwrap, names, family, sizes, key check, merge, build, fill."""
    import core.formats.loader as loader
    from core.files.safe_reader import WeightsFile
    base = {"model." + k: v.to(torch.bfloat16) for k, v in meta_state(keys_5b["base_keys"]).items()}
    pickle = {"generator": base, "checkpoint_format": "longlive_generator_merged_lora", "merged_lora": True}
    lora = normalise_lora({"generator_lora": meta_state(keys_5b["longlive_lora_keys"])})
    monkeypatch.setattr(loader, "read_weights", lambda path, *a, **k: WeightsFile(path, "torch_zip", pickle))
    monkeypatch.setattr(loader, "read_lora", lambda path: lora)
    b = load_backbone("generator_checkpoint.pt", lora="lora_checkpoint.pt", dtype=torch.bfloat16, device="meta")
    assert (b.config.dim, b.config.num_layers, b.config.num_heads, b.config.in_dim) == (3072, 30, 24, 48)
    assert b.info.preset == "LongLive 2.0" and b.info.lora_layers == 300 and b.info.family == "Wan2.2 TI2V-5B"
    assert b.defaults.frames_per_block == 8 and b.defaults.sampler == "unipc"
    assert sum(p.numel() for p in b.model.parameters()) == keys_5b["num_parameters"]


HW = (4, 8)


# ------------------------------------------------------------------------------ runs: starts, shots, retrieval
@pytest.fixture(scope="module")
def model():
    return tiny_model(0, channels=48)


@pytest.fixture(scope="module")
def prompts():
    g = torch.Generator().manual_seed(1)
    return [torch.randn(1, 6, 32, generator=g) for _ in range(3)]


def small(**kw):
    """LongLive 2.0's settings scaled down: blocks of 2 frames, window 8, sink 2."""
    kw = {"frames_per_block": 2, "window": 8, "sink": 2, **kw}
    return sampling_config(DEFAULTS, **kw)


def test_an_image_start_is_held_clean_inside_the_first_block(model, prompts):
    image = torch.randn(1, 48, 1, *HW)
    updates = []
    res = generate(model, prompts[0], 8, HW, 3, small(), start=image,
                   callback=lambda u: updates.append((u.start_frame, u.x0.shape[1], u.replayed)))
    assert torch.equal(res.latents[:, :, :1], image)
    assert updates[0] == (0, 2, False) and len(updates) == 4       # whole blocks from frame 0, none replayed
    # a run stopped after two blocks and resumed from them gives the same video
    again = generate(model, prompts[0], 8, HW, 3, small(), start=res.latents[:, :, :4])
    assert torch.equal(again.latents, res.latents)


def test_the_clamped_start_works_with_the_renoise_sampler_too(model, prompts):
    image = torch.randn(1, 48, 1, *HW)
    res = generate(model, prompts[0], 8, HW, 3, small(sampler="renoise"), start=image)
    assert torch.equal(res.latents[:, :, :1], image)


def test_a_16_channel_start_on_the_5b_names_the_vae_to_use(model, prompts):
    with pytest.raises(ValueError, match=r"16 channels \(Wan2\.1 latents, made by the Wan2\.1 VAE\); this backbone "
                                         r"takes 48-channel Wan2\.2 latents: encode the start with the Wan2\.2 VAE"):
        generate(model, prompts[0], 8, HW, 3, small(), start=torch.zeros(1, 16, 1, *HW))


def test_a_cut_moves_the_rope_offset_of_every_later_block_and_uses_its_first_block_prompt(model, prompts):
    cut = PromptSchedule((Segment(0, prompts[0]), Segment(4, prompts[1], "shot 2", True, prompts[2])))
    plain = PromptSchedule((Segment(0, prompts[0]), Segment(4, prompts[1], "shot 2")))
    a = generate(model, cut, 8, HW, 3, small(shot_sink=False))
    b = generate(model, plain, 8, HW, 3, small(shot_sink=False))
    assert torch.equal(a.latents[:, :, :4], b.latents[:, :, :4])
    assert not torch.allclose(a.latents[:, :, 4:], b.latents[:, :, 4:])
    assert a.switches[0]["cut"] and a.switches[0]["rope_offset"] == 8.0 and not b.switches[0]["cut"]
    # with neither an offset nor a first-block prompt a cut is a plain prompt change
    no_offset = small(shot_sink=False, shot_rope_offset=0.0)
    c = generate(model, PromptSchedule((Segment(0, prompts[0]), Segment(4, prompts[1], "s", True))), 8, HW, 3,
                 no_offset)
    assert torch.equal(c.latents, b.latents)


def test_the_shot_sink_slides_behind_the_sink_then_is_kept():
    cache = KVCache(CachePolicy.native(window=8, sink=2), 1, 1, (1, 1), 1, 2, torch.float32, torch.device("cpu"))
    kept = []
    for block in range(7):
        cache.begin_block(2 * block, 2)
        if block == 3:
            cache.pin(2)
        kept.append((cache.pinned, cache._kept()))
    assert kept[3] == ((6, 2), 2)       # pinned at the last slots
    assert [k[0][0] for k in kept[4:6]] == [4, 2] and kept[5][1] == 4 and kept[6] == ((2, 2), 4)


def test_the_shot_sink_is_refused_with_retrieval_and_with_blocks_that_do_not_tile_the_sink():
    with pytest.raises(ValueError, match=r"multi-shot sink pins frames in the native sliding window.*--no-multi-shot-sink"):
        sampling_config(frames_per_block=8, window=32, sink=8, strategy="rag", shot_rope_offset=8.0, shot_sink=True)
    with pytest.raises(ValueError, match=r"sink \(3\) and a window \(32\) that are whole blocks of 8"):
        sampling_config(frames_per_block=8, window=32, sink=3, shot_rope_offset=8.0, shot_sink=True)
    assert sampling_config(DEFAULTS, retrieval=RetrievalConfig()).shots == ShotConfig(8.0, False)   # rag: shot sink off by default
    assert sampling_config(DEFAULTS).shots == ShotConfig(8.0, True)


def test_retrieval_runs_on_48_channel_latents_with_avg_pool_and_an_encoder(model, prompts):
    cfg = small(retrieval=RetrievalConfig(top_k=2, recent_exclude=1), window=8)
    res = generate(model, prompts[0], 16, HW, 3, cfg)
    assert res.descriptors.shape == (1, 16, 48) and res.retrieval_log
    assert all(len(r["pool_indices"]) <= 2 for r in res.retrieval_log)
    enc = RetrievalEncoder(EncoderConfig(in_channels=48, spatial_h=HW[0], spatial_w=HW[1], latent_dim=8,
                                         hidden_dims=[16, 32])).eval()
    res = generate(model, prompts[0], 16, HW, 3, cfg, encoder=enc)
    assert res.descriptors.shape == (1, 16, 8) and res.retrieval_log


def test_a_16_channel_retrieval_encoder_on_the_5b_says_how_to_get_one(model, prompts):
    enc = RetrievalEncoder(EncoderConfig(in_channels=16, spatial_h=HW[0], spatial_w=HW[1], latent_dim=8,
                                         hidden_dims=[16, 32]))
    with pytest.raises(ValueError, match=r"trained on 16-channel Wan2\.1 latents; this backbone makes 48-channel "
                                         r"Wan2\.2 latents: train one for it .*build-corpus.*or use avg_pool"):
        generate(model, prompts[0], 8, HW, 3, small(retrieval=RetrievalConfig(top_k=2)), encoder=enc)


def test_a_bfloat16_run_keeps_the_solver_in_float32(model, prompts):
    half = WanTransformer(model.cfg)
    half.load_state_dict(model.state_dict())
    res = generate(half.to(torch.bfloat16).eval(), prompts[0], 4, HW, 3, small())
    ref = generate(model, prompts[0], 4, HW, 3, small())
    assert res.latents.dtype == torch.float32
    assert ((res.latents - ref.latents).norm() / ref.latents.norm()) < 0.05


def test_the_text_schedule_marks_cuts_and_reads_seconds_at_the_family_rate():
    timed = parse_schedule_text("0s: a fox\n2s cut: a lake\n# note\n3s: the ice", "s.txt", latent=WAN22)
    assert [(t.frame, t.cut) for t in timed] == [(0, False), (12, True), (18, False)]
    assert WAN21.seconds_to_frame(2) == 8 and WAN22.seconds_to_frame(2) == 12
    with pytest.raises(ValueError, match="begins the video, not a new scene or shot"):
        parse_schedule_text("0s cut: a fox", latent=WAN22)
