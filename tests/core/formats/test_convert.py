"""Converting released checkpoints to ComfyUI's format (core/formats/convert.py): the converted file loads back with
Load Backbone's loader to the same weights (bit for bit in bf16 from a bf16 source, within e4m3's rounding in fp8);
it has the keys and layout ComfyUI's Wan detection, scaled-fp8 loader and LoRA key map read (checked here without
ComfyUI); it carries the family's settings; nothing a user has is overwritten; the real 1.3B and 5B key sets
convert on the meta device with the expected names and bytes."""
import json

import pytest
import torch
from safetensors import safe_open

from core.families.registry import FAMILIES
from core.formats import CheckpointError, load_backbone, read_lora
from core.formats.convert import (COMFY_HEAD, SETTINGS_KEY, comfy_backbone, convert_checkpoint, family_settings,
                                  quantise_tensor, read_file_settings, read_settings)
from core.model.transformer import WanConfig

from checkpoints import assert_same_weights, peft_lora, prefixed
from factory import tiny_model
from paths import DATA

FP8 = torch.float8_e4m3fn
# big enough for ComfyUI's Wan detection (heads of 128), small enough to be quick
COMFY_CFG = dict(dim=256, heads=2, text_dim=64, freq_dim=256, bias_std=0.05)


def bf16_state(channels=16, seed=0):
    model = tiny_model(seed, channels=channels, **COMFY_CFG)
    return {k: v.to(torch.bfloat16) for k, v in model.state_dict().items()}


