"""One reader opens every checkpoint: a pickle that needs code execution is refused without running it, by every
loader (backbone, LoRA, VAE, text encoder, retrieval encoder)."""
import os
import pickle

import pytest
import torch

from core.formats import CheckpointError, load_backbone, read_lora

from paths import ROOT


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_a_pickle_that_needs_code_execution_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "code_ran"
    torch.save({"generator": {"model.patch_embedding.weight": RunsCode(marker)}}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match=r"evil\.pt' is a pickle that needs Python code execution.*refusing"):
        load_backbone(tmp_path / "evil.pt")
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_plain_pickle_with_code_is_refused_too(tmp_path):
    with open(tmp_path / "old.pth", "wb") as fh:
        pickle.dump({"generator": RunsCode(tmp_path / "code_ran")}, fh)
    with pytest.raises(CheckpointError, match=r"old\.pth'"):
        load_backbone(tmp_path / "old.pth")
    assert not (tmp_path / "code_ran").exists()


def test_torch_load_is_called_only_by_the_one_reader():
    core = ROOT / "core"
    users = {str(p.relative_to(core)) for p in core.rglob("*.py") if "torch.load(" in p.read_text()}
    assert users == {"files/safe_reader.py"}


def test_every_loader_refuses_a_pickle_that_runs_code(tmp_path):
    from core.formats import text_encoder, vae
    from core.retrieval.encoder import load_encoder
    marker = tmp_path / "code_ran"
    torch.save({"model": {"w": RunsCode(marker)}, "config": {}}, tmp_path / "evil.pt")
    loaders = {"retrieval encoder": load_encoder, "VAE": vae._read_state_dict, "LoRA": read_lora,
               "text encoder": lambda p: text_encoder._load_wan_t5(p, "cpu", torch.float32)}
    for what, load in loaders.items():
        with pytest.raises(CheckpointError, match=rf"{what} '.*evil\.pt' is a pickle that needs Python code"):
            load(tmp_path / "evil.pt")
    assert not marker.exists()
