"""The tiny text encoder and VAE files (core/app/tiny_files.py) are the real formats: transformers and diffusers
read them as their own, and writing them needs neither library."""
import subprocess
import sys

import torch

from core.app.tiny_files import (HF_NAME, VOCAB, WORDS, umt5_state_dict, wan_vae_shapes, write_tokenizer,
                                 write_umt5_folder)
from paths import ROOT
from tiny_files import wan_name


def test_the_vae_table_is_wans_module_tree_as_diffusers_builds_it():
    from diffusers import AutoencoderKLWan
    model = AutoencoderKLWan(base_dim=4, z_dim=16)
    assert {wan_name(k): tuple(v.shape) for k, v in model.state_dict().items()} == wan_vae_shapes(4, 16)


def test_the_umt5_folder_loads_as_transformers_own_model_with_every_weight(tmp_path):
    from transformers import UMT5EncoderModel
    sd = umt5_state_dict(dim=64)
    write_umt5_folder(sd, tmp_path)
    model, info = UMT5EncoderModel.from_pretrained(str(tmp_path), local_files_only=True, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    assert model.config.d_model == 64 and model.config.vocab_size == VOCAB
    assert torch.equal(model.encoder.block[1].layer[1].DenseReluDense.wo.weight, sd["blocks.1.ffn.fc2.weight"])
    assert torch.equal(model.encoder.embed_tokens.weight, sd["token_embedding.weight"])
    assert set(HF_NAME) == {k.split(".", 2)[2] for k in sd if k.startswith("blocks.0.")}


def test_the_tokenizer_reads_offline_as_a_t5_tokenizer(tmp_path):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(str(write_tokenizer(tmp_path)), local_files_only=True)
    ids = tok("a red cat").input_ids
    assert ids == [3 + WORDS.index("a"), 3 + WORDS.index("red"), 3 + WORDS.index("cat"), tok.eos_token_id]
    assert tok.eos_token_id == 1 and tok.pad_token_id == 0
    assert len(tok("zebra").input_ids) == 1 + 1 + len("zebra")          # "▁", one piece per letter, </s>


def test_writing_them_imports_neither_transformers_nor_diffusers(tmp_path):
    code = ("import sys; from pathlib import Path; from core.app import tiny_files as t; "
            f"d = Path({str(tmp_path)!r}); t.write_umt5_diffusers(t.umt5_state_dict(), d); t.wan_vae_state_dict(); "
            "print(sorted(m for m in ('transformers', 'diffusers') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
    assert (tmp_path / "text_encoder" / "model.safetensors").is_file()
    assert (tmp_path / "tokenizer" / "tokenizer.json").is_file()
