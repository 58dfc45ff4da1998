"""Tiny stand-ins of the real model files, written to disk in their real layouts and names: a tiny umT5 text encoder
(Wan's .pth and diffusers' folder), the Wan2.1 VAE (Wan's Wan2.1_VAE.pth and diffusers' vae/; its names written out
from Wan's module tree in ``wan_name``, so the loader's conversion is checked, not reused), a Wan2.2-style VAE."""
import re
from pathlib import Path

import torch

BASE_DIM = 4                                                     # the tiny Wan2.1 VAE's base_dim
DIM, DIM_ATTN, FFN, HEADS, LAYERS, BUCKETS = 32, 32, 48, 4, 2, 32   # the tiny umT5
_RESNET = {"norm1.gamma": "residual.0.gamma", "conv1.weight": "residual.2.weight", "conv1.bias": "residual.2.bias",
           "norm2.gamma": "residual.3.gamma", "conv2.weight": "residual.6.weight", "conv2.bias": "residual.6.bias",
           "conv_shortcut.weight": "shortcut.weight", "conv_shortcut.bias": "shortcut.bias"}


def wan_name(key: str) -> str:
    """diffusers AutoencoderKLWan name → the name in Wan's Wan2.1_VAE.pth (WanVAE_ module tree)."""
    if m := re.fullmatch(r"(post_quant_conv|quant_conv)\.(\w+)", key):
        return {"quant_conv": "conv1", "post_quant_conv": "conv2"}[m.group(1)] + "." + m.group(2)
    side, rest = key.split(".", 1)
    if m := re.fullmatch(r"mid_block\.resnets\.(\d)\.(.+)", rest):
        rest = f"middle.{2 * int(m.group(1))}.{_RESNET[m.group(2)]}"
    elif m := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", rest):
        rest = f"middle.1.{m.group(1)}"
    elif m := re.fullmatch(r"down_blocks\.(\d+)\.(.+)", rest):
        rest = f"downsamples.{m.group(1)}.{_RESNET.get(m.group(2), m.group(2))}"
    elif m := re.fullmatch(r"up_blocks\.(\d)\.resnets\.(\d)\.(.+)", rest):   # 3 resnets + 1 resample per level
        rest = f"upsamples.{4 * int(m.group(1)) + int(m.group(2))}.{_RESNET[m.group(3)]}"
    elif m := re.fullmatch(r"up_blocks\.(\d)\.upsamplers\.0\.(.+)", rest):
        rest = f"upsamples.{4 * int(m.group(1)) + 3}.{m.group(2)}"
    else:
        rest = {"conv_in.weight": "conv1.weight", "conv_in.bias": "conv1.bias", "norm_out.gamma": "head.0.gamma",
                "conv_out.weight": "head.2.weight", "conv_out.bias": "head.2.bias"}[rest]
    return f"{side}.{rest}"


def write_tiny_vae(root):
    """A random tiny AutoencoderKLWan saved as root/diffusers/vae/ and root/wan/Wan2.1_VAE.pth."""
    from diffusers import AutoencoderKLWan
    torch.manual_seed(0)
    model = AutoencoderKLWan(base_dim=BASE_DIM, z_dim=16).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    model.save_pretrained(str(root / "diffusers" / "vae"))
    wan_sd = {wan_name(k): v for k, v in model.state_dict().items()}
    (root / "wan").mkdir(exist_ok=True)
    torch.save(wan_sd, root / "wan" / "Wan2.1_VAE.pth")
    return model, wan_sd


def write_tiny_vae22(root):
    """A random tiny Wan2.2-style AutoencoderKLWan (residual, 2×2 patches) saved as root/vae22/ (diffusers)."""
    from diffusers import AutoencoderKLWan
    torch.manual_seed(0)
    model = AutoencoderKLWan(base_dim=16, decoder_base_dim=24, z_dim=48, is_residual=True, in_channels=12,
                             out_channels=12, patch_size=2, scale_factor_spatial=16,
                             temperal_downsample=[False, True, True]).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.2)
    model.save_pretrained(str(root / "vae22" / "vae"))
    return model


