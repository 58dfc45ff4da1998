"""Embeddings files that hold a prompt schedule (core/sampling/prompt_files.py): prompt_embeds_<i>, switch_frames
and cuts read into a schedule; a bad file names what to fix."""
import pytest
import torch
from safetensors.torch import save_file

from core.sampling.prompt_files import load_prompt_schedule


def test_an_embeddings_file_holds_a_schedule(tmp_path):
    e = torch.randn(3, 1, 7, 8)
    save_file({"prompt_embeds": e[0], "prompt_embeds_1": e[1], "prompt_embeds_2": e[2],
               "switch_frames": torch.tensor([15, 27])}, str(tmp_path / "s.safetensors"))
    sched = load_prompt_schedule(tmp_path / "s.safetensors", text_dim=8)
    assert [s.start for s in sched.segments] == [0, 15, 27]
    assert torch.equal(sched.segments[2].embeds, e[2])
    save_file({"prompt_embeds": e[0]}, str(tmp_path / "one.safetensors"))
    assert len(load_prompt_schedule(tmp_path / "one.safetensors").segments) == 1


@pytest.mark.parametrize("tensors, message", [
    ({"prompt_embeds_1": torch.zeros(1, 7, 8)}, "no 'switch_frames'; save 'switch_frames' as int64 [1]"),
    ({"prompt_embeds_1": torch.zeros(1, 7, 8), "switch_frames": torch.tensor([1.5])}, "torch.float32"),
    ({"prompt_embeds_2": torch.zeros(1, 7, 8), "switch_frames": torch.tensor([3])}, "without gaps"),
    ({"prompt_embeds_1": torch.zeros(1, 7, 8), "switch_frames": torch.tensor([0])}, "must be ≥ 1"),
    ({"prompt_embeds_1": torch.zeros(1, 7, 8), "prompt_embeds_2": torch.zeros(1, 7, 8),
      "switch_frames": torch.tensor([9, 6])}, "switch_frames[1] = 6 (prompt_embeds_2) starts at latent frame 6"),
])
def test_bad_schedule_files_name_what_to_fix(tmp_path, tensors, message):
    save_file({"prompt_embeds": torch.zeros(1, 7, 8), **tensors}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError) as err:
        load_prompt_schedule(tmp_path / "bad.safetensors")
    assert message in str(err.value)
