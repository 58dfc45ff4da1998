"""LongLive 1.0's interactive prompt switching (KV re-cache) reproduces: tests/data/golden_extra/longlive_switch_*
were made with NVlabs/LongLive commit 2462895 on CPU (longlive_switch_README.md says how). Latents and the K cache
right after every re-cache (layer 0 and the last layer) are checked."""
import json

import pytest
import torch
from safetensors.torch import load_file

from core.sampling.config import SamplingConfig, SwitchConfig
from core.sampling.loop import _BlockLoop, generate
from core.sampling.prompts import PromptSchedule, Segment
from core.app.plan import sampling_config

from paths import DATA

CASES = DATA / "golden_extra"
NAMES = sorted(p.parent.name for p in CASES.glob("longlive_switch_*/case.json"))
TOL = 1e-5        # the cases' own tolerance hint: float32 noise is ~3e-7; 1e-4 would not separate the semantics


def rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


def case_schedule(case: dict, embeds: torch.Tensor) -> PromptSchedule:
    """Segment s: its row of the case's prompt_embeds [n_segments, 32, 64], from its switch index."""
    starts = [0] + [s["switch_index"] for s in case["switches"]]
    rows = [s["prompt_embeds_row"] for s in case["segments"]]
    return PromptSchedule(tuple(Segment(start, embeds[row:row + 1], f"segment {i}")
                                for i, (start, row) in enumerate(zip(starts, rows))))


def case_config(case: dict) -> SamplingConfig:
    pc = case["pipeline_config"]
    kw = pc["model_kwargs"]
    return sampling_config(window=kw["local_attn_size"], sink=kw["sink_size"], shift=kw["timestep_shift"],
                          steps=pc["denoising_step_list"], context_noise=pc["context_noise"], retrieval=None,
                          switch="recache", global_sink=pc["global_sink"], noise="reference")


def run_case(name: str, model):
    """(case, result, K cache of every layer right after each re-cache [B, valid_slots·tokens, heads, d])."""
    case = json.loads((CASES / name / "case.json").read_text())
    inputs = load_file(str(CASES / name / "inputs.safetensors"))
    snapshots = []
    original = _BlockLoop.switch

    def spy(loop, start):
        before = len(loop.switches)
        original(loop, start)
        if len(loop.switches) > before:
            n = loop.cache.filled * loop.cache.tokens
            snapshots.append([k[:, :n].clone() for k in loop.cache.k])

    b, c, t, h, w = case["latent_shape_bcthw"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_BlockLoop, "switch", spy)
        res = generate(model, case_schedule(case, inputs["prompt_embeds"]), t, (h, w), case["seeds"]["noise"],
                       case_config(case))
    return case, res, snapshots


@pytest.fixture(scope="module")
def results(golden_model):
    return {name: run_case(name, golden_model) for name in NAMES}


def test_all_switch_cases_are_present():
    assert len(NAMES) == 10


@pytest.mark.parametrize("name", NAMES)
def test_latents_match_longlive(name, results):
    case, res, _ = results[name]
    ref = load_file(str(CASES / name / "outputs.safetensors"))["latents_bcthw"]
    assert res.latents.shape == ref.shape
    assert rel_err(res.latents, ref) <= TOL


@pytest.mark.parametrize("name", NAMES)
def test_switches_fire_at_longlives_blocks(name, results):
    case, res, _ = results[name]
    assert [s["block_start"] for s in res.switches] == [s["fires_at_block_start"] for s in case["switches"]]
    assert [s["segment"] for s in res.switches] == [s["segment"] for s in case["switches"]]


@pytest.mark.parametrize("name", NAMES)
def test_recache_rewrites_longlives_slots_from_its_frames(name, results):
    case, res, _ = results[name]
    assert len(res.switches) == len(case["recaches"])
    for ours, theirs in zip(res.switches, case["recaches"]):
        rec = ours["recache"]
        assert rec["slots"] == theirs["cache_slots_rewritten"]
        assert rec["kept_slots"] == theirs["cache_slots_kept"]
        first, last = theirs["recache_frames_inclusive"]
        written = list(range(first, last + 1))[-len(rec["slots"]):]    # the frames of the rewritten slots
        assert rec["frames"] == written
        assert rec["rope_positions"] == written                      # absolute RoPE, original positions


@pytest.mark.parametrize("name", [n for n in NAMES if n not in ("longlive_switch_noswitch",)])
def test_k_cache_after_each_recache_matches_longlive(name, results):
    case, res, snapshots = results[name]
    assert len(snapshots) == len(case["recaches"])
    for i, (ours, theirs) in enumerate(zip(snapshots, case["recaches"])):
        ref = load_file(str(CASES / name / theirs["kv_file"]))
        for layer in (0, len(ours) - 1):
            want = ref[f"layer{layer}.k"]
            assert ours[layer].shape == want.shape, (i, layer)
            assert rel_err(ours[layer], want) <= TOL, (i, layer)
