"""The AR Block Sampler on a MODEL from a real ComfyUI's own loaders equals the same weights through Load Backbone.

Runs tests/integration/comfyui_model_parity.py in ComfyUI's Python (COMFYUI_PATH, COMFYUI_PYTHON as for
test_comfyui.py) on tiny models large enough for ComfyUI's model detection (2 heads of 128, text width 4096).
The GGUF cases need city96/ComfyUI-GGUF (COMFYUI_GGUF: a checkout of github.com/city96/ComfyUI-GGUF; the `gguf`
package from PyPI in ComfyUI's Python); without it they are skipped.

Expected differences, measured on CPU in float32 (the rest is bit for bit):
- scaled fp8: ComfyUI de-quantises the fp8 weights in its own order of operations, ~1.6e-7 relative;
- GGUF Q8_0 with the GGUF loader's default de-quantisation: it multiplies each block's scale and quants in
  float16, 2e-4 relative on the weights, ~2e-4 on the latents; with its 'target' de-quantisation ~1.6e-7;
- LongLive's LoRA as a separate ComfyUI LoRA file on the bf16 base: Load Backbone merges the LoRA into the bf16
  weights (rounded to bf16), ComfyUI adds it to them in float32: ~8e-4 (the merged file: bit for bit);
- layers ComfyUI leaves in RAM on a small device (partial load) cast per call: their feed-forward adds the bias
  inside the product, the pack's CPU fast path after it, ~1.6e-7.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from paths import ROOT

COMFY = os.environ.get("COMFYUI_PATH")
GGUF = os.environ.get("COMFYUI_GGUF", "")
pytestmark = pytest.mark.skipif(not COMFY, reason="set COMFYUI_PATH to a ComfyUI checkout to run this test")
PY = os.environ.get("COMFYUI_PYTHON", sys.executable)
ROUNDING = 1e-6
COMFY_BEFORE_0_8 = COMFY is not None and Path(COMFY, "comfyui_version.py").is_file() and tuple(
    int(x) for x in Path(COMFY, "comfyui_version.py").read_text().split('"')[1].split(".")[:2]) < (0, 8)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    work = tmp_path_factory.mktemp("models")
    args = [PY, str(ROOT / "tests" / "integration" / "comfyui_model_parity.py"), COMFY, str(ROOT), str(work)]
    done = subprocess.run(args + ([GGUF] if GGUF else []), capture_output=True, text=True, timeout=3000)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RESULTS ")), None)
    assert line is not None, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(line[len("RESULTS "):])


@pytest.mark.parametrize("case", ["load_diffusion_model", "lora_0.7", "two_loras", "base_after_loras",
                                  "wan22_ti2v", "retrieval", "converted_longlive_merged"])
def test_the_model_route_is_bit_for_bit_load_backbones(results, case):
    assert results[case]["equal"], results[case]


def test_a_scaled_fp8_file_runs_the_weights_comfyui_holds(results):
    """The MODEL route computes with the weights ComfyUI holds (float32 rounding); from 0.8 on ComfyUI holds what
    Load Backbone reads from the file (before, it kept every Linear of a scaled-fp8 file in fp8, biases too)."""
    r = results["scaled_fp8"]
    assert r["rel_to_what_comfyui_holds"] <= ROUNDING and r["rel_to_unquantised"] > 1e-3, r
    assert r["rel"] <= ROUNDING or COMFY_BEFORE_0_8, r


def test_the_converted_longlive_lora_file_differs_by_the_bf16_rounding_of_a_merge(results):
    r = results["converted_longlive_lora_file"]
    assert 0 < r["rel"] <= 2e-3, r


def test_a_partial_load_casts_and_patches_per_call_with_the_same_video(results):
    r = results["partial_load_lora"]
    place = r["placement"]
    assert r["rel"] <= ROUNDING and place["lowvram"] and place["loaded_bytes"] < place["model_bytes"], r
    assert r["lowvram_patches"] > 0 and r["asked"] and "partially" in r["info"], r


def test_cancel_then_queue_again_continues_on_the_model_route(results):
    r = results["cancel_continue"]
    assert r["stopped"] and r["continued"] and r["equal"], r
    assert [v for v, total, _ in r["progress"]][-1] == r["progress"][-1][1]     # the bar reached its total
    assert all(preview for _, _, preview in r["progress"]), r["progress"]      # a latent preview with every block


def test_the_retrieval_map_draws_the_model_routes_log(results):
    r = results["retrieval"]
    assert r["records"] > 0 and r["same_log"] and r["map"][-1] == 3, r


@pytest.mark.skipif(not GGUF, reason="set COMFYUI_GGUF to a checkout of city96/ComfyUI-GGUF")
def test_a_gguf_q8_0_model_through_the_gguf_loader(results):
    default, target, lora, partial = (results[k] for k in ("gguf_q8_0", "gguf_q8_0_target_dequant", "gguf_q8_0_lora",
                                                            "gguf_partial_load_lora"))
    assert default["rel"] <= 1e-3 and default["rel_to_unquantised"] > default["rel"], default   # float16 de-quant
    assert target["rel"] <= ROUNDING and lora["rel"] <= ROUNDING, (target, lora)
    assert partial["rel"] <= ROUNDING and partial["placement"]["lowvram"], partial
