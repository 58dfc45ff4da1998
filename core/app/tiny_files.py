"""Tiny random text encoder and VAE files in their real layouts and names: what the tests and
``python -m core demo`` load through the real loaders.

- umT5 text encoder: ``umt5_state_dict`` (the names of Wan's ``wan/modules/t5.py`` T5Encoder; Wan's
  ``models_t5_umt5-xxl-enc-bf16.pth`` holds them), ``write_umt5_folder`` (transformers' ``UMT5EncoderModel``
  folder, ``config.json`` + ``model.safetensors``, as in the diffusers layout's ``text_encoder/``) and
  ``write_tokenizer`` (a tiny T5-style tokenizer saved as transformers reads it offline); both together, the
  diffusers layout: ``write_umt5_diffusers``.
- Wan2.1 VAE: ``wan_vae_state_dict`` (the names and shapes of Wan's ``WanVAE_``, as in ``Wan2.1_VAE.pth`` and
  ComfyUI's ``wan_2.1_vae.safetensors``).

The names and shapes are written out here from the original module trees, not taken from ``core/formats``,
so loading these files checks the loaders' renames. Nothing here imports transformers or diffusers (their
import takes seconds): the files are plain safetensors and JSON, the tokenizer is built with ``tokenizers``.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..files.atomic import save_tensors

DIM, HEADS, LAYERS, BUCKETS = 32, 4, 2, 32      # the tiny umT5 (width, heads, blocks, relative-position buckets)
MAX_DISTANCE = 128                               # umT5's relative-position bias reaches this far (Wan's and HF's)
WORDS = "a the cat dog red blue runs on in of and snow forest city night".split()
VOCAB = 3 + len(WORDS) + 27                      # <pad> </s> <unk>, the words, 26 letters and "▁"
VAE_BASE_DIM, VAE_Z_DIM = 4, 16                  # the tiny Wan2.1 VAE (the real one: 96, 16)


# ------------------------------------------------------------------------------------ umT5 text encoder
def umt5_state_dict(vocab: int = VOCAB, seed: int = 0, dim: int = DIM) -> dict[str, torch.Tensor]:
    """Random weights under the names of Wan's T5Encoder (shared_pos=False): ``dim`` wide (attention ``dim``,
    feed-forward 1.5·``dim``), ``HEADS`` heads, ``LAYERS`` blocks; drawn from one generator seeded ``seed``."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape, s=0.3: torch.randn(*shape, generator=g) * s  # noqa: E731
    ffn = dim * 3 // 2
    sd = {"token_embedding.weight": r(vocab, dim, s=1.0)}
    for i in range(LAYERS):
        b = f"blocks.{i}."
        sd[b + "norm1.weight"] = 1 + r(dim, s=0.1)
        for n in "qkvo":
            sd[b + f"attn.{n}.weight"] = r(dim, dim)
        sd[b + "norm2.weight"] = 1 + r(dim, s=0.1)
        sd[b + "ffn.gate.0.weight"] = r(ffn, dim)
        sd[b + "ffn.fc1.weight"] = r(ffn, dim)
        sd[b + "ffn.fc2.weight"] = r(dim, ffn)
        sd[b + "pos_embedding.embedding.weight"] = r(BUCKETS, HEADS, s=1.0)
    sd["norm.weight"] = 1 + r(dim, s=0.1)
    return sd


# Wan's block names → transformers' UMT5 names
# (Wan: fc2(fc1(x) * gelu_tanh(gate.0(x))); UMT5: wo(wi_1(x) * gelu(wi_0(x))))
HF_NAME = {"norm1.weight": "layer.0.layer_norm.weight", "attn.q.weight": "layer.0.SelfAttention.q.weight",
           "attn.k.weight": "layer.0.SelfAttention.k.weight", "attn.v.weight": "layer.0.SelfAttention.v.weight",
           "attn.o.weight": "layer.0.SelfAttention.o.weight",
           "pos_embedding.embedding.weight": "layer.0.SelfAttention.relative_attention_bias.weight",
           "norm2.weight": "layer.1.layer_norm.weight", "ffn.gate.0.weight": "layer.1.DenseReluDense.wi_0.weight",
           "ffn.fc1.weight": "layer.1.DenseReluDense.wi_1.weight", "ffn.fc2.weight": "layer.1.DenseReluDense.wo.weight"}


