"""∞-RoPE and MemRoPE reproduce their published code: tests/data/golden_extra/{infinity_rope,memrope}_* were made
with yesiltepe-hidir/infinity-rope 63d7b84 and YoungRaeKimm/MemRoPE b89bf5b on CPU (strategies_README.md says
how). Latents, the final K/V cache (∞-RoPE), the memory tokens after every fold (MemRoPE) and the trace's
facts (flushes, cuts, folds, slots, RoPE positions) are checked."""
import json

import pytest
import torch
from safetensors.torch import load_file

from core.formats.lora import match_lora, merge_lora, read_lora

from core.context.kv_cache import KVCache
from core.model.transformer import WanTransformer
from core.sampling.loop import _BlockLoop, generate
from core.sampling.prompts import PromptSchedule, Segment
from core.model.rope import apply_rope, rope_table
from core.context.strategies.memrope import MemRope
from core.app.plan import strategy_config

from factory import golden_config
from paths import DATA, GOLDEN

CASES = DATA / "golden_extra"
INF = ["infinity_rope_win6", "infinity_rope_flush", "infinity_rope_flush_early", "infinity_rope_flush_10x6"]
MEM = ["memrope_selfforcing", "memrope_longlive_lora", "memrope_selfforcing_6x10"]
TOL = 1e-4        # the cases' tolerance hint; measured ~3e-7
MEMORY_TOL = 1e-5


def rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


def scene_schedule(case: dict, embeds: torch.Tensor) -> PromptSchedule:
    """Scene s starts after the blocks of the scenes before it; a boundary marked ``rope_cut`` makes the scene
    it leads into a cut (the reference reads the '#' of the scene before the boundary)."""
    nf, starts, at = case["pipeline_config"]["num_frame_per_block"], [], 0
    for scene in case["scenes"]:
        starts.append(at * nf)
        at += scene["blocks"]
    cuts = [False] + [b["rope_cut"] for b in case["boundaries"]]
    rows = [s["prompt_embeds_row"] for s in case["scenes"]]
    return PromptSchedule(tuple(Segment(start, embeds[row:row + 1], f"scene {i}", cut)
                                for i, (start, row, cut) in enumerate(zip(starts, rows, cuts))))


