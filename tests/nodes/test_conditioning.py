"""Load Prompt Embeds: a CONDITIONING from a file chosen in the prompt_embeds folder, never from outside it (no
absolute path, no '..', no link leading out), errors that name only the value and the folder, and a file read
again when its content changes."""
import os

import pytest
import torch
from safetensors.torch import save_file

from pack import N, bridge

NODE = N["LongLiveRAG_LoadPromptEmbeds"]


@pytest.fixture
def folders(tmp_path, monkeypatch):
    """Without ComfyUI the node's folder is $LONGLIVE_RAG_MODELS/prompt_embeds; ``outside`` is a sibling of it
    holding a secret embeddings file (key 'secret_key')."""
    monkeypatch.setenv("LONGLIVE_RAG_MODELS", str(tmp_path / "models"))
    inside = tmp_path / "models" / "prompt_embeds"
    inside.mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    save_file({"secret_key": torch.ones(2)}, str(outside / "secret.safetensors"))
    save_file({"prompt_embeds": torch.ones(1, 7, 64)}, str(inside / "e.safetensors"))
    return inside, outside


def run(name):
    return NODE.execute(name).args[0]


def test_load_prompt_embeds_gives_conditioning_from_a_file_of_its_folder(folders):
    (cond,) = [run("e.safetensors")]
    assert cond[0][0].shape == (1, 7, 64) and isinstance(cond[0][1], dict)
    assert "e.safetensors" in NODE.GET_SCHEMA().inputs[0].options


def test_a_file_in_a_subfolder_is_read(folders):
    inside, _ = folders
    (inside / "story").mkdir()
    save_file({"prompt_embeds": torch.full((1, 3, 64), 2.0)}, str(inside / "story" / "a.safetensors"))
    assert NODE.GET_SCHEMA().inputs[0].options == ["e.safetensors", "story/a.safetensors"]
    assert float(run("story/a.safetensors")[0][0].mean()) == 2.0


@pytest.mark.parametrize("name", ["../../outside/secret.safetensors", "../outside/secret.safetensors",
                                  "story/../../../outside/secret.safetensors", "..\\outside\\secret.safetensors",
                                  "ABSOLUTE", "/etc/passwd", "..", ""])
def test_a_name_that_leaves_the_folder_is_refused_whether_the_file_exists_or_not(folders, name):
    _, outside = folders
    name = str(outside / "secret.safetensors") if name == "ABSOLUTE" else name
    with pytest.raises(PermissionError) as refused:
        run(name)
    missing = name.replace("secret", "nothing")
    with pytest.raises(PermissionError) as refused_missing:
        run(missing)
    message = str(refused.value)
    assert message == str(refused_missing.value).replace("nothing", "secret")   # existence is not revealed
    assert f"'{name}'" in message and "'prompt_embeds' folder" in message and "secret_key" not in message
    assert message.count("\n") == 0


def test_a_link_leading_out_of_the_folder_is_refused_and_not_offered(folders):
    inside, outside = folders
    os.symlink(outside / "secret.safetensors", inside / "link.safetensors")
    os.symlink(outside / "nothing.safetensors", inside / "broken.safetensors")
    os.symlink(outside, inside / "linked_dir")
    with pytest.raises(PermissionError, match="link that leads outside the folder") as refused:
        run("link.safetensors")
    with pytest.raises(PermissionError) as refused_broken:
        run("broken.safetensors")
    assert str(refused_broken.value) == str(refused.value).replace("link.", "broken.")
    with pytest.raises(PermissionError, match="link that leads outside"):
        run("linked_dir/secret.safetensors")
    assert "secret_key" not in str(refused.value) and str(outside) not in str(refused.value)
    assert NODE.GET_SCHEMA().inputs[0].options == ["e.safetensors"]


def test_a_link_inside_the_folder_is_followed(folders):
    inside, _ = folders
    os.symlink(inside / "e.safetensors", inside / "alias.safetensors")
    assert run("alias.safetensors")[0][0].shape == (1, 7, 64)


def test_errors_about_a_file_of_the_folder_name_it_by_its_name_not_its_path(folders):
    inside, _ = folders
    (inside / "bad.safetensors").write_bytes(b"not a safetensors file")
    save_file({"other": torch.ones(1)}, str(inside / "keys.safetensors"))
    for name, expected in (("bad.safetensors", "not a readable .safetensors file"),
                           ("keys.safetensors", "but no 'prompt_embeds'"), ("gone.safetensors", "is not in")):
        with pytest.raises((ValueError, FileNotFoundError), match=expected) as failed:
            run(name)
        assert f"'{name}'" in str(failed.value) and str(inside) not in str(failed.value), str(failed.value)


def test_the_fingerprint_follows_the_content_so_a_changed_file_is_read_again(folders):
    inside, _ = folders
    path = inside / "e.safetensors"
    first = NODE.fingerprint_inputs("e.safetensors")
    assert NODE.fingerprint_inputs("e.safetensors") == first
    stat = path.stat()
    save_file({"prompt_embeds": torch.full((1, 7, 64), 3.0)}, str(path))       # same size, same mtime
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
    assert NODE.fingerprint_inputs("e.safetensors") != first
    assert float(run("e.safetensors")[0][0].mean()) == 3.0


def test_the_fingerprint_refuses_what_execute_refuses(folders):
    with pytest.raises(PermissionError):
        NODE.fingerprint_inputs("../outside/secret.safetensors")


def test_model_combos_refuse_names_that_leave_their_folder(models_dir):
    with pytest.raises(PermissionError, match="'diffusion_models' folder"):
        bridge.model_path("diffusion_models", "../diffusion_models/tiny.safetensors")
    assert bridge.model_path("diffusion_models", "tiny.safetensors").endswith("tiny.safetensors")
