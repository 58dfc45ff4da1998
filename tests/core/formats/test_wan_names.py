"""Wan tensor names (core/formats/wan_names.py): wrappers and shared prefixes removed, diffusers names mapped back
to Wan's, ComfyUI's bundled and fp8 files read."""
import pytest
import torch

from core.files.safe_reader import CheckpointError
from core.formats.wan_names import (dequantize_scaled_fp8, diffusers_to_wan, normalise_names, rename_map,
                                    strip_common_prefixes)


def test_wrappers_are_removed_anywhere_and_a_prefix_only_when_every_key_has_it():
    assert strip_common_prefixes(["model.diffusion_model._orig_mod.blocks.0.q.weight", "model.diffusion_model.head.w"]) \
        == {"model.diffusion_model._orig_mod.blocks.0.q.weight": "blocks.0.q.weight",
            "model.diffusion_model.head.w": "head.w"}
    assert strip_common_prefixes(["model.a", "b"]) == {"model.a": "model.a", "b": "b"}


def test_diffusers_names_map_back_to_wan_names():
    assert diffusers_to_wan("blocks.3.attn1.to_q.weight") == "blocks.3.self_attn.q.weight"
    assert diffusers_to_wan("blocks.0.norm2.weight") == "blocks.0.norm3.weight"       # the swapped norms
    assert diffusers_to_wan("proj_out.bias") == "head.head.bias"
    assert diffusers_to_wan("head.head.bias") == "head.head.bias"


def test_only_the_diffusion_model_of_a_bundled_comfyui_file_is_kept():
    renamed, diffusers = rename_map(["model.diffusion_model.head.head.weight", "first_stage_model.x",
                                     "model.diffusion_model.blocks.0.q.weight"])
    assert renamed == {"model.diffusion_model.head.head.weight": "head.head.weight",
                       "model.diffusion_model.blocks.0.q.weight": "blocks.0.q.weight"} and not diffusers


def test_two_tensors_under_one_name_are_refused():
    with pytest.raises(CheckpointError, match="two tensors map to 'head.w'"):
        rename_map(["_orig_mod.head.w", "head.w"], "x.safetensors")


def test_normalise_names_keeps_the_same_tensor_objects():
    t = torch.zeros(1)
    state, diffusers = normalise_names({"condition_embedder.time_proj.weight": t})
    assert state == {"time_projection.1.weight": t} and state["time_projection.1.weight"] is t and diffusers


def test_scaled_fp8_weights_are_multiplied_by_their_scale():
    state = {"a.weight": torch.ones(2, 3), "a.scale_weight": torch.tensor(0.5), "scaled_fp8": torch.zeros(0)}
    out = dequantize_scaled_fp8(state, "x")
    assert set(out) == {"a.weight"} and torch.equal(out["a.weight"], torch.full((2, 3), 0.5))


def test_comfy_quant_weights_are_scaled_per_output_row():
    state = {"a.weight": torch.ones(2, 3), "a.weight_scale": torch.tensor([1.0, 2.0]), "a.comfy_quant": torch.zeros(1)}
    out = dequantize_scaled_fp8(state, "x")
    assert set(out) == {"a.weight"} and torch.equal(out["a.weight"][:, 0], torch.tensor([1.0, 2.0]))


def test_nvfp4_weights_are_refused():
    with pytest.raises(CheckpointError, match="NVFP4-quantised weights"):
        dequantize_scaled_fp8({"a.weight": torch.ones(1), "a.weight_scale_2": torch.ones(1)}, "x")


def test_a_scale_of_a_missing_weight_is_refused():
    with pytest.raises(CheckpointError, match="'a.scale_weight' scales a missing weight 'a.weight'"):
        dequantize_scaled_fp8({"a.scale_weight": torch.tensor(1.0)}, "x")