def tensors(path):
    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The released layouts: Self-Forcing (generator_ema), LongLive's base + peft LoRA, LongLive 2.0 (model_bf16.pt;
    generator_checkpoint.pt + lora_checkpoint.pt under generator_lora), all bf16 as released."""
    root = tmp_path_factory.mktemp("released")
    wan21, wan22 = bf16_state(16), bf16_state(48, seed=1)
    torch.save({"generator_ema": prefixed(wan21, "model."), "generator": prefixed(bf16_state(16, 2), "model.")},
               root / "self_forcing_dmd.pt")
    torch.save(peft_lora(wan21), root / "longlive_lora.pt")
    torch.save({"generator": prefixed(wan22, "model.")}, root / "model_bf16.pt")
    torch.save({"generator": prefixed(wan22, "model.")}, root / "generator_checkpoint.pt")
    torch.save({"generator_lora": peft_lora(wan22, rank=8, seed=5), "lora_alpha": 16}, root / "lora_checkpoint.pt")
    return root, wan21, wan22


# ------------------------------------------------------------------------------------- back through Load Backbone
def test_a_bf16_checkpoint_converts_to_bf16_bit_for_bit(files, tmp_path):
    root, wan21, _ = files
    done = convert_checkpoint(root / "self_forcing_dmd.pt", tmp_path / "sf.safetensors")
    b = load_backbone(done.backbone)
    assert_same_weights(b, wan21)
    assert (b.info.family, done.preset, done.dtype, done.fp8_error) == ("Wan2.1 text-to-video", "Self-Forcing",
                                                                       "bf16", None)
    stored, _ = tensors(done.backbone)
    assert all(v.dtype == torch.bfloat16 for v in stored.values()) and set(stored) == set(wan21)


def test_a_float32_checkpoint_converts_to_its_bf16_rounding(tmp_path):
    state = tiny_model(0, **COMFY_CFG).state_dict()
    torch.save({"generator": prefixed(state, "model.")}, tmp_path / "causal_forcing.pt")
    done = convert_checkpoint(tmp_path / "causal_forcing.pt", f"{tmp_path}/out/")
    assert done.backbone.name == "causal_forcing_bf16.safetensors"
    assert_same_weights(load_backbone(done.backbone), {k: v.to(torch.bfloat16) for k, v in state.items()})


def test_fp8_loads_back_within_e4m3_rounding_and_states_its_error(files, tmp_path):
    root, wan21, _ = files
    done = convert_checkpoint(root / "self_forcing_dmd.pt", tmp_path, dtype="fp8")
    assert done.backbone.name == "self_forcing_fp8_scaled.safetensors"
    loaded = load_backbone(done.backbone).model.state_dict()
    stored, _ = tensors(done.backbone)
    num = den = 0.0
    for k, w in wan21.items():
        w = w.float()
        if w.dim() != 2:
            assert torch.equal(loaded[k], w), k                    # only the Linear weights are quantised
            continue
        scale = stored[k[: -len("weight")] + "scale_weight"]
        bound = torch.maximum(w.abs() / 16, scale / 1024) * (1 + 1e-6)
        assert ((loaded[k] - w).abs() <= bound).all(), k
        num, den = num + float((loaded[k] - w).square().sum()), den + float(w.square().sum())
    assert done.fp8_error_total == pytest.approx((num / den) ** 0.5, rel=1e-4)
    assert 0.01 < done.fp8_error_total <= done.fp8_error < 0.04      # e4m3: about 2.7 % on normal weights


def test_a_merged_lora_equals_load_backbones_merge(files, tmp_path):
    root, _, _ = files
    done = convert_checkpoint(root / "self_forcing_dmd.pt", tmp_path / "ll.safetensors",
                              lora=root / "longlive_lora.pt", lora_strength=0.7)
    direct = load_backbone(root / "self_forcing_dmd.pt", lora=root / "longlive_lora.pt", lora_strength=0.7)
    assert_same_weights(load_backbone(done.backbone), direct.model.state_dict())
    assert (done.preset, done.lora, done.lora_layers) == ("LongLive", None, 20)
    assert read_file_settings(done.backbone).source["lora_strength"] == 0.7


def test_a_separate_lora_file_applied_at_load_equals_the_released_lora(files, tmp_path):
    root, _, _ = files
    done = convert_checkpoint(root / "self_forcing_dmd.pt", f"{tmp_path}/models/", lora=root / "longlive_lora.pt",
                              lora_out=f"{tmp_path}/loras/")
    assert (done.backbone.name, done.lora.name) == ("longlive_base_bf16.safetensors", "longlive_lora.safetensors")
    converted = load_backbone(done.backbone, lora=done.lora, lora_strength=0.7)
    released = load_backbone(root / "self_forcing_dmd.pt", lora=root / "longlive_lora.pt", lora_strength=0.7)
    assert_same_weights(converted, released.model.state_dict())
    settings = read_file_settings(done.lora)
    assert (settings.kind, settings.preset, settings.source["base"]) == ("lora", "LongLive", done.backbone.name)
    # each file named as Load Backbone names its source: the base alone as the .pt alone, with the LoRA as LongLive
    assert (done.preset, done.lora_preset, converted.info.preset) == ("Self-Forcing", "LongLive", "LongLive")
    assert load_backbone(done.backbone).info.preset == load_backbone(root / "self_forcing_dmd.pt").info.preset


def test_longlive_2_files_convert_with_their_family_and_settings(files, tmp_path):
    root, _, wan22 = files
    merged = convert_checkpoint(root / "model_bf16.pt", tmp_path)
    assert_same_weights(load_backbone(merged.backbone), wan22)
    settings = read_file_settings(merged.backbone)
    assert (settings.family, settings.preset, settings.kind) == ("Wan2.2 TI2V-5B", "LongLive 2.0", "backbone")
    assert settings.settings["frames_per_block"] == 8 and settings.settings["sampler"] == "unipc"
    assert settings.backbone_family() is FAMILIES.named("Wan2.2 TI2V-5B")
    base = convert_checkpoint(root / "generator_checkpoint.pt", tmp_path / "b.safetensors",
                              lora=root / "lora_checkpoint.pt", lora_out=tmp_path / "l.safetensors")
    lora_tensors, _ = tensors(base.lora)
    assert all(v.item() == 16.0 for k, v in lora_tensors.items() if k.endswith(".alpha"))   # the file's lora_alpha
    direct = load_backbone(root / "generator_checkpoint.pt", lora=root / "lora_checkpoint.pt")
    assert_same_weights(load_backbone(base.backbone, lora=base.lora), direct.model.state_dict())


# ------------------------------------------------------------------------------------- what ComfyUI reads
def detect_wan(state):
    """ComfyUI's Wan detection rules (comfy/model_detection.py, 0.3.48 and 0.8.0), restated: its sizes of a file."""
    blocks = {int(k.split(".")[1]) for k in state if k.startswith("blocks.")}
    dim = state["head.modulation"].shape[-1]
    return dict(dim=dim, num_heads=dim // COMFY_HEAD, out_dim=state["head.head.weight"].shape[0] // 4,
                in_dim=state["patch_embedding.weight"].shape[1], num_layers=len(blocks),
                ffn_dim=state["blocks.0.ffn.0.weight"].shape[0],
                model_type="i2v" if "img_emb.proj.0.bias" in state else "t2v")