def run(name: str, model, strategy: str, schedule_of=None):
    """(case, result, final cache, per-block records, per-fold memory snapshots)."""
    case = json.loads((CASES / name / "case.json").read_text())
    inputs = load_file(str(CASES / name / "inputs.safetensors"))
    kw = case["pipeline_config"]["model_kwargs"]
    cfg = strategy_config(strategy, noise="reference")
    assert (cfg.window, cfg.sink, cfg.shift) == (kw["local_attn_size"], kw["sink_size"], kw["timestep_shift"])
    caches, blocks, folds = [], [], []
    begin, close, evict = KVCache.begin_block, _BlockLoop.close, MemRope.evict

    def spy_begin(cache, start, frames):
        if start == cache.block_start:
            return begin(cache, start, frames)
        before = cache.filled
        begin(cache, start, frames)
        blocks.append({"start": start, "before": before, "after": cache.filled, "query": cache.query_base,
                       "evicted": before + frames > cache.policy.window})

    def spy_evict(strategy, cache, overflow):
        evict(strategy, cache, overflow)
        t, s = cache.tokens, cache.policy.sink
        folds.append([{n: buf[0, (s + i) * t].clone() for n, buf, i in
                       (("long_k", k, 0), ("short_k", k, 1), ("long_v", v, 0), ("short_v", v, 1))}
                      for k, v in zip(cache.k, cache.v)])

    def spy_close(loop):
        caches.append(loop.cache)
        close(loop)

    prompts = schedule_of(case, inputs["prompt_embeds"]) if schedule_of else inputs["prompt_embeds"][:1]
    b, c, t, h, w = case["latent_shape_bcthw"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(KVCache, "begin_block", spy_begin)
        mp.setattr(_BlockLoop, "close", spy_close)
        mp.setattr(MemRope, "evict", spy_evict)
        res = generate(model, prompts, t, (h, w), case["seeds"]["noise"], cfg)
    return case, res, caches[0], blocks, folds


def block_calls(name: str) -> list[dict]:
    """The trace's first call of every block."""
    calls = json.loads((CASES / name / "trace.json").read_text())["generator_calls"]
    return [c for i, c in enumerate(calls) if i == 0 or c["block"] != calls[i - 1]["block"]]


@pytest.fixture(scope="module")
def lora_model():
    state = load_file(str(GOLDEN / "wan_tiny_t2v_bare.safetensors"))
    path = CASES / "memrope_longlive_lora" / "lora.pt"
    factors, alpha = read_lora(path)
    merge_lora(state, match_lora(factors, state, path, alpha), 1.0)
    model = WanTransformer(golden_config())
    model.load_state_dict(state)
    return model.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def results(golden_model, lora_model):
    out = {name: run(name, golden_model, "infinity-rope", scene_schedule) for name in INF}
    out["memrope_selfforcing"] = run("memrope_selfforcing", golden_model, "memrope")
    out["memrope_selfforcing_6x10"] = run("memrope_selfforcing_6x10", golden_model, "memrope")
    out["memrope_longlive_lora"] = run("memrope_longlive_lora", lora_model, "memrope")
    return out


@pytest.mark.parametrize("name", INF + MEM)
def test_latents_match_the_published_code(name, results):
    ref = load_file(str(CASES / name / "outputs.safetensors"))["latents_bcthw"]
    latents = results[name][1].latents
    assert latents.shape == ref.shape
    assert rel_err(latents, ref) <= TOL


@pytest.mark.parametrize("name", INF)
def test_infinity_rope_final_cache_matches(name, results):
    """Slot 0 (the sink) is stored rotated at position 0 by the reference, raw here; every other slot raw."""
    _, _, cache, _, _ = results[name]
    ref = load_file(str(CASES / name / "kv_final.safetensors"))
    t, n = cache.tokens, cache.filled * cache.tokens
    sink_table = rope_table(torch.zeros(1, dtype=torch.long), *cache.grid_hw, cache.head_dim)
    for layer in range(len(cache.k)):
        k, v = cache.k[layer][:, :n].clone(), cache.v[layer][:, :n]
        k[:, :t] = apply_rope(k[:, :t], sink_table)
        assert k.shape == ref[f"layer{layer}.k"].shape
        assert rel_err(k, ref[f"layer{layer}.k"]) <= TOL
        assert rel_err(v, ref[f"layer{layer}.v"]) <= TOL


@pytest.mark.parametrize("name", INF + MEM)
def test_blocks_fill_evict_and_place_queries_like_the_reference(name, results):
    _, _, _, blocks, _ = results[name]
    calls = block_calls(name)
    assert len(blocks) == len(calls)
    for ours, theirs in zip(blocks, calls):
        assert ours["start"] == theirs["start_frame"]
        assert (ours["before"], ours["after"]) == (theirs["local_end_frames_before"], theirs["local_end_frames_after"])
        assert list(range(ours["query"], ours["query"] + 3)) == theirs["query_rope_positions"]
        assert ours["evicted"] == theirs.get("evicted_on_this_call", theirs.get("fold_on_this_call"))


@pytest.mark.parametrize("name", ["infinity_rope_flush", "infinity_rope_flush_early", "infinity_rope_flush_10x6"])
def test_infinity_rope_flushes_at_each_boundary_and_cuts_where_marked(name, results):
    case, res, _, _, _ = results[name]
    assert [s["block_start"] for s in res.switches] == [b["start_frame"] for b in case["boundaries"]]
    for ours, theirs in zip(res.switches, case["boundaries"]):
        assert ours["flush"]["kind"] == "flush" and theirs["kv_flush"]
        assert ours["flush"]["into_slots"] == [1, 2] and ours["flush"]["copied_slots"] == [4, 5]
        assert ours["flush"]["cut"] == theirs["rope_cut"]
    cut_blocks = {c["block"] for c in block_calls(name) if c["scene_cut"]}
    assert cut_blocks == {b["block"] for b in case["boundaries"] if b["rope_cut"]}


def test_infinity_rope_cut_block_keys_sit_at_45_after_the_cached_frames(results):
    """Reference trace: the cut block's keys are [sink, 1, 2, 45, 46, 47]; the next block is back to 0…5."""
    _, _, _, blocks, _ = results["infinity_rope_flush"]
    calls = {c["start_frame"]: c for c in block_calls("infinity_rope_flush")}
    for b in blocks:
        ours = list(range(b["after"] - 3)) + list(range(b["query"], b["query"] + 3))
        assert ours[1:] == calls[b["start"]]["key_rope_positions_by_slot"][1:]      # slot 0: the sink


@pytest.mark.parametrize("name", MEM)
def test_memrope_folds_at_the_reference_blocks_and_frames(name, results):
    case, _, cache, _, _ = results[name]
    assert [(f["block_start"], f["frames"]) for f in cache.strategy.folds] == \
        [(f["block_start_frame"], f["evicted_frames"]) for f in case["folds"]]


@pytest.mark.parametrize("name", MEM)
def test_memrope_memory_tokens_match_after_every_fold(name, results):
    case, _, cache, _, folds = results[name]
    ref = load_file(str(CASES / name / "memory_tokens.safetensors"))
    assert len(folds) == len(case["folds"])
    t, s = cache.tokens, cache.policy.sink
    for i, fold in enumerate(folds):
        for layer, memory in enumerate(fold):
            for key, value in memory.items():
                assert rel_err(value, ref[f"fold{i}.layer{layer}.{key}"]) <= MEMORY_TOL, (i, layer, key)
    for buf in (*cache.k, *cache.v):        # one vector repeated over each memory slot's tokens
        for slot in (s, s + 1):
            tokens = buf[0, slot * t:(slot + 1) * t]
            assert torch.equal(tokens, tokens[:1].expand_as(tokens))
