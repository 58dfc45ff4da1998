"""fp8 weights kept as fp8 at load (core/formats/fp8_weights.py): ComfyUI's scaled-fp8 and comfy_quant files load
with their own fp8 weights and scales, a wider checkpoint is quantised under weights="fp8", "auto" is fp8 only for an
fp8 file on CUDA, and the real 1.3B and 5B key sets cost the expected bytes on the meta device."""
import json

import pytest
import torch
from safetensors.torch import save_file

from core.formats import (CheckpointError, backbone_from_state, backbone_on_meta, is_fp8_file, load_backbone,
                          resolve_weights, save_backbone_safetensors)
from core.model.fp8_linear import Fp8Linear, quantise_rows, weight_bytes

from checkpoints import CFG, peft_lora, prefixed, random_state
from paths import DATA

FP8 = torch.float8_e4m3fn


def projections(state):
    return [k for k, v in state.items() if k.startswith("blocks.") and v.dim() == 2]


def scaled_fp8_file(state, path):
    """ComfyUI's "fp8_scaled" layout: fp8 weights with a scalar ``scale_weight`` (and ``scale_input``) each,
    ``model.diffusion_model.`` names and the top-level ``scaled_fp8`` marker."""
    stored, want = {}, {}
    for k, v in state.items():
        stored[k] = want[k] = v
        if k in projections(state):
            scale = v.abs().max() / 448
            stored[k] = (v / scale).to(FP8)
            stored[k[: -len("weight")] + "scale_weight"] = scale.reshape(())
            stored[k[: -len("weight")] + "scale_input"] = torch.ones(())
            want[k] = (stored[k], scale)
    save_file({**prefixed(stored, "model.diffusion_model."), "scaled_fp8": torch.zeros(2, dtype=FP8)}, str(path))
    return want


def comfy_quant_file(state, path):
    """ComfyUI's ``comfy_quant`` layout: per layer an fp8 ``weight``, a scalar float32 ``weight_scale`` and
    ``input_scale``, and a ``comfy_quant`` record (uint8 JSON bytes of {"format": "float8_e4m3fn"})."""
    record = torch.tensor(list(json.dumps({"format": "float8_e4m3fn"}).encode()), dtype=torch.uint8)
    stored, want = {}, {}
    for k, v in state.items():
        stored[k] = want[k] = v
        if k in projections(state):
            prefix = k[: -len("weight")]
            scale = (v.abs().max() / 448).float()
            stored[k] = (v / scale).to(FP8)
            stored.update({prefix + "weight_scale": scale.reshape(()), prefix + "input_scale": torch.ones(()),
                           prefix + "comfy_quant": record.clone()})
            want[k] = (stored[k], scale)
    save_file(prefixed(stored, "model.diffusion_model."), str(path))
    return want


def assert_kept_fp8(backbone, want, dtype):
    """Every block projection holds the file's own fp8 bytes and its scale on every row; the rest in ``dtype``."""
    model, sd = backbone.model, backbone.model.state_dict()
    assert backbone.info.weights == "fp8"
    for k, v in want.items():
        if isinstance(v, tuple):
            q, scale = v
            assert sd[k].dtype == FP8 and torch.equal(sd[k].view(torch.uint8), q.view(torch.uint8)), k
            assert torch.equal(sd[k[: -len("weight")] + "weight_scale"], scale.expand(q.shape[0])), k
        else:
            assert sd[k].dtype == dtype and torch.equal(sd[k], v.to(dtype)), k
    fp8_bytes = sum(v[0].numel() + 4 * v[0].shape[0] for v in want.values() if isinstance(v, tuple))
    wide = sum(v.numel() for v in want.values() if not isinstance(v, tuple)) * dtype.itemsize
    held = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    assert held == fp8_bytes + wide == weight_bytes(model, dtype, "fp8")


