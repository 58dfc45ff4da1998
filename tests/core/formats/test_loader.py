"""Loading a backbone (core/formats/loader.py): every checkpoint format people have loads to the same weights;
every bad input fails clearly, naming the file and the problem, before anything is generated; the head count's
sources; one load reads and checks each file once."""
import dataclasses
import json
import os
import random
from collections import Counter

import pytest
import torch
from safetensors.torch import save_file

from core.formats import (CheckpointError, detect_preset, expected_shapes, infer_config, is_backbone_checkpoint,
                          load_backbone, read_backbone, save_backbone_safetensors)
from core.model.transformer import WanConfig, WanTransformer

from checkpoints import CFG, TINY, assert_same_weights, peft_lora, prefixed, random_state, tiny_diffusers


# ------------------------------------------------------------------------------------------ formats
def test_self_forcing_uses_ema_weights_by_default_and_strips_fsdp_wrapper_names(tmp_path, state):
    other = random_state(1)
    ema = {f"model._fsdp_wrapped_module.{k.replace('.self_attn.', '._fsdp_wrapped_module.self_attn.')}": v
           for k, v in state.items()}
    torch.save({"generator_ema": ema, "generator": prefixed(other, "model.")}, tmp_path / "checkpoint_model_001.pt")
    b = load_backbone(tmp_path / "checkpoint_model_001.pt")
    assert_same_weights(b, state)
    assert (b.info.format, b.info.preset, b.info.source_key) == ("self_forcing", "Self-Forcing", "generator_ema")
    assert b.config == CFG


def test_self_forcing_without_ema_reads_generator(tmp_path, state):
    other = random_state(1)
    torch.save({"generator_ema": prefixed(state, "model."), "generator": prefixed(other, "model.")},
               tmp_path / "sf.pt")
    b = load_backbone(tmp_path / "sf.pt", use_ema=False)
    assert_same_weights(b, other)
    assert b.info.source_key == "generator"


@pytest.mark.parametrize("top", ["generator", "model"])
def test_causal_forcing_pickle_loads_from_generator_or_model_key(tmp_path, state, top):
    torch.save({top: prefixed(state, "model.")}, tmp_path / "causal_forcing.pt")
    b = load_backbone(tmp_path / "causal_forcing.pt")
    assert_same_weights(b, state)
    assert (b.info.format, b.info.preset, b.info.source_key) == ("causal_forcing", "Causal-Forcing", top)


@pytest.mark.parametrize("prefix", ["", "model.diffusion_model."])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float8_e4m3fn,
                                   torch.float8_e5m2])
def test_bare_wan_safetensors_load_with_or_without_prefix_in_any_stored_dtype(tmp_path, state, prefix, dtype):
    stored = {k: v.to(dtype) for k, v in state.items()}
    save_file(prefixed(stored, prefix), str(tmp_path / "wan2.1_t2v_1.3B.safetensors"))
    b = load_backbone(tmp_path / "wan2.1_t2v_1.3B.safetensors", dtype=torch.float32)
    assert all(p.dtype == torch.float32 for p in b.model.parameters())       # upcast at load
    assert_same_weights(b, stored)
    assert (b.info.format, b.info.preset, b.info.dtype) == ("wan_safetensors", "Wan2.1", str(dtype)[6:])


def test_bundled_checkpoint_keeps_only_the_diffusion_model(tmp_path, state):
    sd = {**prefixed(state, "model.diffusion_model."), "first_stage_model.decoder.conv_in.weight": torch.zeros(4, 4)}
    save_file(sd, str(tmp_path / "wan_aio.safetensors"))
    assert_same_weights(load_backbone(tmp_path / "wan_aio.safetensors"), state)