def write_umt5_folder(sd: dict[str, torch.Tensor], folder: Path) -> Path:
    """``sd`` (``umt5_state_dict`` names) as transformers' ``UMT5EncoderModel`` folder: ``config.json`` (the sizes
    read from the shapes) and ``model.safetensors`` (transformers' names; the tied ``encoder.embed_tokens`` left
    out, as ``save_pretrained`` does)."""
    vocab, dim = sd["token_embedding.weight"].shape
    buckets, heads = sd["blocks.0.pos_embedding.embedding.weight"].shape
    layers = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
    config = {"architectures": ["UMT5EncoderModel"], "model_type": "umt5", "vocab_size": vocab, "d_model": dim,
              "d_kv": sd["blocks.0.attn.q.weight"].shape[0] // heads, "d_ff": sd["blocks.0.ffn.fc1.weight"].shape[0],
              "num_layers": layers, "num_heads": heads, "relative_attention_num_buckets": buckets,
              "relative_attention_max_distance": MAX_DISTANCE, "feed_forward_proj": "gated-gelu",
              "dense_act_fn": "gelu_new", "is_gated_act": True, "layer_norm_epsilon": 1e-6, "dropout_rate": 0.0,
              "pad_token_id": 0, "eos_token_id": 1, "torch_dtype": "float32"}
    hf = {"shared.weight": sd["token_embedding.weight"], "encoder.final_layer_norm.weight": sd["norm.weight"]}
    for key, value in sd.items():
        if key.startswith("blocks."):
            _, i, rest = key.split(".", 2)
            hf[f"encoder.block.{i}.{HF_NAME[rest]}"] = value
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    save_tensors(folder / "model.safetensors", {k: v.float().contiguous() for k, v in hf.items()},
                 metadata={"format": "pt"})
    return folder


def write_umt5_diffusers(sd: dict[str, torch.Tensor], folder: Path) -> Path:
    """The diffusers layout of a umT5 text encoder: ``folder``/text_encoder/ (``write_umt5_folder``) and
    ``folder``/tokenizer/ (``write_tokenizer``)."""
    write_umt5_folder(sd, folder / "text_encoder")
    write_tokenizer(folder / "tokenizer")
    return folder