@pytest.mark.parametrize("channels", [16, 48], ids=["wan2.1", "wan2.2"])
def test_the_bf16_file_is_detected_by_comfyuis_rules_as_the_right_wan_model(tmp_path, channels):
    state = bf16_state(channels)
    torch.save({"generator": prefixed(state, "model.")}, tmp_path / "causal_forcing.pt")
    done = convert_checkpoint(tmp_path / "causal_forcing.pt", tmp_path / "out.safetensors")
    stored, metadata = tensors(done.backbone)
    assert detect_wan(stored) == dict(dim=256, num_heads=2, out_dim=channels, in_dim=channels, num_layers=2,
                                      ffn_dim=512, model_type="t2v")
    assert not any(k.startswith(("model.", "diffusion_model.")) for k in stored)      # bare names, as ComfyUI's files
    assert "_quantization_metadata" not in metadata and done.notes == ()
    assert json.loads(metadata["config"])["num_heads"] == 2


def test_fp8_is_comfyuis_scaled_fp8_layout(files, tmp_path):
    root, wan21, _ = files
    stored, _ = tensors(convert_checkpoint(root / "self_forcing_dmd.pt", tmp_path / "f.safetensors", dtype="fp8").backbone)
    marker = stored.pop("scaled_fp8")
    assert marker.dtype == FP8 and marker.numel() == 0      # empty: ComfyUI's own marker (fp8 matmul allowed)
    linear = {k for k, v in wan21.items() if v.dim() == 2}
    assert len(linear) == 6 + 2 * 10                        # text and time embeddings, time projection, head; 10 a block
    for k in linear:
        layer = k[: -len("weight")]
        assert stored.pop(k).dtype == FP8
        scale, scale_input = stored.pop(layer + "scale_weight"), stored.pop(layer + "scale_input")
        assert scale.shape == () and scale.dtype == torch.float32 and scale > 0       # per tensor: 0.3.48 and 0.8.0
        assert scale_input.shape == () and scale_input.item() == 1.0
    assert set(stored) == set(wan21) - linear and all(v.dtype == torch.bfloat16 for v in stored.values())


def test_the_lora_file_uses_the_key_names_comfyui_maps_for_a_wan_model(files, tmp_path):
    root, wan21, _ = files
    done = convert_checkpoint(root / "self_forcing_dmd.pt", tmp_path / "b.safetensors", lora=root / "longlive_lora.pt",
                              lora_out=tmp_path / "l.safetensors")
    stored, metadata = tensors(done.lora)
    released = torch.load(root / "longlive_lora.pt")
    modules = {k.removesuffix(".weight").removesuffix(".lora_up").removesuffix(".lora_down").removesuffix(".alpha")
               for k in stored}
    assert len(modules) == 20 and len(stored) == 3 * 20
    for m in modules:
        # ComfyUI's model_lora_keys_unet maps "diffusion_model.<name>" to the weight "diffusion_model.<name>.weight"
        assert m.startswith("diffusion_model.") and m[len("diffusion_model."):] + ".weight" in wan21
        peft = "base_model.model." + m[len("diffusion_model."):]
        assert torch.equal(stored[m + ".lora_down.weight"], released[peft + ".lora_A.weight"])      # A [r, in]
        assert torch.equal(stored[m + ".lora_up.weight"], released[peft + ".lora_B.weight"])        # B [out, r]
        assert stored[m + ".alpha"].item() == 4.0           # no alpha in the file: alpha = r, ComfyUI's scale 1
    assert read_settings(metadata).kind == "lora" and len(read_lora(done.lora)[0]) == 20


