"""Relative errors of every golden case (tests/golden/test_longlive_rag.py) against the published outputs.

    python benchmarks/golden_errors.py            # one line per case; --json for a machine-readable dump

The test only checks ≤ 1e-4; this prints the actual figures, so that a speed change can show it
did not move them (run before and after, compare).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the golden fixtures live with the tests
sys.path.insert(0, str(ROOT / "tests" / "golden"))

import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from factory import golden_config  # noqa: E402
from paths import GOLDEN  # noqa: E402
from core.retrieval.encoder import load_encoder  # noqa: E402
from core.model.transformer import WanTransformer  # noqa: E402
from core.sampling.loop import generate  # noqa: E402
from test_longlive_rag import EXTRA, config_from_case, rel_err  # noqa: E402


# the cases tests/golden/test_longlive_rag.py parametrizes (other folders under golden_extra belong to other features)
EXTRA_CASES = ("native", "native_sink0_win9", "rag_avgpool", "rag_batch2")


def run_case(model: WanTransformer, case_dir: Path, default_inputs: dict) -> dict:
    case = json.loads((case_dir / "case.json").read_text())
    kw = case["pipeline_config"]["model_kwargs"]
    emb = default_inputs["prompt_embeds"]
    if (case_dir / "inputs.safetensors").exists():
        emb = load_file(str(case_dir / "inputs.safetensors"))["prompt_embeds"]
    encoder = load_encoder(GOLDEN / "ae.pt") if kw.get("compression_method") == "ae" else None
    b, c, t, h, w = case["latent_shape_bcthw"]
    res = generate(model, emb, t, (h, w), case["seeds"]["noise"], config_from_case(case), encoder=encoder)
    ref = load_file(str(case_dir / "outputs.safetensors"))
    return {"latents": rel_err(res.latents, ref["latents_bcthw"]),
            "descriptors": rel_err(res.descriptors, ref["descriptors"])}


def main() -> int:
    torch.set_num_threads(min(2, torch.get_num_threads()))
    model = WanTransformer(golden_config())
    model.load_state_dict(load_file(str(GOLDEN / "wan_tiny_t2v_bare.safetensors")))
    model = model.eval().requires_grad_(False)
    inputs = load_file(str(GOLDEN / "inputs.safetensors"))
    cases = {"rag_ae": GOLDEN} | {name: EXTRA / name for name in EXTRA_CASES}
    out = {name: run_case(model, path, inputs) for name, path in cases.items()}
    if "--json" in sys.argv:
        print(json.dumps(out))
        return 0
    print(f"{'case':20} {'latents rel err':>16} {'descriptors rel err':>20}")
    for name, e in out.items():
        print(f"{name:20} {e['latents']:16.3e} {e['descriptors']:20.3e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
