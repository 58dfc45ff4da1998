"""Load Prompt Embeds gives a CONDITIONING."""
import torch

from pack import N


def test_load_prompt_embeds_gives_conditioning(tmp_path):
    from safetensors.torch import save_file
    save_file({"prompt_embeds": torch.ones(1, 7, 64)}, str(tmp_path / "e.safetensors"))
    (cond,) = N["LongLiveRAG_LoadPromptEmbeds"].execute(str(tmp_path / "e.safetensors")).args
    assert cond[0][0].shape == (1, 7, 64) and isinstance(cond[0][1], dict)