def test_comfyui_scaled_fp8_weights_are_dequantised(tmp_path, state):
    stored, want = {}, dict(state)
    for k, v in state.items():
        if v.dim() == 2:
            scale = v.abs().max() / 200
            stored[k] = (v / scale).to(torch.float8_e4m3fn)
            stored[k[: -len("weight")] + "scale_weight"] = scale.reshape(1)
            want[k] = stored[k].float() * scale
        else:
            stored[k] = v
    marker = {"scaled_fp8": torch.zeros(0, dtype=torch.float8_e4m3fn)}    # ComfyUI's top-level marker
    save_file({**prefixed(stored, "model.diffusion_model."), **marker}, str(tmp_path / "wan_fp8_scaled.safetensors"))
    assert_same_weights(load_backbone(tmp_path / "wan_fp8_scaled.safetensors"), want)


def to_diffusers(state):
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers
    return convert_wan_transformer_to_diffusers(dict(state))


def test_diffusers_single_file_maps_to_the_same_wan_weights(tmp_path, state):
    d = to_diffusers(state)              # diffusers' own Wan → diffusers converter
    assert set(d) == set(tiny_diffusers(heads=1).state_dict())
    save_file(d, str(tmp_path / "wan_diffusers.safetensors"))
    b = load_backbone(tmp_path / "wan_diffusers.safetensors")
    assert_same_weights(b, state)
    assert (b.info.format, b.info.preset) == ("diffusers", "Wan2.1")


def test_diffusers_sharded_folder_computes_the_same_flow_as_diffusers(tmp_path):
    ref = tiny_diffusers(heads=2)
    ref.save_pretrained(tmp_path / "Wan2.1-T2V-tiny-Diffusers" / "transformer", max_shard_size="500KB")
    folder = tmp_path / "Wan2.1-T2V-tiny-Diffusers"
    assert len(list((folder / "transformer").glob("*.safetensors"))) > 1
    b = load_backbone(folder)                                     # heads from config.json
    assert (b.config.num_heads, b.info.format, b.info.num_heads) == (2, "diffusers", 2)
    torch.manual_seed(1)
    x = torch.randn(1, 16, 3, 4, 6)
    prompt = torch.randn(1, 20, CFG.text_dim)
    padded = torch.cat([prompt, prompt.new_zeros(1, 512 - 20, CFG.text_dim)], 1)
    with torch.no_grad():
        want = ref(x, torch.tensor([700.0]), padded, return_dict=False)[0]
        got = b.model(x, torch.full((1, 3), 700.0), b.model.encode_text(prompt))
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()


def test_loaded_model_is_frozen_in_eval_mode_in_the_requested_dtype(tmp_path, state):
    save_file(state, str(tmp_path / "wan.safetensors"))
    b = load_backbone(tmp_path / "wan.safetensors", dtype=torch.bfloat16, num_heads=2)
    assert not b.model.training and b.config.num_heads == 2
    assert all(p.dtype == torch.bfloat16 and not p.requires_grad and not p.is_meta for p in b.model.parameters())
    out = b.model(torch.randn(1, 16, 3, 4, 6, dtype=torch.bfloat16), torch.full((1, 3), 500.0),
                  b.model.encode_text(torch.randn(1, 7, CFG.text_dim, dtype=torch.bfloat16)))
    assert out.shape == (1, 16, 3, 4, 6) and torch.isfinite(out).all()


def test_infer_config_reads_every_size_from_the_shapes():
    cfg = WanConfig(dim=256, ffn_dim=320, num_layers=3, num_heads=2, text_dim=48, freq_dim=64, in_dim=16,
                    out_dim=16)
    with torch.device("meta"):
        sd = WanTransformer(cfg).state_dict()
    assert infer_config(sd) == cfg                                  # 256 / 128 = 2 heads
    assert infer_config(sd, num_heads=4).num_heads == 4


