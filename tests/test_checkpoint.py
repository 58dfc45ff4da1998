"""Every checkpoint format of SPEC §8 loads (and generates); every bad input fails clearly."""
import json
import pickle

import pytest
import torch
from safetensors.torch import save_file

from core.checkpoint import (CheckpointError, infer_config, load_backbone, match_lora, normalise_lora,
                             normalise_names, validate_backbone)
from core.model import WanConfig, WanTransformer
from core.pipeline import GenerationConfig, generate

from conftest import DATA

CFG = WanConfig(dim=64, ffn_dim=128, num_layers=2, num_heads=2, text_dim=32, freq_dim=32)


def random_state(seed=0):
    torch.manual_seed(seed)
    model = WanTransformer(CFG)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def state():
    return random_state()


def assert_same_weights(backbone, state, atol=0.0):
    loaded = backbone.model.state_dict()
    assert set(loaded) == set(state)
    for k, v in state.items():
        assert torch.allclose(loaded[k].float(), v.float(), atol=atol), k


def test_self_forcing_uses_ema_weights_with_fsdp_names_by_default(tmp_path, state):
    other = random_state(1)
    ema = {f"model._fsdp_wrapped_module.{k}": v for k, v in state.items()}
    torch.save({"generator_ema": ema, "generator": {f"model.{k}": v for k, v in other.items()}}, tmp_path / "sf.pt")
    b = load_backbone(tmp_path / "sf.pt", num_heads=2)
    assert_same_weights(b, state)
    assert (b.info.format, b.info.preset, b.info.source_key) == ("self_forcing", "Self-Forcing", "generator_ema")
    assert_same_weights(load_backbone(tmp_path / "sf.pt", num_heads=2, use_ema=False), other)


@pytest.mark.parametrize("top", ["generator", "model"])
def test_causal_forcing_pickle_loads(tmp_path, state, top):
    torch.save({top: {f"model.{k}": v for k, v in state.items()}}, tmp_path / "cf.pt")
    b = load_backbone(tmp_path / "cf.pt", num_heads=2)
    assert_same_weights(b, state)
    assert b.info.preset == "Causal-Forcing"


@pytest.mark.parametrize("prefix", ["", "model.diffusion_model."])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float8_e4m3fn])
def test_bare_wan_safetensors_load_in_any_stored_dtype(tmp_path, state, prefix, dtype):
    path = tmp_path / "self_forcing_dmd.safetensors"
    save_file({prefix + k: v.to(dtype).contiguous() for k, v in state.items()}, str(path))
    b = load_backbone(path, num_heads=2, dtype=torch.float32)
    assert next(b.model.parameters()).dtype == torch.float32
    assert_same_weights(b, {k: v.to(dtype) for k, v in state.items()})
    assert b.info.preset == "Self-Forcing"          # file name hint for ComfyUI users


def lora_for(state, rank=4, seed=3):
    g = torch.Generator().manual_seed(seed)
    lora = {}
    for k, w in state.items():
        if k.startswith("blocks.") and k.endswith(".weight") and w.dim() == 2:
            m = k[: -len(".weight")]
            lora[f"base_model.model.{m}.lora_A.weight"] = torch.randn(rank, w.shape[1], generator=g) * 0.1
            lora[f"base_model.model.{m}.lora_B.weight"] = torch.randn(w.shape[0], rank, generator=g) * 0.1
    return lora


def test_longlive_lora_is_merged_with_alpha_over_rank_and_strength(tmp_path, state):
    torch.save({"generator": {f"model.{k}": v for k, v in state.items()}}, tmp_path / "longlive_base.pt")
    lora = lora_for(state)
    torch.save({"generator_lora": lora}, tmp_path / "longlive_lora.pt")
    b = load_backbone(tmp_path / "longlive_base.pt", lora=tmp_path / "longlive_lora.pt", lora_strength=0.5, num_heads=2)
    assert (b.info.format, b.info.preset) == ("longlive", "LongLive")
    assert b.info.lora_layers == 2 * 10                      # every Linear of every block
    key = "blocks.1.cross_attn.o.weight"
    a, bb = lora["base_model.model.blocks.1.cross_attn.o.lora_A.weight"], lora["base_model.model.blocks.1.cross_attn.o.lora_B.weight"]
    expected = state[key] + 0.5 * (4 / 4) * bb @ a           # alpha defaults to the rank (LongLive: 256/256)
    assert torch.allclose(b.model.state_dict()[key], expected, atol=1e-6)
    assert torch.equal(b.model.state_dict()["head.head.weight"], state["head.head.weight"])


