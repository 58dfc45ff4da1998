"""The Wan2.1 umT5 text encoder: both on-disk layouts, Wan's math, padding, clear missing-file errors.

Tiny models only (d_model 32, 2 layers, a 45-token tokenizer: core/app/tiny_files.py); the file and tensor
names are the real ones.
"""
import math
import shutil
import socket

import pytest
import torch

from core.formats.text_encoder import MissingModelFiles, TextEncoder, clean_prompt, load_text_encoder

from tiny_files import BUCKETS, DIM, HEADS, LAYERS, WORDS, umt5_state_dict, write_tokenizer, write_umt5_diffusers

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def layouts(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("t5")
    write_tokenizer(root / "wan" / "google" / "umt5-xxl")
    sd_bf16 = {k: v.to(torch.bfloat16) for k, v in umt5_state_dict().items()}   # the real file is bf16
    sd = {k: v.float() for k, v in sd_bf16.items()}
    torch.save(sd_bf16, root / "wan" / "models_t5_umt5-xxl-enc-bf16.pth")
    write_umt5_diffusers(sd, root / "diffusers")
    return {"wan": root / "wan", "diffusers": root / "diffusers", "state": sd}


@pytest.fixture(scope="module")
def wan_encoder(layouts) -> TextEncoder:
    return load_text_encoder(layouts["wan"])


# --- a plain re-statement of Wan's umT5 encoder math, to check the renamed weights against ------

def _bucket(rel: torch.Tensor, num_buckets: int, max_dist: int = 128) -> torch.Tensor:
    half = num_buckets // 2                       # bidirectional: half the buckets per direction
    out = (rel > 0).long() * half
    rel = rel.abs()
    exact = half // 2
    large = exact + (torch.log(rel.float() / exact) / math.log(max_dist / exact) * (half - exact)).long()
    return out + torch.where(rel < exact, rel, large.clamp(max=half - 1))


def reference_encode(sd: dict, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    rms = lambda x, w: w * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)  # noqa: E731
    x = sd["token_embedding.weight"][ids]
    b, n = ids.shape
    pos = torch.arange(n)
    rel = _bucket(pos[None, :] - pos[:, None], BUCKETS)                      # [Lq, Lk]
    neg = torch.zeros(b, 1, 1, n).masked_fill(mask[:, None, None, :] == 0, torch.finfo(x.dtype).min)
    for i in range(LAYERS):
        p = lambda k: sd[f"blocks.{i}.{k}"]  # noqa: E731
        h = rms(x, p("norm1.weight"))
        q, k, v = (torch.einsum("bnd,ed->bne", h, p(f"attn.{c}.weight")).view(b, n, HEADS, -1) for c in "qkv")
        bias = p("pos_embedding.embedding.weight")[rel].permute(2, 0, 1)[None]  # [1, H, Lq, Lk]
        att = torch.softmax(torch.einsum("bihc,bjhc->bhij", q, k) + bias + neg, dim=-1)  # no 1/sqrt(d)
        x = x + torch.einsum("bhij,bjhc->bihc", att, v).reshape(b, n, -1) @ p("attn.o.weight").T
        h = rms(x, p("norm2.weight"))
        gate = torch.nn.functional.gelu(h @ p("ffn.gate.0.weight").T, approximate="tanh")
        x = x + ((h @ p("ffn.fc1.weight").T) * gate) @ p("ffn.fc2.weight").T
    return rms(x, sd["norm.weight"])


# --- tests --------------------------------------------------------------------------------------

def test_wan_and_diffusers_layouts_give_identical_embeddings(layouts, wan_encoder):
    hf = load_text_encoder(layouts["diffusers"])
    assert (wan_encoder.files.layout, hf.files.layout) == ("wan", "diffusers")
    prompts = ["a red cat runs in the snow", "the blue dog"]
    torch.testing.assert_close(wan_encoder.encode(prompts), hf.encode(prompts), rtol=0, atol=1e-6)


def test_embeddings_follow_wan_umt5_math_including_far_relative_positions(layouts, wan_encoder):
    prompt = " ".join(WORDS * 12)                         # > 128 tokens: exercises the log-spaced buckets
    te = TextEncoder(wan_encoder.model, wan_encoder.tokenizer, wan_encoder.files, text_len=200)
    tok = te.tokenizer([prompt], padding="max_length", truncation=True, max_length=200, return_tensors="pt")
    ref = reference_encode(layouts["state"], tok.input_ids, tok.attention_mask)
    got = te.encode([prompt])
    n = int(tok.attention_mask.sum())
    assert n > 150
    torch.testing.assert_close(got[0, :n], ref[0, :n], rtol=1e-4, atol=1e-4)


def test_output_is_padded_to_512_rows_with_zeros_after_each_prompt(wan_encoder):
    prompts = ["a cat", "a red dog runs on the snow at night"]
    out = wan_encoder.encode(prompts)
    assert out.shape == (2, 512, DIM)
    lens = [len(wan_encoder.tokenizer(p).input_ids) for p in prompts]   # words + </s>
    for i, n in enumerate(lens):
        assert out[i, :n].abs().sum(-1).gt(0).all()
        assert out[i, n:].eq(0).all()


def test_long_prompt_is_cut_to_512_tokens(wan_encoder):
    out = wan_encoder.encode(["snow " * 900])
    assert out.shape == (1, 512, DIM) and out[0].abs().sum(-1).gt(0).all()


def test_prompt_is_cleaned_like_wan():
    assert clean_prompt("  a &amp;amp; b\n\t c  ") == "a & b c"


def test_a_folder_without_the_model_lists_both_layouts_and_download_commands(tmp_path):
    with pytest.raises(MissingModelFiles) as err:
        load_text_encoder(tmp_path)
    msg = str(err.value)
    assert set(err.value.missing) == {tmp_path / "models_t5_umt5-xxl-enc-bf16.pth", tmp_path / "google/umt5-xxl",
                                      tmp_path / "text_encoder", tmp_path / "tokenizer"}
    assert "hf download Wan-AI/Wan2.1-T2V-1.3B " in msg
    assert "hf download Wan-AI/Wan2.1-T2V-1.3B-Diffusers --include 'text_encoder/*' 'tokenizer/*'" in msg


def test_a_half_installed_wan_layout_names_only_the_missing_tokenizer(layouts, tmp_path):
    shutil.copy(layouts["wan"] / "models_t5_umt5-xxl-enc-bf16.pth", tmp_path)
    with pytest.raises(MissingModelFiles) as err:
        load_text_encoder(tmp_path)
    assert err.value.missing == [tmp_path / "google/umt5-xxl"]
    assert "google/umt5-xxl" in str(err.value)


def test_a_foreign_state_dict_is_a_clear_error(layouts, tmp_path):
    shutil.copytree(layouts["wan"] / "google", tmp_path / "google")
    torch.save({"encoder.block.0.layer.0.SelfAttention.q.weight": torch.zeros(2, 2)},
               tmp_path / "models_t5_umt5-xxl-enc-bf16.pth")
    with pytest.raises(ValueError, match="unexpected tensor 'encoder.block.0"):
        load_text_encoder(tmp_path)


def test_loading_never_uses_the_network(layouts, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access while loading a local model")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    for layout in ("wan", "diffusers"):
        assert load_text_encoder(layouts[layout]).encode(["a cat"]).shape == (1, 512, DIM)