def test_preset_detection_reads_only_names(tmp_path, state):
    save_file(state, str(tmp_path / "self_forcing_dmd.safetensors"))
    torch.save({"generator_ema": prefixed(state, "model.")}, tmp_path / "checkpoint.pt")
    torch.save(peft_lora(state), tmp_path / "longlive_lora.pt")
    assert detect_preset(tmp_path / "self_forcing_dmd.safetensors") == "Self-Forcing"     # name hint
    assert detect_preset(tmp_path / "checkpoint.pt") == "Self-Forcing"                   # generator_ema
    assert detect_preset(tmp_path / "checkpoint.pt", lora=tmp_path / "longlive_lora.pt") == "LongLive"
    assert is_backbone_checkpoint(tmp_path / "checkpoint.pt")
    assert not is_backbone_checkpoint(tmp_path / "longlive_lora.pt")
    assert not is_backbone_checkpoint(tmp_path / "nothing.safetensors")


# ------------------------------------------------------------------------------- real files, real keys
def golden_arch(golden_dir):
    arch = json.loads((golden_dir / "case.json").read_text())["arch"]
    return WanConfig(dim=arch["dim"], ffn_dim=arch["ffn_dim"], num_layers=arch["num_layers"],
                     num_heads=arch["num_heads"], freq_dim=arch["freq_dim"], text_dim=arch["text_dim"],
                     in_dim=16, out_dim=16)


def test_golden_bare_safetensors_loads_with_the_golden_architecture(golden_dir):
    path = golden_dir / "wan_tiny_t2v_bare.safetensors"
    if not path.exists():
        pytest.skip("golden files not copied into tests/data/golden")
    cfg = golden_arch(golden_dir)
    b = load_backbone(path, num_heads=cfg.num_heads)
    assert b.config == cfg and b.info.format == "wan_safetensors"


def test_golden_causal_forcing_pickle_equals_the_bare_safetensors(golden_dir):
    if not (golden_dir / "generator.pt").exists() or not (golden_dir / "wan_tiny_t2v_bare.safetensors").exists():
        pytest.skip("golden generator.pt not copied into tests/data/golden")
    cfg = golden_arch(golden_dir)
    b = load_backbone(golden_dir / "generator.pt", num_heads=cfg.num_heads)
    bare = load_backbone(golden_dir / "wan_tiny_t2v_bare.safetensors", num_heads=cfg.num_heads)
    assert (b.info.format, b.info.source_key, b.config) == ("causal_forcing", "generator", cfg)
    assert_same_weights(b, bare.model.state_dict())


# -------------------------------------------------------------------------------------- bad inputs
def test_missing_file_is_named(tmp_path):
    with pytest.raises(CheckpointError, match=r"missing\.pt' does not exist"):
        load_backbone(tmp_path / "missing.pt")


def test_empty_file_is_reported_as_an_interrupted_download(tmp_path):
    (tmp_path / "empty.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty\.safetensors' is empty.*download it again"):
        load_backbone(tmp_path / "empty.safetensors")


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_truncated_file_is_reported(tmp_path, state, suffix):
    full = tmp_path / f"full{suffix}"
    torch.save({"generator": state}, full) if suffix == ".pt" else save_file(state, str(full))
    data = full.read_bytes()
    (tmp_path / f"cut{suffix}").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=rf"cut\{suffix}'.*truncated.*download it again"):
        load_backbone(tmp_path / f"cut{suffix}")


def test_random_bytes_are_reported_as_corrupt(tmp_path):
    # seeded noise whose first byte is neither a pickle's protocol mark (0x80) nor a zip's 'P' (random bytes began
    # with 0x80 about once in 256 runs and were then read as a damaged pickle)
    (tmp_path / "noise.ckpt").write_bytes(b"\x13" + random.Random(0).randbytes(4095))
    with pytest.raises(CheckpointError, match=r"noise\.ckpt' is not a checkpoint: its first bytes are neither.*its "
                                              r"download finished$"):
        load_backbone(tmp_path / "noise.ckpt")


def test_gguf_file_is_refused_with_an_alternative(tmp_path):
    (tmp_path / "wan-q4.gguf").write_bytes(b"GGUF" + bytes(64))
    with pytest.raises(CheckpointError, match=r"wan-q4\.gguf' is a GGUF.*safetensors"):
        load_backbone(tmp_path / "wan-q4.gguf")


