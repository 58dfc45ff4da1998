"""LoRAs merged at load (core/formats/lora.py): peft, LongLive and ComfyUI names, strength × alpha / rank, the stored
dtype kept; a LoRA that does not fit the backbone is refused naming why."""
import functools

import pytest
import torch
from safetensors.torch import save_file

from core.formats import CheckpointError, load_backbone, read_backbone

from checkpoints import CFG, assert_same_weights, peft_lora, prefixed, random_state
from factory import tiny_config


def merged(state, lora, scale, adapter=""):
    out = dict(state)
    for k in state:
        a = lora.get(f"base_model.model.{k[: -len('.weight')]}.lora_A{adapter}.weight")
        if a is not None:
            b = lora[f"base_model.model.{k[: -len('.weight')]}.lora_B{adapter}.weight"]
            out[k] = (state[k].float() + scale * (b.float() @ a.float())).to(state[k].dtype)
    return out


@pytest.mark.parametrize("alpha_entry, alpha", [({}, None), ({"lora_alpha": 8}, 8.0),
                                                ({"peft_config": {"r": 4, "lora_alpha": 2}}, 2.0)])
def test_longlive_lora_is_merged_with_strength_times_alpha_over_rank(tmp_path, state, alpha_entry, alpha):
    torch.save({"generator": prefixed(state, "model.")}, tmp_path / "longlive_base.pt")
    lora = peft_lora(state)
    torch.save({"generator_lora": lora, **alpha_entry}, tmp_path / "longlive_lora.pt")
    b = load_backbone(tmp_path / "longlive_base.pt", lora=tmp_path / "longlive_lora.pt", lora_strength=0.5)
    assert (b.info.format, b.info.preset, b.info.lora_strength) == ("longlive", "LongLive", 0.5)
    assert b.info.lora_layers == CFG.num_layers * 10          # q k v o of both attentions + 2 ffn Linears
    rank = 4
    assert_same_weights(b, merged(state, lora, 0.5 * (alpha if alpha is not None else rank) / rank), atol=1e-6)
    assert torch.equal(b.model.state_dict()["head.head.weight"], state["head.head.weight"])


def test_lora_merge_keeps_the_stored_dtype_and_accepts_peft_adapter_names(tmp_path, state):
    bf16 = {k: v.to(torch.bfloat16) for k, v in state.items()}
    save_file(bf16, str(tmp_path / "base.safetensors"))
    lora = peft_lora(state, adapter=".default")
    torch.save(lora, tmp_path / "lora.pt")
    sd, info = read_backbone(tmp_path / "base.safetensors", lora=tmp_path / "lora.pt")
    assert all(v.dtype == torch.bfloat16 for v in sd.values()) and info.dtype == "bfloat16"
    want = merged(bf16, lora, 1.0, adapter=".default")
    assert all(torch.equal(sd[k], want[k]) for k in want)


def test_comfyui_style_lora_names_with_down_up_and_alpha_are_accepted(tmp_path, state):
    renames = (("base_model.model.", "diffusion_model."), ("lora_A", "lora_down"), ("lora_B", "lora_up"))
    lora = {functools.reduce(lambda s, r: s.replace(*r), renames, k): v for k, v in peft_lora(state).items()}
    lora.update({k.replace(".lora_down.weight", ".alpha"): torch.tensor(8.0) for k in lora if "lora_down" in k})
    save_file(state, str(tmp_path / "base.safetensors"))
    save_file(lora, str(tmp_path / "lora.safetensors"))
    b = load_backbone(tmp_path / "base.safetensors", lora=tmp_path / "lora.safetensors")
    assert_same_weights(b, merged(state, peft_lora(state), 8 / 4), atol=1e-6)


def test_a_lora_that_matches_no_layer_is_refused(tmp_path, state):
    save_file(state, str(tmp_path / "base.safetensors"))
    foreign = {"base_model.model.transformer_blocks.0.attn.to_qkv.lora_A.weight": torch.zeros(4, 64),
               "base_model.model.transformer_blocks.0.attn.to_qkv.lora_B.weight": torch.zeros(64, 4)}
    torch.save(foreign, tmp_path / "flux_lora.pt")
    with pytest.raises(CheckpointError, match=r"flux_lora\.pt' matches no layer of the backbone"):
        load_backbone(tmp_path / "base.safetensors", lora=tmp_path / "flux_lora.pt")


def test_a_lora_of_another_model_size_is_refused(tmp_path, state):
    save_file(state, str(tmp_path / "base.safetensors"))
    big = peft_lora(random_state(0, tiny_config(dim=256, text_dim=64, freq_dim=256)))
    torch.save({"generator_lora": big}, tmp_path / "lora_14b.pt")
    with pytest.raises(CheckpointError, match=r"lora_14b\.pt'.*do not fit the backbone weight.*\(a Wan2\.1 "
                                              r"text-to-video backbone, dim \d+.*trained for a model of width 256 — "
                                              r"use LongLive's longlive_lora\.pt"):
        load_backbone(tmp_path / "base.safetensors", lora=tmp_path / "lora_14b.pt")


def test_a_lora_file_that_is_not_a_lora_is_refused(tmp_path, state):
    save_file(state, str(tmp_path / "base.safetensors"))
    with pytest.raises(CheckpointError, match=r"LoRA '.*base\.safetensors' has no lora_A/lora_B"):
        load_backbone(tmp_path / "base.safetensors", lora=tmp_path / "base.safetensors")


def test_an_incomplete_lora_is_refused(tmp_path, state):
    save_file(state, str(tmp_path / "base.safetensors"))
    lora = {k: v for k, v in peft_lora(state).items() if "blocks.1.ffn.2.lora_B" not in k}
    torch.save(lora, tmp_path / "half_lora.pt")
    with pytest.raises(CheckpointError, match=r"half_lora\.pt': '\S*blocks\.1\.ffn\.2' has lora_A but no lora_B"):
        load_backbone(tmp_path / "base.safetensors", lora=tmp_path / "half_lora.pt")


def test_a_lora_given_as_the_backbone_says_so(tmp_path, state):
    torch.save({"generator_lora": peft_lora(state)}, tmp_path / "longlive_lora.pt")
    with pytest.raises(CheckpointError, match=r"longlive_lora\.pt' is a LoRA.*pass it as the LoRA"):
        load_backbone(tmp_path / "longlive_lora.pt")
