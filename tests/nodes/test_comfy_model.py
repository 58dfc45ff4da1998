"""A ComfyUI MODEL as the sampler's backbone, without ComfyUI: a stand-in MODEL (a ModelPatcher's shape) whose
diffusion model holds the golden tiny backbone's layers under Wan's names, as ComfyUI's WanModel does. The real
ComfyUI loaders (Load Diffusion Model, LoraLoaderModelOnly, scaled fp8, GGUF) are run by
tests/integration/test_comfyui.py."""
import sys

import pytest
import torch

from core.formats import load_backbone

from pack import PACK, N, conditioning, load, sample


class WanModel(torch.nn.Module):
    """ComfyUI's Wan diffusion model as the sampler sees it: Wan's layer names, ``num_heads``, float32 patch embedding."""

    def __init__(self, source):
        super().__init__()
        for name, child in source.named_children():
            self.add_module(name, child)
        self.num_heads = source.cfg.num_heads


class Inner:
    manual_cast_dtype = None

    def __init__(self, dm):
        self.diffusion_model = dm

    def get_dtype(self):
        return torch.float32


class FakeModel:
    """The parts of a ComfyUI ModelPatcher the pack reads."""

    def __init__(self, dm, patches=None):
        self.model, self.load_device = Inner(dm), torch.device("cpu")
        self.patches, self.patches_uuid = patches or {}, "uuid-1"


def comfy_model(models_dir, cls=WanModel):
    bb = load_backbone(models_dir / "diffusion_models" / "tiny.safetensors", num_heads=2)
    return FakeModel(cls(bb.model))


def test_a_comfyui_model_gives_the_same_video_as_load_backbone(models_dir):
    backbone, _ = load(models_dir)
    model = comfy_model(models_dir)
    a, _ = sample(backbone, length=45)
    b, _ = sample(model, length=45)
    assert torch.equal(a["samples"], b["samples"])
    info = N["LongLiveRAG_ARBlockSampler"].execute(model, conditioning(), 96, 64, 45, 42, 1, 12, 3,
                                                   "1000,750,500,250", 5.0, None).args[2]
    assert "weights where the MODEL keeps them" in info


def test_the_family_and_its_defaults_come_from_the_model(models_dir):
    model = comfy_model(models_dir)
    cm = sys.modules[f"{PACK.__name__}.nodes.comfy_model"]
    handle = cm.as_backbone(model)
    assert handle.backbone.defaults.frames_per_block == 3 and handle.backbone.info.family == "Wan2.1 text-to-video"
    assert handle.backbone.info.format == "comfyui" and "no patches" in handle.backbone.info.path
    assert cm.as_backbone(model).backbone.model is handle.backbone.model        # one adapter per diffusion model
    patched = FakeModel(model.model.diffusion_model, patches={"blocks.0.self_attn.q.weight": [(0.7,)]})
    assert cm.as_backbone(patched).backbone.info.path != handle.backbone.info.path   # patches change the run key


def test_a_model_that_is_not_wan_text_to_video_is_refused_in_one_line(models_dir):
    class Flux(torch.nn.Module):
        pass

    with pytest.raises(ValueError, match="ComfyUI MODEL of type Flux") as e:
        sample(FakeModel(Flux()), length=45)
    assert "\n" not in str(e.value)
    bb = load_backbone(models_dir / "diffusion_models" / "tiny.safetensors", num_heads=2)
    dm = WanModel(bb.model)
    dm.img_emb = torch.nn.Linear(4, 4)                   # an image-to-video Wan
    with pytest.raises(ValueError, match="image-to-video") as e:
        sample(FakeModel(dm), length=45)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="connect Load Backbone"):
        sample("a string", length=45)


def test_model_as_backbone_picks_the_checkpoint_the_weights_cannot_tell(models_dir):
    model = comfy_model(models_dir)
    node = N["LongLiveRAG_ModelBackbone"]
    auto, info = node.execute(model, "auto (the family's)").args
    framewise, info_fw = node.execute(model, "Causal-Forcing++ 2-step").args
    assert auto.backbone.defaults.frames_per_block == 3 and framewise.backbone.defaults.frames_per_block == 1
    assert "Wan2.1 text-to-video family" in info and "Causal-Forcing++ 2-step" in info_fw
    out = N["LongLiveRAG_ARBlockSampler"].execute(framewise, conditioning(), 96, 64, 9, 42, -1, 0, 0, "auto", 0.0,
                                                  None).args
    assert "blocks of 1 latent frame" in out[2] and out[0]["samples"].shape[2] == 3
    with pytest.raises(ValueError, match="not a checkpoint of the MODEL's family"):
        node.execute(model, "LongLive 2.0")


def test_model_as_backbone_runs_rolling_forcing_as_its_file_does_through_load_backbone(models_dir):
    rolling, info = N["LongLiveRAG_ModelBackbone"].execute(comfy_model(models_dir), "Rolling Forcing").args
    assert "rolling window of 5 blocks" in info and "window 21, sink 3" in info
    (models_dir / "diffusion_models" / "rolling_forcing_dmd.safetensors").symlink_to(
        models_dir / "diffusion_models" / "tiny.safetensors")
    loaded, _ = N["LongLiveRAG_LoadBackbone"].execute("rolling_forcing_dmd.safetensors", "none", 1.0, "float32", "cpu",
                                                      "offload after sampling", num_heads=2).args
    a, b = (N["LongLiveRAG_ARBlockSampler"].execute(bb, conditioning(), 96, 64, 81, 42, -1, 0, 0, "auto", 0.0,
                                                    None).args for bb in (rolling, loaded))
    assert "rolling window of 5 blocks" in a[2]
    assert torch.equal(a[0]["samples"], b[0]["samples"])