@pytest.mark.parametrize("name, sd, family", [
    ("sd15.safetensors", {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(320, 4, 3, 3),
                          "first_stage_model.encoder.conv_in.weight": torch.zeros(128, 3, 3, 3)}, "Stable Diffusion"),
    ("flux1-dev.safetensors", {"double_blocks.0.img_attn.qkv.weight": torch.zeros(96, 32),
                               "img_in.weight": torch.zeros(32, 64)}, "Flux"),
    ("wan_2.1_vae.safetensors", {"encoder.conv1.weight": torch.zeros(96, 3, 3, 3, 3),
                                 "decoder.conv1.weight": torch.zeros(384, 16, 3, 3, 3)}, "VAE"),
])
def test_a_model_of_another_kind_is_not_mistaken_for_a_backbone(tmp_path, name, sd, family):
    save_file(sd, str(tmp_path / name))
    with pytest.raises(CheckpointError, match=rf"{name}' is not a Wan2.1 text-to-video or Wan2.2 TI2V-5B transformer.*{family}"):
        load_backbone(tmp_path / name)


def test_missing_weights_are_listed_by_name(tmp_path, state):
    sd = {k: v for k, v in state.items() if k != "blocks.1.cross_attn.k.weight"}
    save_file(sd, str(tmp_path / "partial.safetensors"))
    with pytest.raises(CheckpointError, match=r"partial\.safetensors' does not match.*1 missing \(e\.g\. "
                                              r"blocks\.1\.cross_attn\.k\.weight\).*download it again"):
        load_backbone(tmp_path / "partial.safetensors")


def test_a_removed_transformer_block_is_reported(tmp_path, state):
    sd = {k: v for k, v in state.items() if not k.startswith("blocks.0.")}
    torch.save({"generator": prefixed(sd, "model.")}, tmp_path / "no_block0.pt")
    with pytest.raises(CheckpointError, match=r"no_block0\.pt'.*blocks \[0\] are missing entirely"):
        load_backbone(tmp_path / "no_block0.pt")


def test_wrong_shapes_and_unexpected_keys_are_listed(tmp_path, state):
    sd = dict(state)
    sd["blocks.0.ffn.2.weight"] = torch.zeros(CFG.dim, 100)
    sd["blocks.0.extra.weight"] = torch.zeros(3)
    save_file(sd, str(tmp_path / "modified.safetensors"))
    with pytest.raises(CheckpointError, match=r"modified\.safetensors'.*1 unexpected \(e\.g\. blocks\.0\.extra"
                                              r"\.weight\).*blocks\.0\.ffn\.2\.weight \[128, 100\] instead of "
                                              r"\[128, 256\]"):
        load_backbone(tmp_path / "modified.safetensors")


def test_ema_only_checkpoint_with_ema_off_asks_to_turn_it_on(tmp_path, state):
    torch.save({"generator_ema": prefixed(state, "model.")}, tmp_path / "ema_only.pt")
    with pytest.raises(CheckpointError, match=r"ema_only\.pt' holds only EMA weights.*use_ema"):
        load_backbone(tmp_path / "ema_only.pt", use_ema=False)


def test_dim_not_a_multiple_of_128_needs_explicit_heads(tmp_path):
    sd = random_state(0, TINY)
    save_file(sd, str(tmp_path / "tiny.safetensors"))
    with pytest.raises(CheckpointError, match=r"tiny\.safetensors' has dim 64.*num_heads"):
        load_backbone(tmp_path / "tiny.safetensors")
    assert load_backbone(tmp_path / "tiny.safetensors", num_heads=2).config.num_heads == 2


# ------------------------------------------------------------------------------------- head count


