"""The Wan2.1 text-to-video family: the real 1.3B key set and LongLive's LoRA are accepted on the meta device, and
Wan models of other tasks (image-to-video, VACE) are refused by name."""
import json
import re

import pytest
import torch
from safetensors.torch import save_file

from core.formats import (CheckpointError, expected_shapes, infer_config, is_backbone_checkpoint, load_backbone,
                          match_lora, normalise_lora, validate_backbone)

from checkpoints import CFG, prefixed, tiny_diffusers
from paths import DATA


@pytest.fixture(scope="module")
def real_keys():
    return json.loads((DATA / "wan2.1_t2v_1.3b_keys.json").read_text())


def test_the_real_1_3b_key_set_and_longlive_lora_are_accepted_on_the_meta_device(real_keys):
    with torch.device("meta"):
        sd = {k: torch.empty(shape) for k, shape in real_keys["base_keys"].items()}
        lora = {k: torch.empty(shape) for k, shape in real_keys["longlive_lora_keys"].items()}
    cfg = infer_config(sd)
    assert (cfg.dim, cfg.num_layers, cfg.num_heads, cfg.ffn_dim, cfg.text_dim, cfg.freq_dim) == \
        (1536, 30, 12, 8960, 4096, 256)
    validate_backbone(sd, cfg, "wan2.1_t2v_1.3b")
    assert expected_shapes(cfg) == {k: tuple(s) for k, s in real_keys["base_keys"].items()}
    factors, alpha = normalise_lora({real_keys["lora"]["container_key"]: lora})
    for file_alpha in (None, real_keys["lora"]["alpha"]):       # LongLive: alpha = rank = 256 → scale 1
        pairs = match_lora(factors, sd, "longlive_lora.pt", alpha=file_alpha)
        assert len(pairs) == 30 * 10 and {s for *_, s in pairs.values()} == {1.0}


def test_a_wan_image_to_video_model_is_refused_by_name(tmp_path, state):
    sd = dict(state)
    sd["patch_embedding.weight"] = torch.zeros(CFG.dim, 36, 1, 2, 2)
    sd["img_emb.proj.1.weight"] = torch.zeros(CFG.dim, 1280)
    save_file(prefixed(sd, "model.diffusion_model."), str(tmp_path / "wan2.1_i2v_480p_14B.safetensors"))
    with pytest.raises(CheckpointError, match=r"i2v_480p_14B\.safetensors' is a Wan image-to-video model.*not "
                                              r"supported"):
        load_backbone(tmp_path / "wan2.1_i2v_480p_14B.safetensors")


def test_a_diffusers_image_to_video_model_is_refused_by_name(tmp_path):
    ref = tiny_diffusers(heads=1, in_channels=36, image_dim=32, added_kv_proj_dim=CFG.dim)
    save_file(ref.state_dict(), str(tmp_path / "wan_i2v_diffusers.safetensors"))
    with pytest.raises(CheckpointError, match=r"wan_i2v_diffusers\.safetensors' is a Wan image-to-video model"):
        load_backbone(tmp_path / "wan_i2v_diffusers.safetensors")


@pytest.mark.parametrize("name, edit, message", [
    ("wan_vace_1.3B.safetensors", lambda sd: sd.update({"vace_blocks.0.after_proj.weight": torch.zeros(4, 4)}),
     r"is a Wan VACE \(control\) model"),
    ("wan2.1_i2v_480p_14B.safetensors", lambda sd: sd.update({"patch_embedding.weight": torch.zeros(CFG.dim, 36, 1, 2, 2)}),
     r"is a Wan image-to-video model \(img_emb.\* keys / 36 input channels\)"),
])
def test_other_wan_tasks_are_refused_by_name(tmp_path, state, name, edit, message):
    sd = dict(state)
    edit(sd)
    save_file(sd, str(tmp_path / name))
    with pytest.raises(CheckpointError, match=rf"{re.escape(name)}' {message}.*not supported"):
        load_backbone(tmp_path / name)
    assert not is_backbone_checkpoint(tmp_path / name)