def test_a_head_size_comfyui_cannot_read_is_said(tmp_path):
    state = tiny_model(0).state_dict()           # dim 64, 2 heads of 32: ComfyUI would count 0 heads of 128
    torch.save({"generator": prefixed(state, "model.")}, tmp_path / "causal_forcing.pt")
    done = convert_checkpoint(tmp_path / "causal_forcing.pt", tmp_path / "o.safetensors", num_heads=2)
    assert "heads of 32" in done.notes[0] and "Load Backbone" in done.notes[0]
    assert load_backbone(done.backbone).config.num_heads == 2          # Load Backbone reads it from the metadata


# ------------------------------------------------------------------------------------- settings in the metadata
def test_read_settings_gives_the_family_settings_back_and_none_for_other_files(files, tmp_path):
    root, _, _ = files
    done = convert_checkpoint(root / "self_forcing_dmd.pt", tmp_path / "s.safetensors")
    settings = read_file_settings(done.backbone)
    family = FAMILIES.named("Wan2.1 text-to-video")
    assert settings.settings == json.loads(json.dumps(family_settings(family)))
    assert settings.settings["window"] == family.defaults.window and settings.source["key"] == "generator_ema"
    assert read_settings(None) is None and read_settings({"format": "pt"}) is None
    assert read_settings({SETTINGS_KEY: "not json"}) is None and read_settings({SETTINGS_KEY: "[1]"}) is None


# ------------------------------------------------------------------------------------- nothing is lost
def test_an_existing_output_is_kept_unless_overwrite(files, tmp_path):
    root, _, _ = files
    out = tmp_path / "x.safetensors"
    out.write_bytes(b"mine")
    with pytest.raises(ValueError, match="already exists; pass --overwrite"):
        convert_checkpoint(root / "self_forcing_dmd.pt", out)
    assert out.read_bytes() == b"mine"
    convert_checkpoint(root / "self_forcing_dmd.pt", out, overwrite=True)
    assert read_file_settings(out).preset == "Self-Forcing"


def test_an_output_that_is_the_input_is_refused_even_with_overwrite(files, tmp_path):
    root, _, _ = files
    first = convert_checkpoint(root / "self_forcing_dmd.pt", tmp_path / "a.safetensors").backbone
    before = first.read_bytes()
    with pytest.raises(ValueError, match="is the input backbone"):
        convert_checkpoint(first, first, dtype="fp8", overwrite=True)
    (tmp_path / "link.safetensors").symlink_to(first)
    with pytest.raises(ValueError, match="is the input backbone"):
        convert_checkpoint(first, tmp_path / "link.safetensors", overwrite=True)
    assert first.read_bytes() == before


@pytest.mark.parametrize("kwargs,message", [
    (dict(out="x.pt"), "does not end in .safetensors"),
    (dict(dtype="fp16"), "is not one of bf16, fp8"),
    (dict(lora_out="l.safetensors"), "without a LoRA"),
    (dict(lora="longlive_lora.pt", lora_out="o.safetensors"), "same file as output"),
    (dict(lora="longlive_lora.pt", lora_out="l.safetensors", lora_strength=0.7), "set the strength in LoraLoader"),
])
def test_bad_requests_are_one_line_and_write_nothing(files, tmp_path, kwargs, message):
    root, _, _ = files
    kwargs = {"out": "o.safetensors", **kwargs}
    kwargs = {k: (root / v if k == "lora" else tmp_path / v) if isinstance(v, str) and k != "dtype" else v
              for k, v in kwargs.items()}
    with pytest.raises(ValueError, match=message) as err:
        convert_checkpoint(root / "self_forcing_dmd.pt", **kwargs)
    assert "\n" not in str(err.value) and list(tmp_path.iterdir()) == []