def write_tokenizer(folder: Path) -> Path:
    """A tiny T5-style tokenizer (unigram over ``WORDS`` and single letters, metaspace, ``</s>`` appended) saved
    as transformers' files: ``tokenizer.json`` and ``tokenizer_config.json`` (a ``T5Tokenizer``)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
    pieces = ["▁" + w for w in WORDS] + list("abcdefghijklmnopqrstuvwxyz") + ["▁"]
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(p, -1.0 - 0.1 * i) for i, p in enumerate(pieces)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=2))
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ("<pad>", "</s>", "<unk>")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                       special_tokens=[("</s>", 1)])
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    config = {"tokenizer_class": "T5Tokenizer", "pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>",
              "extra_ids": 0, "additional_special_tokens": []}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return folder


# ------------------------------------------------------------------------------------ Wan2.1 VAE
def wan_vae_shapes(dim: int = VAE_BASE_DIM, z_dim: int = VAE_Z_DIM, mult=(1, 2, 4, 4), res_blocks: int = 2,
                   time_down=(False, True, True)) -> dict[str, tuple[int, ...]]:
    """Every tensor of Wan's ``WanVAE_(dim, z_dim, dim_mult, num_res_blocks, attn_scales=[], temperal_downsample)``
    (wan/modules/vae.py), name → shape: the encoder, ``conv1``/``conv2``, the decoder."""
    tree = _Tree()
    tree.encoder([dim * m for m in (1, *mult)], res_blocks, time_down, z_dim)
    tree.conv("conv1", 2 * z_dim, 2 * z_dim, (1, 1, 1))
    tree.conv("conv2", z_dim, z_dim, (1, 1, 1))
    tree.decoder([dim * m for m in (mult[-1], *mult[::-1])], res_blocks, time_down[::-1], z_dim)
    return tree.shapes


class _Tree:
    """Writes the shapes of Wan's VAE modules (CausalConv3d, RMS_norm, ResidualBlock, AttentionBlock, Resample)."""

    def __init__(self):
        self.shapes: dict[str, tuple[int, ...]] = {}

    def conv(self, name: str, cout: int, cin: int, kernel=(3, 3, 3)) -> None:
        self.shapes[f"{name}.weight"], self.shapes[f"{name}.bias"] = (cout, cin, *kernel), (cout,)

    def residual(self, name: str, cin: int, cout: int) -> None:
        # residual = [RMS_norm, SiLU, CausalConv3d, RMS_norm, SiLU, Dropout, CausalConv3d]; 1×1×1 shortcut
        self.shapes[f"{name}.residual.0.gamma"] = (cin, 1, 1, 1)
        self.conv(f"{name}.residual.2", cout, cin)
        self.shapes[f"{name}.residual.3.gamma"] = (cout, 1, 1, 1)
        self.conv(f"{name}.residual.6", cout, cout)
        if cin != cout:
            self.conv(f"{name}.shortcut", cout, cin, (1, 1, 1))

    def middle(self, side: str, c: int) -> None:
        self.residual(f"{side}.middle.0", c, c)
        self.shapes[f"{side}.middle.1.norm.gamma"] = (c, 1, 1)
        self.conv(f"{side}.middle.1.to_qkv", 3 * c, c, (1, 1))
        self.conv(f"{side}.middle.1.proj", c, c, (1, 1))
        self.residual(f"{side}.middle.2", c, c)

    def head(self, side: str, cin: int, cout: int) -> None:
        self.shapes[f"{side}.head.0.gamma"] = (cin, 1, 1, 1)
        self.conv(f"{side}.head.2", cout, cin)

    def encoder(self, dims: list[int], res_blocks: int, time_down, z_dim: int) -> None:
        self.conv("encoder.conv1", dims[0], 3)
        i = 0
        for level, (cin, cout) in enumerate(zip(dims[:-1], dims[1:])):
            for _ in range(res_blocks):
                self.residual(f"encoder.downsamples.{i}", cin, cout)
                cin, i = cout, i + 1
            if level < len(dims) - 2:                   # a Resample between levels (time too where asked)
                self.conv(f"encoder.downsamples.{i}.resample.1", cout, cout, (3, 3))
                if time_down[level]:
                    self.conv(f"encoder.downsamples.{i}.time_conv", cout, cout, (3, 1, 1))
                i += 1
        self.middle("encoder", dims[-1])
        self.head("encoder", dims[-1], 2 * z_dim)

    def decoder(self, dims: list[int], res_blocks: int, time_up, z_dim: int) -> None:
        self.conv("decoder.conv1", dims[0], z_dim)
        self.middle("decoder", dims[0])
        i = 0
        for level, (cin, cout) in enumerate(zip(dims[:-1], dims[1:])):
            cin = cin // 2 if level else cin            # the upsampling conv halved the channels
            for _ in range(res_blocks + 1):
                self.residual(f"decoder.upsamples.{i}", cin, cout)
                cin, i = cout, i + 1
            if level < len(dims) - 2:
                self.conv(f"decoder.upsamples.{i}.resample.1", cout // 2, cout, (3, 3))
                if time_up[level]:
                    self.conv(f"decoder.upsamples.{i}.time_conv", 2 * cout, cout, (3, 1, 1))
                i += 1
        self.head("decoder", dims[-1], 3)


def wan_vae_state_dict(seed: int = 0, std: float = 0.3, **sizes) -> dict[str, torch.Tensor]:
    """A random tiny Wan2.1 VAE under Wan's names (``wan_vae_shapes(**sizes)``): every tensor N(0, ``std``), drawn
    in name order from one generator seeded ``seed``."""
    g = torch.Generator().manual_seed(seed)
    return {name: torch.randn(shape, generator=g) * std for name, shape in wan_vae_shapes(**sizes).items()}
