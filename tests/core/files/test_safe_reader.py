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


def _damaged_files(folder):
    """name → bytes of files a user may find in place of a checkpoint: random bytes, a pickle that stops making
    sense, cut-off downloads of each format, a header that is not JSON, a text file."""
    import io
    import zipfile
    from safetensors.torch import save_file
    torch.save({"w": torch.zeros(64, 64)}, folder / "good.pt")
    zipped = (folder / "good.pt").read_bytes()
    legacy = io.BytesIO()
    torch.save({"w": torch.zeros(64)}, legacy, _use_new_zipfile_serialization=False)
    save_file({"w": torch.zeros(64, 64)}, str(folder / "good.safetensors"))
    tensors = (folder / "good.safetensors").read_bytes()
    bad_pickle = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(zipped)) as src, zipfile.ZipFile(bad_pickle, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            dst.writestr(name, b"\x80\x02garbage" + data[10:] if name.endswith("data.pkl") else data)
    return {"noise.pt": os.urandom(4096), "opcodes.pt": b"\x80\x02" + b"garbage" * 20,
            "cut_zip.pt": zipped[:len(zipped) // 2], "cut_legacy.pt": legacy.getvalue()[:-20],
            "bad_pickle.pt": bad_pickle.getvalue(), "cut.safetensors": tensors[:len(tensors) // 2],
            "bad_header.safetensors": b"\x10" + bytes(7) + b"{not json at all",
            "notes.pth": b"these are not weights\n" * 20}


def test_a_damaged_or_foreign_file_is_one_line_in_the_packs_words_with_the_fix(tmp_path):
    for name, data in _damaged_files(tmp_path).items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CheckpointError) as err:
            load_backbone(tmp_path / name)
        message = str(err.value)
        assert "\n" not in message and f"{name}'" in message, message
        assert "weights_only" not in message and "torch.load" not in message, message     # never torch's advice
        assert message.endswith(("download it again", "its download finished")), message  # a whole sentence, a fix


def test_the_cli_reports_a_damaged_backbone_in_one_line(tmp_path):
    import subprocess
    import sys
    from safetensors.torch import save_file
    (tmp_path / "garbage.pt").write_bytes(b"\x80\x02" + b"garbage" * 20)
    save_file({"prompt_embeds": torch.zeros(1, 4, 32)}, str(tmp_path / "emb.safetensors"))
    proc = subprocess.run([sys.executable, "-m", "core", "generate", "--backbone", str(tmp_path / "garbage.pt"),
                           "--embeds", str(tmp_path / "emb.safetensors"), "--frames", "3", "--latent-size", "8x12",
                           "--device", "cpu", "--out", str(tmp_path / "out.safetensors")],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("error: backbone '") and "weights_only" not in proc.stderr