def to_diffusers(state):
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers
    return convert_wan_transformer_to_diffusers(dict(state))


def test_diffusers_single_file_and_sharded_folder_load(tmp_path, state):
    d = to_diffusers(state)
    assert any(k.startswith("condition_embedder.") for k in d)
    save_file({k: v.contiguous() for k, v in d.items()}, str(tmp_path / "wan_diffusers.safetensors"))
    assert_same_weights(load_backbone(tmp_path / "wan_diffusers.safetensors", num_heads=2), state)
    folder = tmp_path / "transformer"
    folder.mkdir()
    keys = sorted(d)
    shards = {"diffusion_pytorch_model-00001-of-00002.safetensors": keys[: len(keys) // 2],
              "diffusion_pytorch_model-00002-of-00002.safetensors": keys[len(keys) // 2:]}
    for name, ks in shards.items():
        save_file({k: d[k].contiguous() for k in ks}, str(folder / name))
    (folder / "diffusion_pytorch_model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {k: n for n, ks in shards.items() for k in ks}}))
    (folder / "config.json").write_text("{}")
    b = load_backbone(tmp_path, num_heads=2)
    assert_same_weights(b, state)
    assert b.info.format == "diffusers"


def test_diffusers_model_and_ours_compute_the_same_flow(state):
    from diffusers import WanTransformer3DModel
    ref = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=32, in_channels=16,
                                out_channels=16, text_dim=32, freq_dim=32, ffn_dim=128, num_layers=2,
                                cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=64)
    ref.load_state_dict(to_diffusers(state))
    ref.eval()
    ours, _ = normalise_names(ref.state_dict())
    model = WanTransformer(infer_config(ours, num_heads=2))
    model.load_state_dict(ours)
    x = torch.randn(1, 16, 3, 4, 6)
    text = torch.randn(1, 512, 32)
    with torch.no_grad():
        want = ref(x, torch.tensor([700.0]), text, return_dict=False)[0]
        got = model(x, torch.full((1, 3), 700.0), model.encode_text(text))
    assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()


def test_each_loaded_format_generates(tmp_path, state):
    torch.save({"generator": {f"model.{k}": v for k, v in state.items()}}, tmp_path / "cf.pt")
    b = load_backbone(tmp_path / "cf.pt", num_heads=2)
    res = generate(b.model, torch.randn(1, 5, 32), 6, (4, 6), 0, GenerationConfig())
    assert torch.isfinite(res.latents).all()


# ---------------------------------------------------------------------------- the real 1.3B key set
@pytest.fixture(scope="module")
def real_keys():
    return json.loads((DATA / "wan2.1_t2v_1.3b_keys.json").read_text())


def test_full_1_3b_key_set_is_accepted_on_the_meta_device(real_keys):
    with torch.device("meta"):
        state = {k: torch.empty(shape) for k, shape in real_keys["base_keys"].items()}
        lora = {k: torch.empty(shape) for k, shape in real_keys["longlive_lora_keys"].items()}
    cfg = infer_config(state)
    assert (cfg.dim, cfg.num_layers, cfg.num_heads, cfg.ffn_dim, cfg.text_dim) == (1536, 30, 12, 8960, 4096)
    validate_backbone(state, cfg)
    lora_state, _ = normalise_lora({real_keys["lora"]["container_key"]: lora})
    pairs = match_lora(lora_state, state, "longlive_lora.pt", alpha=real_keys["lora"]["alpha"])
    assert len(pairs) == 30 * 10 and all(scale == 1.0 for *_, scale in pairs.values())


# ------------------------------------------------------------------------------------ bad inputs
def test_missing_file_is_named(tmp_path):
    with pytest.raises(CheckpointError, match=r"missing\.pt' does not exist"):
        load_backbone(tmp_path / "missing.pt")


def test_empty_file_is_reported_as_interrupted_download(tmp_path):
    (tmp_path / "empty.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.*download it again"):
        load_backbone(tmp_path / "empty.safetensors")


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_truncated_file_is_reported(tmp_path, state, suffix):
    path = tmp_path / f"full{suffix}"
    if suffix == ".pt":
        torch.save({"generator": state}, path)
    else:
        save_file(state, str(path))
    data = path.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.\w+'.*(truncated|not a readable)"):
        load_backbone(cut, num_heads=2)


def test_an_image_model_is_not_mistaken_for_a_backbone(tmp_path):
    sd = {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(320, 4, 3, 3),
          "first_stage_model.encoder.conv_in.weight": torch.zeros(128, 3, 3, 3)}
    save_file(sd, str(tmp_path / "sd15.safetensors"))
    with pytest.raises(CheckpointError, match=r"sd15\.safetensors' is not a Wan2.1 text-to-video transformer"):
        load_backbone(tmp_path / "sd15.safetensors")


def test_an_image_to_video_model_is_refused(tmp_path, state):
    sd = dict(state)
    sd["patch_embedding.weight"] = torch.zeros(64, 36, 1, 2, 2)
    sd["img_emb.proj.1.weight"] = torch.zeros(64, 1280)
    save_file(sd, str(tmp_path / "wan2.1_i2v_14B.safetensors"))
    with pytest.raises(CheckpointError, match="image-to-video"):
        load_backbone(tmp_path / "wan2.1_i2v_14B.safetensors", num_heads=2)


def test_missing_weights_are_listed(tmp_path, state):
    sd = {k: v for k, v in state.items() if k != "blocks.1.cross_attn.k.weight"}
    save_file(sd, str(tmp_path / "partial.safetensors"))
    with pytest.raises(CheckpointError, match=r"partial\.safetensors'.*1 missing.*blocks\.1\.cross_attn\.k\.weight"):
        load_backbone(tmp_path / "partial.safetensors", num_heads=2)


def test_a_lora_that_matches_no_layer_is_refused(tmp_path, state):
    save_file(state, str(tmp_path / "base.safetensors"))
    foreign = {"base_model.model.transformer_blocks.0.attn.to_q.lora_A.weight": torch.zeros(4, 64),
               "base_model.model.transformer_blocks.0.attn.to_q.lora_B.weight": torch.zeros(64, 4)}
    torch.save(foreign, tmp_path / "flux_lora.pt")
    with pytest.raises(CheckpointError, match=r"flux_lora\.pt' matches no layer"):
        load_backbone(tmp_path / "base.safetensors", lora=tmp_path / "flux_lora.pt", num_heads=2)


def test_a_lora_file_that_is_not_a_lora_is_refused(tmp_path, state):
    save_file(state, str(tmp_path / "base.safetensors"))
    with pytest.raises(CheckpointError, match=r"LoRA '.*base\.safetensors' has no lora_A/lora_B"):
        load_backbone(tmp_path / "base.safetensors", lora=tmp_path / "base.safetensors", num_heads=2)


class Evil:
    def __reduce__(self):
        return (print, ("this would run code",))


def test_a_pickle_that_needs_code_execution_is_refused(tmp_path):
    with open(tmp_path / "evil.pt", "wb") as fh:
        pickle.dump({"generator": Evil()}, fh)
    with pytest.raises(CheckpointError, match="code execution"):
        load_backbone(tmp_path / "evil.pt")


def test_dim_not_multiple_of_128_needs_explicit_heads(tmp_path, state):
    save_file(state, str(tmp_path / "tiny.safetensors"))
    with pytest.raises(CheckpointError, match="num-heads"):
        load_backbone(tmp_path / "tiny.safetensors")
