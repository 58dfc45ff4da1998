import json
import os
from pathlib import Path

# The test models are tiny: intra-op threads gain nothing on them and, when another process holds a
# core, every parallel op waits for a time slice (measured: a 24-frame tiny run 0.13 s on one thread,
# 3.6 s on two with the other core busy). Subprocesses (CLI tests) inherit this.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import sys  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from load_pack import ensure_comfy_api  # noqa: E402

from core.model.transformer import WanConfig, WanTransformer  # noqa: E402
from factory import tiny_model  # noqa: E402,F401  (the tests' tiny-model factory)

# The nodes import comfy_api.latest: ComfyUI's own when it is importable, else tests/comfy_standin.
ensure_comfy_api()

DATA = Path(__file__).parent / "data"
GOLDEN = DATA / "golden"

torch.set_num_threads(1)


def golden_config() -> WanConfig:
    arch = json.loads((GOLDEN / "case.json").read_text())["arch"]
    return WanConfig(dim=arch["dim"], ffn_dim=arch["ffn_dim"], num_layers=arch["num_layers"],
                     num_heads=arch["num_heads"], freq_dim=arch["freq_dim"], text_dim=arch["text_dim"])


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