WORDS = "a the cat dog red blue runs on in of and snow forest city night".split()


def build_tokenizer(folder: Path) -> None:
    """A tiny T5-style (unigram, metaspace, ``</s>`` appended) tokenizer saved as HF files."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import T5TokenizerFast
    pieces = ["▁" + w for w in WORDS] + list("abcdefghijklmnopqrstuvwxyz") + ["▁"]
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(p, -1.0 - 0.1 * i) for i, p in enumerate(pieces)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=2))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                       special_tokens=[("</s>", 1)])
    T5TokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                    extra_ids=0).save_pretrained(str(folder))


def wan_state_dict(vocab: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights under the names of Wan's wan/modules/t5.py T5Encoder (shared_pos=False)."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape, s=0.3: torch.randn(*shape, generator=g) * s  # noqa: E731
    sd = {"token_embedding.weight": r(vocab, DIM, s=1.0)}
    for i in range(LAYERS):
        b = f"blocks.{i}."
        sd[b + "norm1.weight"] = 1 + r(DIM, s=0.1)
        for n in "qkvo":
            sd[b + f"attn.{n}.weight"] = r(DIM_ATTN, DIM)
        sd[b + "norm2.weight"] = 1 + r(DIM, s=0.1)
        sd[b + "ffn.gate.0.weight"] = r(FFN, DIM)
        sd[b + "ffn.fc1.weight"] = r(FFN, DIM)
        sd[b + "ffn.fc2.weight"] = r(DIM, FFN)
        sd[b + "pos_embedding.embedding.weight"] = r(BUCKETS, HEADS, s=1.0)
    sd["norm.weight"] = 1 + r(DIM, s=0.1)
    return sd


# Written out independently of core.formats.text_encoder so the two layouts check each other.
HF_NAME = {"norm1.weight": "layer.0.layer_norm.weight", "attn.q.weight": "layer.0.SelfAttention.q.weight",
           "attn.k.weight": "layer.0.SelfAttention.k.weight", "attn.v.weight": "layer.0.SelfAttention.v.weight",
           "attn.o.weight": "layer.0.SelfAttention.o.weight",
           "pos_embedding.embedding.weight": "layer.0.SelfAttention.relative_attention_bias.weight",
           "norm2.weight": "layer.1.layer_norm.weight", "ffn.gate.0.weight": "layer.1.DenseReluDense.wi_0.weight",
           "ffn.fc1.weight": "layer.1.DenseReluDense.wi_1.weight", "ffn.fc2.weight": "layer.1.DenseReluDense.wo.weight"}


def save_diffusers_layout(sd: dict, vocab: int, folder: Path) -> None:
    from transformers import UMT5Config, UMT5EncoderModel
    config = UMT5Config(vocab_size=vocab, d_model=DIM, d_kv=DIM_ATTN // HEADS, d_ff=FFN, num_layers=LAYERS,
                        num_heads=HEADS, relative_attention_num_buckets=BUCKETS, relative_attention_max_distance=128,
                        feed_forward_proj="gated-gelu", dropout_rate=0.0)
    hf = {"shared.weight": sd["token_embedding.weight"], "encoder.embed_tokens.weight": sd["token_embedding.weight"],
          "encoder.final_layer_norm.weight": sd["norm.weight"]}
    for key, value in sd.items():
        if key.startswith("blocks."):
            _, i, rest = key.split(".", 2)
            hf[f"encoder.block.{i}.{HF_NAME[rest]}"] = value
    model = UMT5EncoderModel(config)
    model.load_state_dict(hf, strict=True)
    model.save_pretrained(str(folder / "text_encoder"))
    build_tokenizer(folder / "tokenizer")
