"""The training corpus: split by file as published, chunks of consecutive frames, bad files named."""
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from core.training.corpus import ChunkDataset, scan_corpus, split_files


def test_split_is_by_file_and_matches_the_published_random_split():
    files = [Path(f"v{i}.safetensors") for i in range(23)]
    train_files, val_files = split_files(files, 0.1, seed=42)
    want_train, want_val = torch.utils.data.random_split(files, [21, 2], generator=torch.Generator().manual_seed(42))
    assert train_files == list(want_train) and val_files == list(want_val)
    assert split_files(files, 0.1, seed=42) == (train_files, val_files)
    no_val = split_files(files, 0.0, seed=42)
    assert sorted(no_val[0]) == sorted(files) and no_val[1] == []


def test_chunks_are_consecutive_frames_whatever_the_workers_and_change_per_epoch(tmp_path):
    data = tmp_path / "d"
    data.mkdir()
    save_file({"latents": torch.arange(30.0).view(30, 1, 1, 1).expand(30, 16, 2, 2).contiguous()},
              str(data / "a.safetensors"))
    save_file({"latents": torch.zeros(3, 16, 2, 2)}, str(data / "short.safetensors"))
    files, shape = scan_corpus(data)
    ds = ChunkDataset(files, seq_len=8, chunks_per_video=4, seed=1)
    firsts = torch.stack([ds[i][:, 0, 0, 0] for i in range(0, 8, 2)])
    assert torch.equal(firsts - firsts[:, :1], torch.arange(8.0).expand(4, 8))    # consecutive frames
    assert ds[1].shape == (8, 16, 2, 2)                                            # short video padded
    loader = torch.utils.data.DataLoader(ds, batch_size=8, num_workers=2)
    assert torch.equal(next(iter(loader)), torch.stack([ds[i] for i in range(8)]))
    starts = lambda: [int(ds[i][0, 0, 0, 0]) for i in range(0, 8, 2)]  # noqa: E731
    before = starts()
    ds.set_epoch(1)
    assert starts() != before


def test_bad_corpora_fail_naming_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="build-corpus"):
        scan_corpus(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="has no"):
        scan_corpus(tmp_path / "empty")
    (tmp_path / "a").mkdir()
    save_file({"video": torch.zeros(2, 16, 8, 12)}, str(tmp_path / "a" / "x.safetensors"))
    with pytest.raises(ValueError, match=r"x\.safetensors' has no 'latents'"):
        scan_corpus(tmp_path / "a")
    (tmp_path / "r").mkdir()
    save_file({"latents": torch.zeros(1, 2, 16, 8, 12)}, str(tmp_path / "r" / "batched.safetensors"))
    with pytest.raises(ValueError, match=r"batched\.safetensors': 'latents' has shape \[1, 2, 16, 8, 12\]"):
        scan_corpus(tmp_path / "r")
    (tmp_path / "b").mkdir()
    save_file({"latents": torch.zeros(2, 16, 8, 12)}, str(tmp_path / "b" / "1.safetensors"))
    save_file({"latents": torch.zeros(2, 16, 6, 12)}, str(tmp_path / "b" / "2.safetensors"))
    with pytest.raises(ValueError, match=r"2\.safetensors' has frames .* must share"):
        scan_corpus(tmp_path / "b")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match=r"junk\.safetensors' is not readable"):
        scan_corpus(tmp_path / "c")