def test_a_file_that_is_not_a_backbone_is_refused_by_the_loader(files, tmp_path):
    root, _, _ = files
    with pytest.raises(CheckpointError, match="looks like a LoRA"):
        convert_checkpoint(root / "longlive_lora.pt", tmp_path / "o.safetensors")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------- the real key sets
@pytest.mark.parametrize("keys,dim,channels,bf16_gib", [("wan2.1_t2v_1.3b_keys.json", 1536, 16, 2.64),
                                                       ("wan2.2_ti2v_5b_keys.json", 3072, 48, 9.31)],
                         ids=["1.3B", "5B"])
def test_the_real_key_sets_convert_on_the_meta_device_with_the_expected_names_and_bytes(keys, dim, channels, bf16_gib):
    shapes = json.loads((DATA / keys).read_text())["base_keys"]
    with torch.device("meta"):
        state = {k: torch.empty(s, dtype=torch.float32) for k, s in shapes.items()}
    bf16, _ = comfy_backbone(state, "bf16")
    assert set(bf16) == set(shapes) and round(nbytes(bf16) / 2**30, 2) == bf16_gib
    assert detect_wan(bf16) == dict(dim=dim, num_heads=dim // 128, out_dim=channels, in_dim=channels, num_layers=30,
                                    ffn_dim=shapes["blocks.0.ffn.0.weight"][0], model_type="t2v")
    fp8, _ = comfy_backbone(state, "fp8")
    linear = [k for k, s in shapes.items() if len(s) == 2]
    assert set(fp8) == set(shapes) | {k[:-6] + s for k in linear for s in ("scale_weight", "scale_input")} | {"scaled_fp8"}
    wide = sum(torch.Size(s).numel() for k, s in shapes.items() if len(s) != 2)
    assert nbytes(fp8) == sum(torch.Size(shapes[k]).numel() for k in linear) + 8 * len(linear) + 2 * wide
    assert nbytes(fp8) < 0.52 * nbytes(bf16)


def nbytes(state):
    return sum(t.numel() * t.element_size() for t in state.values())


def test_quantise_tensor_keeps_the_largest_weight_and_zero():
    w = torch.tensor([[0.5, -2.0], [1e-3, 0.0]])
    q, scale = quantise_tensor(w)
    assert scale.item() == pytest.approx(2.0 / 448) and (q.float() * scale)[0, 1].item() == pytest.approx(-2.0)
    assert quantise_tensor(torch.zeros(2, 2))[1].item() == 1.0


def test_wan_config_is_written_for_load_backbone(files, tmp_path):
    root, _, _ = files
    _, metadata = tensors(convert_checkpoint(root / "self_forcing_dmd.pt", tmp_path / "c.safetensors").backbone)
    assert WanConfig(**{**json.loads(metadata["config"]), "patch_size": (1, 2, 2)}).num_heads == 2


def test_a_scaled_fp8_file_converts_back_to_bf16_as_load_backbone_reads_it(files, tmp_path):
    root, _, _ = files
    fp8 = convert_checkpoint(root / "self_forcing_dmd.pt", tmp_path / "q.safetensors", dtype="fp8").backbone
    wide = convert_checkpoint(fp8, tmp_path / "w.safetensors")
    dequantised = load_backbone(fp8).model.state_dict()
    assert_same_weights(load_backbone(wide.backbone), {k: v.to(torch.bfloat16) for k, v in dequantised.items()})


def test_a_renamed_converted_file_keeps_its_preset_in_load_backbone(files, tmp_path):
    root, _, _ = files
    done = convert_checkpoint(root / "self_forcing_dmd.pt", tmp_path / "ll.safetensors", lora=root / "longlive_lora.pt")
    renamed = done.backbone.rename(tmp_path / "my_model.safetensors")
    assert load_backbone(renamed).info.preset == "LongLive"          # from the metadata, not the name
    plain = convert_checkpoint(renamed, tmp_path / "sf.safetensors", overwrite=True)    # the stated preset carries on
    assert plain.preset == "LongLive" and load_backbone(plain.backbone).info.preset == "LongLive"
