"""Random Wan transformer weights and LoRAs for the checkpoint-format tests (tests/core/formats/, tests/core/families/):
CFG (1 head: dim / 128) and TINY (dim 64, not a multiple of 128) are the sizes those tests check shapes against."""
import torch

from core.model.transformer import WanConfig

from factory import tiny_config, tiny_model

CFG = WanConfig(dim=128, ffn_dim=256, num_layers=2, num_heads=1, text_dim=64, freq_dim=256, in_dim=16,
                out_dim=16)   # 1 head: dim / 128
TINY = tiny_config(layers=1)                   # dim 64, 2 heads: 64 is not k·128


def random_state(seed=0, cfg=CFG):
    """The weights of a random ``cfg`` transformer (every parameter N(0, 0.05)), bare Wan names."""
    model = tiny_model(seed, cfg, bias_std=0.05)
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_same_weights(backbone, state, atol=0.0):
    loaded = backbone.model.state_dict()
    assert set(loaded) == set(state)
    for k, v in state.items():
        if atol == 0.0:
            assert torch.equal(loaded[k], v.to(loaded[k].dtype)), k
        else:
            assert torch.allclose(loaded[k].float(), v.float(), atol=atol), k


def prefixed(state, prefix):
    return {prefix + k: v for k, v in state.items()}


def peft_lora(state, rank=4, seed=3, adapter=""):
    """peft names for every nn.Linear inside the transformer blocks (what LongLive trains)."""
    g = torch.Generator().manual_seed(seed)
    lora = {}
    for k, w in state.items():
        if k.startswith("blocks.") and k.endswith(".weight") and w.dim() == 2:
            m = f"base_model.model.{k[: -len('.weight')]}"
            lora[f"{m}.lora_A{adapter}.weight"] = torch.randn(rank, w.shape[1], generator=g) * 0.1
            lora[f"{m}.lora_B{adapter}.weight"] = torch.randn(w.shape[0], rank, generator=g) * 0.1
    return lora


def tiny_diffusers(seed=0, heads=2, **kwargs):
    from diffusers import WanTransformer3DModel
    torch.manual_seed(seed)
    args = dict(patch_size=(1, 2, 2), num_attention_heads=heads, attention_head_dim=CFG.dim // heads, in_channels=16,
                out_channels=16, text_dim=CFG.text_dim, freq_dim=CFG.freq_dim, ffn_dim=CFG.ffn_dim,
                num_layers=CFG.num_layers, cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6,
                rope_max_seq_len=64)
    args.update(kwargs)
    model = WanTransformer3DModel(**args)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
    return model.eval()
