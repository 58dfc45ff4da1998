"""The Wan2.1 text encoder (umT5-XXL encoder): prompts → embeddings [B, 512, 4096].

Loads from a local folder in either published layout and never downloads:

- original Wan layout (``hf download Wan-AI/Wan2.1-T2V-1.3B``): ``models_t5_umt5-xxl-enc-bf16.pth``
  (a state dict with Wan's own T5 names) and the tokenizer folder ``google/umt5-xxl/``;
- diffusers layout (``Wan-AI/Wan2.1-T2V-1.3B-Diffusers``): ``text_encoder/`` (a transformers
  ``UMT5EncoderModel``) and ``tokenizer/``.

Both run as transformers' ``UMT5EncoderModel``; Wan's names are renamed at load. The prompt is
cleaned, tokenised (padded/cut to 512 tokens, ``</s>`` appended) and encoded exactly as Wan does,
and the rows after each prompt's last token are zeroed (Wan keeps ``context[i, :len_i]`` and pads
with zeros before the transformer's ``text_embedding``).

transformers is imported only when a model is loaded.
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from ..files.safe_reader import read_state_dict, why_unreadable

TEXT_LEN = 512
WAN_T5_FILE = "models_t5_umt5-xxl-enc-bf16.pth"
WAN_TOKENIZER_DIR = "google/umt5-xxl"
WAN_REPO = "Wan-AI/Wan2.1-T2V-1.3B"
DIFFUSERS_REPO = "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
# Wan's T5 uses a relative-position bias with 128 as its maximum distance (T5RelativeEmbedding.max_dist).
WAN_T5_MAX_DISTANCE = 128


class MissingModelFiles(FileNotFoundError):
    """Model files are not on disk. ``missing`` lists the absent paths; the message says where to put
    them and the command that downloads them (nothing is ever downloaded at run time)."""

    def __init__(self, message: str, missing: list[Path]):
        super().__init__(message)
        self.missing = list(missing)


# ---------------------------------------------------------------------------------------------
# Finding the files

@dataclass
class TextEncoderFiles:
    layout: str            # "wan" or "diffusers"
    weights: Path          # the .pth file (wan) or the text_encoder/ folder (diffusers)
    tokenizer: Path        # tokenizer folder


def _has_tokenizer(folder: Path) -> bool:
    return folder.is_dir() and ((folder / "tokenizer.json").is_file() or (folder / "spiece.model").is_file())


def _has_hf_weights(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def find_text_encoder_files(folder: str | Path) -> TextEncoderFiles:
    """Locate the weights and tokenizer under ``folder`` (either layout); raise ``MissingModelFiles``
    listing exactly what is absent otherwise. ``folder`` may also be the Wan ``.pth`` file itself
    (its tokenizer is then looked for beside it)."""
    path = Path(folder).expanduser()
    if path.is_file() and path.suffix in (".pth", ".pt"):
        path, pth = path.parent, path
    else:
        pth = path / WAN_T5_FILE
    wan_tok = path / WAN_TOKENIZER_DIR
    if pth.is_file() and _has_tokenizer(wan_tok):
        return TextEncoderFiles("wan", pth, wan_tok)
    te, tok = path / "text_encoder", path / "tokenizer"
    if _has_hf_weights(te) and _has_tokenizer(tok):
        return TextEncoderFiles("diffusers", te, tok)
    if _has_hf_weights(path) and _has_tokenizer(path):   # a single folder holding both
        return TextEncoderFiles("diffusers", path, path)

    wan_missing = [p for p, ok in ((pth, pth.is_file()), (wan_tok, _has_tokenizer(wan_tok))) if not ok]
    hf_missing = [p for p, ok in ((te, _has_hf_weights(te)), (tok, _has_tokenizer(tok))) if not ok]
    # Report the layout the user has started on; list both when neither is there.
    started_wan = len(wan_missing) < 2
    started_hf = len(hf_missing) < 2
    missing = wan_missing if started_wan and not started_hf else hf_missing if started_hf and not started_wan \
        else wan_missing + hf_missing
    either = " (one complete layout is enough)" if missing == wan_missing + hf_missing else ""
    lines = [f"Wan2.1 text encoder (umT5-XXL) not found in '{path}'. Missing{either}:"]
    lines += [f"  {p}" + ("/" if p.suffix == "" else "") for p in missing]
    lines += ["Put the files there in one of the two layouts:",
              f"  (a) original Wan layout: {path}/{WAN_T5_FILE} and {path}/{WAN_TOKENIZER_DIR}/ "
              "(tokenizer.json, tokenizer_config.json, special_tokens_map.json, spiece.model):",
              f"      hf download {WAN_REPO} --include '{WAN_T5_FILE}' '{WAN_TOKENIZER_DIR}/*' --local-dir {path}",
              f"  (b) diffusers layout: {path}/text_encoder/ (config.json + model*.safetensors) and "
              f"{path}/tokenizer/:",
              f"      hf download {DIFFUSERS_REPO} --include 'text_encoder/*' 'tokenizer/*' --local-dir {path}"]
    raise MissingModelFiles("\n".join(lines), missing)


# ---------------------------------------------------------------------------------------------
# Wan's T5 names → transformers' UMT5 names

_BLOCK_RENAMES = {
    "norm1.weight": "layer.0.layer_norm.weight",
    "attn.q.weight": "layer.0.SelfAttention.q.weight",
    "attn.k.weight": "layer.0.SelfAttention.k.weight",
    "attn.v.weight": "layer.0.SelfAttention.v.weight",
    "attn.o.weight": "layer.0.SelfAttention.o.weight",
    # Wan's umT5 has its own relative-position bias per block (shared_pos=False), as UMT5 does.
    "pos_embedding.embedding.weight": "layer.0.SelfAttention.relative_attention_bias.weight",
    "norm2.weight": "layer.1.layer_norm.weight",
    # Wan: fc2(fc1(x) * gelu_tanh(gate.0(x))); UMT5: wo(gelu_new(wi_0(x)) * wi_1(x)).
    "ffn.gate.0.weight": "layer.1.DenseReluDense.wi_0.weight",
    "ffn.fc1.weight": "layer.1.DenseReluDense.wi_1.weight",
    "ffn.fc2.weight": "layer.1.DenseReluDense.wo.weight",
}
_BLOCK_KEY = re.compile(r"blocks\.(\d+)\.(.+)")


def wan_t5_to_transformers(state: dict[str, torch.Tensor], path: str | Path = "<state dict>") -> dict:
    """Rename a Wan umT5 encoder state dict to ``UMT5EncoderModel`` names (tensors are not copied)."""
    out = {}
    for key, value in state.items():
        if key == "token_embedding.weight":
            out["shared.weight"] = value
            out["encoder.embed_tokens.weight"] = value   # tied in UMT5EncoderModel
        elif key == "norm.weight":
            out["encoder.final_layer_norm.weight"] = value
        elif (m := _BLOCK_KEY.fullmatch(key)) and m.group(2) in _BLOCK_RENAMES:
            out[f"encoder.block.{m.group(1)}.{_BLOCK_RENAMES[m.group(2)]}"] = value
        elif key == "pos_embedding.embedding.weight":
            raise ValueError(f"text encoder '{path}' has one shared relative-position bias (a T5 with "
                             "shared_pos=True), not umT5's per-block bias; expected Wan2.1's "
                             f"{WAN_T5_FILE}")
        else:
            hint = (" (transformers names: put such weights in the diffusers layout, text_encoder/ with its "
                    "config.json)") if key.startswith(("encoder.", "shared.")) else ""
            raise ValueError(f"text encoder '{path}' has an unexpected tensor '{key}'{hint}; expected Wan2.1's "
                             f"umT5-XXL encoder ({WAN_T5_FILE}: token_embedding, blocks.N.{{norm1,attn,norm2,ffn,"
                             "pos_embedding}, norm)")
    return out


def _umt5_config_from_wan(state: dict[str, torch.Tensor], path: Path):
    """Architecture from the tensor shapes (never assumes XXL sizes)."""
    from transformers import UMT5Config
    try:
        vocab, dim = state["token_embedding.weight"].shape
        dim_attn = state["blocks.0.attn.q.weight"].shape[0]
        buckets, heads = state["blocks.0.pos_embedding.embedding.weight"].shape
        ffn = state["blocks.0.ffn.fc1.weight"].shape[0]
    except KeyError as exc:
        raise ValueError(f"text encoder '{path}' lacks {exc}; expected Wan2.1's umT5-XXL encoder state dict "
                         f"({WAN_T5_FILE})") from None
    layers = 1 + max(int(m.group(1)) for k in state if (m := _BLOCK_KEY.fullmatch(k)))
    return UMT5Config(vocab_size=vocab, d_model=dim, d_kv=dim_attn // heads, d_ff=ffn, num_layers=layers,
                      num_heads=heads, relative_attention_num_buckets=buckets,
                      relative_attention_max_distance=WAN_T5_MAX_DISTANCE, feed_forward_proj="gated-gelu",
                      layer_norm_epsilon=1e-6, dropout_rate=0.0, is_encoder_decoder=False, use_cache=False)


def _load_wan_t5(pth: Path, device, dtype):
    from transformers import UMT5EncoderModel
    # mmap: the bf16 XXL file is ~11 GB; tensors are read as they are converted
    state = read_state_dict(pth, "text encoder", mmap=True, expected=f"Wan's {WAN_T5_FILE}")
    renamed = wan_t5_to_transformers(state, pth)   # fails first on foreign names
    config = _umt5_config_from_wan(state, pth)
    converted = {k: v.to(device=device, dtype=dtype) for k, v in renamed.items()}
    converted["encoder.embed_tokens.weight"] = converted["shared.weight"]
    del state
    with torch.device("meta"):   # no throw-away random init of billions of weights
        model = UMT5EncoderModel(config)
    result = model.load_state_dict(converted, strict=False, assign=True)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"text encoder '{pth}': missing tensors {result.missing_keys[:6]}, unexpected "
                         f"{result.unexpected_keys[:6]}; the file is not a complete Wan2.1 umT5 encoder")
    model.encoder.embed_tokens = model.shared
    return model


def _load_diffusers_t5(folder: Path, device, dtype):
    from transformers import UMT5EncoderModel
    import transformers
    dtype_kw = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
    try:
        model = UMT5EncoderModel.from_pretrained(str(folder), local_files_only=True, **{dtype_kw: dtype})
    except (OSError, ValueError) as exc:
        raise ValueError(f"text encoder folder '{folder}' could not be loaded as a transformers "
                         f"UMT5EncoderModel ({why_unreadable(exc)}); download it again: hf download {DIFFUSERS_REPO} "
                         f"--include 'text_encoder/*' 'tokenizer/*'") from exc
    return model.to(device)


# ---------------------------------------------------------------------------------------------
# Prompt cleaning, as Wan's HuggingfaceTokenizer(clean="whitespace") and diffusers' WanPipeline do

def clean_prompt(text: str) -> str:
    """ftfy fix, double HTML unescape, collapse whitespace."""
    try:
        import ftfy
        text = ftfy.fix_text(text)
    except ImportError:   # only mojibake repair is lost; plain prompts are unaffected
        pass
    text = html.unescape(html.unescape(text)).strip()
    try:
        import regex   # what Wan uses; its \s differs from re's on a few control characters
        return regex.sub(r"\s+", " ", text).strip()
    except ImportError:
        return re.sub(r"\s+", " ", text).strip()


class TextEncoder:
    """A loaded umT5 encoder and its tokenizer. ``encode`` returns [B, text_len, dim]."""

    def __init__(self, model, tokenizer, files: TextEncoderFiles, text_len: int = TEXT_LEN):
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.files = files
        self.text_len = text_len

    @property
    def device(self) -> torch.device:
        return self.model.shared.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.shared.weight.dtype

    @property
    def dim(self) -> int:
        return self.model.config.d_model

    @torch.inference_mode()
    def encode(self, prompts: list[str] | str) -> torch.Tensor:
        """prompts → embeddings [B, text_len, dim] on the encoder's device and dtype; each prompt is cut to
        ``text_len`` tokens (``</s>`` included) and the rows after its last token are zero."""
        if isinstance(prompts, str):
            prompts = [prompts]
        batch = self.tokenizer([clean_prompt(p) for p in prompts], padding="max_length", truncation=True,
                               max_length=self.text_len, add_special_tokens=True, return_attention_mask=True,
                               return_tensors="pt")
        ids, mask = batch.input_ids.to(self.device), batch.attention_mask.to(self.device)
        context = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        keep = torch.arange(context.shape[1], device=self.device)[None, :] < mask.sum(dim=1, keepdim=True)
        return context * keep[..., None].to(context.dtype)

    __call__ = encode


def load_text_encoder(folder: str | Path, device: str | torch.device = "cpu",
                      dtype: torch.dtype = torch.float32, text_len: int = TEXT_LEN) -> TextEncoder:
    """Load the Wan2.1 umT5 encoder from ``folder`` (Wan or diffusers layout, see the module docstring).

    Raises ``MissingModelFiles`` naming the absent files and the download command, ``ValueError`` for a
    damaged or foreign file. Only local files are read (``local_files_only``). The XXL encoder has 5.7 B
    parameters: ~23 GB in float32, ~11 GB in bfloat16.
    """
    files = find_text_encoder_files(folder)
    from transformers import AutoTokenizer
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(files.tokenizer), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ValueError(f"tokenizer folder '{files.tokenizer}' could not be loaded ({why_unreadable(exc)}); it should hold the "
                         "umT5 tokenizer files (tokenizer.json, tokenizer_config.json, …)") from exc
    device = torch.device(device)
    if files.layout == "wan":
        model = _load_wan_t5(files.weights, device, dtype)
    else:
        model = _load_diffusers_t5(files.weights, device, dtype)
    return TextEncoder(model, tokenizer, files, text_len)