def test_head_count_is_read_from_the_safetensors_metadata_config(tmp_path):
    path = save_backbone_safetensors(random_state(0, TINY), tmp_path / "tiny.safetensors", TINY)
    b = load_backbone(path)
    assert (b.config, b.info.num_heads) == (TINY, 2)


def test_head_count_is_read_from_a_bare_num_heads_metadata_entry(tmp_path):
    save_file(random_state(0, TINY), str(tmp_path / "tiny.safetensors"), metadata={"num_heads": "4"})
    assert load_backbone(tmp_path / "tiny.safetensors").config.num_heads == 4


def test_num_heads_given_by_the_caller_wins_over_the_file(tmp_path):
    path = save_backbone_safetensors(random_state(0, TINY), tmp_path / "tiny.safetensors", TINY)
    assert load_backbone(path, num_heads=4).config.num_heads == 4


def test_without_any_head_count_the_error_names_both_fixes(tmp_path):
    save_file(random_state(0, TINY), str(tmp_path / "tiny.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"tiny\.safetensors' has dim 64, not a multiple of the Wan2\.1 "
                                              r"text-to-video head size 128.*num_heads.*--num-heads.*metadata"):
        load_backbone(tmp_path / "tiny.safetensors")


def test_checking_weights_needs_no_head_count(tmp_path):
    save_file(random_state(0, TINY), str(tmp_path / "tiny.safetensors"))
    sd, info = read_backbone(tmp_path / "tiny.safetensors")         # keys and shapes fully checked
    assert set(sd) == set(expected_shapes(TINY)) and info.num_heads is None
    assert is_backbone_checkpoint(tmp_path / "tiny.safetensors")


def test_a_head_count_that_does_not_fit_dim_is_refused_naming_its_source(tmp_path):
    save_file(random_state(0, TINY), str(tmp_path / "tiny.safetensors"), metadata={"num_heads": "3"})
    with pytest.raises(CheckpointError, match=r"tiny\.safetensors': 3 attention heads \(from the file's config\)"):
        load_backbone(tmp_path / "tiny.safetensors")


def test_a_metadata_config_of_another_size_is_refused(tmp_path):
    save_backbone_safetensors(random_state(0, TINY), tmp_path / "tiny.safetensors",
                              {**dataclasses.asdict(TINY), "num_layers": 3})
    with pytest.raises(CheckpointError, match=r"safetensors metadata says num_layers 3 but the weights have 1"):
        load_backbone(tmp_path / "tiny.safetensors")


# ------------------------------------------------------------------------- one pass, one reader
@pytest.mark.parametrize("layout", ["safetensors", "self_forcing_pickle"])
def test_one_load_reads_and_checks_each_file_once(tmp_path, state, monkeypatch, layout):
    from core.formats import loader
    from core.files import safe_reader as reader
    path = tmp_path / ("wan.safetensors" if layout == "safetensors" else "sf.pt")
    if layout == "safetensors":
        save_file(state, str(path))
    else:
        torch.save({"generator_ema": prefixed(state, "model."), "generator": prefixed(state, "model.")}, path)
    torch.save(peft_lora(state), tmp_path / "lora.pt")
    calls = Counter()

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapper

    for module, name in ((reader, "sniff"), (reader, "safe_open"), (torch, "load"), (loader, "check_keys")):
        monkeypatch.setattr(module, name, counted(name, getattr(module, name)))
    real_identify = loader.identify

    def identify(sd, p):       # the family it returns counts how often the sizes are read
        calls["identify"] += 1
        family = real_identify(sd, p)
        return dataclasses.replace(family, read_sizes=counted("read_sizes", family.read_sizes))

    monkeypatch.setattr(loader, "identify", identify)
    load_backbone(path, lora=tmp_path / "lora.pt")
    reads = {"safe_open": 1, "load": 1} if layout == "safetensors" else {"load": 2}    # backbone, LoRA
    assert calls == {"sniff": 2, **reads, "identify": 1, "read_sizes": 1, "check_keys": 1}


# -------------------------------------------------------------------------------- the registry