@pytest.mark.parametrize("layout", [scaled_fp8_file, comfy_quant_file], ids=["scaled_fp8", "comfy_quant"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_an_fp8_file_loads_without_widening_its_weights(tmp_path, state, layout, dtype):
    want = layout(state, tmp_path / "wan_fp8.safetensors")
    assert is_fp8_file(tmp_path / "wan_fp8.safetensors")
    assert_kept_fp8(load_backbone(tmp_path / "wan_fp8.safetensors", weights="fp8", dtype=dtype), want, dtype)


@pytest.mark.parametrize("layout", [scaled_fp8_file, comfy_quant_file], ids=["scaled_fp8", "comfy_quant"])
def test_fp8_and_native_loads_of_an_fp8_file_compute_the_same_function(tmp_path, state, layout):
    layout(state, tmp_path / "wan_fp8.safetensors")
    native = load_backbone(tmp_path / "wan_fp8.safetensors", weights="native")
    fp8 = load_backbone(tmp_path / "wan_fp8.safetensors", weights="fp8")
    assert native.info.weights == "native" and not any(isinstance(m, Fp8Linear) for m in native.model.modules())
    torch.manual_seed(0)
    x, t, p = torch.randn(1, 16, 3, 4, 6), torch.full((1, 3), 500.0), torch.randn(1, 7, CFG.text_dim)
    with torch.no_grad():
        a = native.model(x, t, native.model.encode_text(p))
        b = fp8.model(x, t, fp8.model.encode_text(p))
    assert ((a - b).norm() / a.norm()).item() < 1e-6          # the same weights; only the rounding order differs


def test_a_bf16_checkpoint_is_quantised_per_row_at_load(tmp_path, state):
    save_file({k: v.to(torch.bfloat16) for k, v in state.items()}, str(tmp_path / "wan_bf16.safetensors"))
    assert not is_fp8_file(tmp_path / "wan_bf16.safetensors")
    b = load_backbone(tmp_path / "wan_bf16.safetensors", weights="fp8", dtype=torch.bfloat16)
    sd = b.model.state_dict()
    for k in projections(state):
        q, scale = quantise_rows(state[k].to(torch.bfloat16))
        assert sd[k].dtype == FP8 and torch.equal(sd[k].view(torch.uint8), q.view(torch.uint8)), k
        assert torch.equal(sd[k[: -len("weight")] + "weight_scale"], scale), k
    assert next(b.model.parameters()).dtype == torch.bfloat16


def test_a_saved_fp8_model_loads_back_identical(tmp_path, state):
    save_file(state, str(tmp_path / "wan.safetensors"))
    b = load_backbone(tmp_path / "wan.safetensors", weights="fp8", num_heads=1)
    save_backbone_safetensors(b.model, tmp_path / "again.safetensors", b.config)
    again = load_backbone(tmp_path / "again.safetensors", weights="fp8")
    for k, v in b.model.state_dict().items():
        assert again.model.state_dict()[k].dtype == v.dtype and torch.equal(again.model.state_dict()[k].float(),
                                                                            v.float()), k


def test_a_lora_is_merged_at_full_precision_then_quantised(tmp_path, state):
    scaled_fp8_file(state, tmp_path / "wan_fp8.safetensors")
    torch.save(peft_lora(state), tmp_path / "lora.pt")
    native = load_backbone(tmp_path / "wan_fp8.safetensors", lora=tmp_path / "lora.pt", weights="native")
    fp8 = load_backbone(tmp_path / "wan_fp8.safetensors", lora=tmp_path / "lora.pt", weights="fp8")
    assert fp8.info.lora_layers == native.info.lora_layers > 0
    for name, m in fp8.model.named_modules():
        if isinstance(m, Fp8Linear):
            q, scale = quantise_rows(native.model.get_submodule(name).weight)
            assert torch.equal(m.weight.view(torch.uint8), q.view(torch.uint8)) and torch.equal(m.weight_scale, scale)


def test_auto_is_fp8_only_for_an_fp8_file_on_cuda(tmp_path, state):
    assert resolve_weights("auto", file_fp8=True, device="cuda:0") == "fp8"
    assert resolve_weights("auto", file_fp8=False, device="cuda") == "native"
    assert resolve_weights("auto", file_fp8=True, device="cpu") == "native"
    assert resolve_weights("fp8", file_fp8=False, device="cpu") == "fp8"
    scaled_fp8_file(state, tmp_path / "wan_fp8.safetensors")
    b = load_backbone(tmp_path / "wan_fp8.safetensors")                               # the default: auto, on CPU
    assert b.info.weights == "native" and all(p.dtype == torch.float32 for p in b.model.parameters())
    on_cuda = backbone_on_meta(tmp_path / "wan_fp8.safetensors", weights="auto", device="cuda")
    assert isinstance(on_cuda.blocks[0].ffn[0], Fp8Linear)



def test_auto_asks_about_the_file_not_the_weights_a_lora_widened(tmp_path, state, monkeypatch):
    import core.formats.loader as loader
    seen = []
    monkeypatch.setattr(loader, "resolve_weights", lambda setting, **kw: seen.append(kw["file_fp8"]) or "native")
    scaled_fp8_file(state, tmp_path / "wan_fp8.safetensors")
    torch.save(peft_lora(state), tmp_path / "lora.pt")
    load_backbone(tmp_path / "wan_fp8.safetensors", lora=tmp_path / "lora.pt")
    save_file(state, str(tmp_path / "wan.safetensors"))
    load_backbone(tmp_path / "wan.safetensors", num_heads=1)
    assert seen == [True, False]


def test_an_unknown_weights_setting_is_refused_naming_the_choices_before_the_file_is_read(tmp_path):
    with pytest.raises(CheckpointError, match=r"weights setting 'int8' is not one of auto, native, fp8; choose"):
        resolve_weights("int8", file_fp8=False, device="cpu")
    with pytest.raises(CheckpointError, match=r"weights setting 'FP8' is not one of"):
        load_backbone(tmp_path / "absent.safetensors", weights="FP8")      # not "does not exist"


# ------------------------------------------------------------------------------ the real key sets on meta
def meta_state(shapes: dict, dtype) -> dict:
    with torch.device("meta"):
        return {k: torch.empty(s, dtype=dtype) for k, s in shapes.items()}


def expected_bytes(shapes: dict, itemsize: int) -> int:
    """From the key shapes alone: block 2-d weights 1 byte per element + a float32 scale per row, the rest wide."""
    total = 0
    for k, s in shapes.items():
        n = 1
        for d in s:
            n *= d
        fp8 = k.startswith("blocks.") and len(s) == 2
        total += n + 4 * s[0] if fp8 else n * itemsize
    return total


@pytest.mark.parametrize("keys,native_gib", [("wan2.1_t2v_1.3b_keys.json", 2.64), ("wan2.2_ti2v_5b_keys.json", 9.31)],
                         ids=["1.3B", "5B"])
def test_the_real_key_sets_load_as_fp8_on_the_meta_device_with_the_expected_bytes(keys, native_gib):
    shapes = json.loads((DATA / keys).read_text())["base_keys"]
    b = backbone_from_state(meta_state(shapes, torch.bfloat16), weights="fp8", device="meta", dtype=torch.bfloat16)
    model = b.model
    held = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    assert held == weight_bytes(model, torch.bfloat16, "fp8") == expected_bytes(shapes, 2)
    native = sum(torch.Size(s).numel() for s in shapes.values()) * 2
    assert weight_bytes(model, torch.bfloat16, "native") == native and round(native / 2**30, 2) == native_gib
    assert held < 0.55 * native             # nearly all the weights are block projections
    assert next(model.parameters()).dtype == torch.bfloat16 and model.blocks[0].ffn[0].weight.dtype == FP8


def test_the_5b_comfy_quant_key_set_keeps_its_fp8_weights_on_the_meta_device():
    shapes = json.loads((DATA / "wan2.2_ti2v_5b_keys.json").read_text())["base_keys"]
    state = meta_state(shapes, torch.bfloat16)
    with torch.device("meta"):
        for k, s in shapes.items():
            if k.startswith("blocks.") and len(s) == 2:
                state[k] = torch.empty(s, dtype=FP8)
                state[k[: -len("weight")] + "weight_scale"] = torch.empty((), dtype=torch.float32)
                state[k[: -len("weight")] + "comfy_quant"] = torch.empty(31, dtype=torch.uint8)
    b = backbone_from_state(prefixed(state, "model.diffusion_model."), weights="fp8", device="meta",
                            dtype=torch.bfloat16, path="wan2.2_ti2v_5B_fp8_scaled.safetensors")
    assert b.info.dtype.startswith("float8_e4m3fn") and b.config.num_layers == 30
    assert weight_bytes(b.model, torch.bfloat16, "fp8") == expected_bytes(shapes, 2)
