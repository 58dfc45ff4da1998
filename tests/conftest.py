import os
from pathlib import Path

# The test models are tiny: intra-op threads gain nothing on them and, when another process holds a
# core, every parallel op waits for a time slice (measured: a 24-frame tiny run 0.13 s on one thread,
# 3.6 s on two with the other core busy). Subprocesses (CLI tests) inherit this.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from load_pack import ensure_comfy_api  # noqa: E402  (tools/ and tests/ are on the path: pyproject.toml)

from core.model.transformer import WanTransformer  # noqa: E402
from checkpoints import random_state  # noqa: E402
from factory import golden_config, tiny_model  # noqa: E402
from paths import GOLDEN  # noqa: E402
from tiny_files import umt5_state_dict, write_tiny_vae, write_tokenizer, write_umt5_diffusers  # noqa: E402

# The nodes import comfy_api.latest: ComfyUI's own when it is importable, else tests/comfy_standin.
ensure_comfy_api()

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    return GOLDEN


@pytest.fixture(scope="session")
def golden_model() -> WanTransformer:
    model = WanTransformer(golden_config())
    model.load_state_dict(load_file(str(GOLDEN / "wan_tiny_t2v_bare.safetensors")))
    return model.eval().requires_grad_(False)


@pytest.fixture(scope="session")
def golden_inputs() -> dict:
    return load_file(str(GOLDEN / "inputs.safetensors"))


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors gain nothing from intra-op threads, and lose a lot when the cores are busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    """A ComfyUI-style models folder (LONGLIVE_RAG_MODELS) holding the golden tiny backbone as tiny.safetensors and
    its retrieval encoder as ae_latent_mem.pt."""
    for kind in ("diffusion_models", "loras", "retrieval_encoders"):
        (tmp_path / kind).mkdir()
    (tmp_path / "diffusion_models" / "tiny.safetensors").symlink_to(GOLDEN / "wan_tiny_t2v_bare.safetensors")
    (tmp_path / "retrieval_encoders" / "ae_latent_mem.pt").symlink_to(GOLDEN / "ae.pt")
    monkeypatch.setenv("LONGLIVE_RAG_MODELS", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="module")
def state():
    """The weights of a random checkpoint of ``checkpoints.CFG`` (bare Wan names)."""
    return random_state()


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """Files for prompt-to-video runs: a tiny umT5 in Wan's (wan/) and diffusers' (diffusers/) layouts, the tiny
    Wan2.1 VAE in both (wan/Wan2.1_VAE.pth, diffusers/vae/) and a tiny backbone (causal_forcing_tiny.safetensors)."""
    root = tmp_path_factory.mktemp("t2v")
    sd = umt5_state_dict()
    write_tokenizer(root / "wan" / "google" / "umt5-xxl")
    torch.save({k: v.to(torch.bfloat16) for k, v in sd.items()}, root / "wan" / "models_t5_umt5-xxl-enc-bf16.pth")
    write_umt5_diffusers({k: v.to(torch.bfloat16).float() for k, v in sd.items()}, root / "diffusers")
    write_tiny_vae(root)
    model = tiny_model(1, bias_std=0.05)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(root / "causal_forcing_tiny.safetensors"))
    return root
