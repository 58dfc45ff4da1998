"""LongLive 2.0's guidance (a negative prompt over a second KV cache, guidance 3) and shot_clean_recache reproduce:
tests/data/golden_extra/guidance_ll2_* and cleanrecache_ll2_* were made from the published code (NVlabs/LongLive
7860ad9) on CPU in float32 with the tiny backbone and LoRA of longlive2_model (longlive2_guidance_README.md)."""
import json

import pytest
import torch
from safetensors.torch import load_file

from core.app.plan import sampling_config
from core.families.wan22_ti2v import DEFAULTS
from core.formats import load_backbone
from core.sampling.loop import generate
from core.sampling.prompts import SCENE_CUT_PREFIX, PromptSchedule, Segment

from paths import DATA

CASES = DATA / "golden_extra"
MODEL = CASES / "longlive2_model"
NAMES = sorted(p.parent.name for p in [*CASES.glob("guidance_ll2_*/case.json"), *CASES.glob("cleanrecache_ll2_*/case.json")])
TOL = 1e-5        # rel. L2 on the latents


def rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.fixture(scope="module")
def model():
    return load_backbone(MODEL / "generator.safetensors", lora=MODEL / "lora.pt", num_heads=2).model


def case_schedule(case: dict, inputs: dict) -> PromptSchedule:
    """One segment per shot (a prompt with the scene-cut prefix begins a cut segment conditioned on that row for
    its first block), the negative prompt's row when the case is guided."""
    rows, nf, embeds = case["prompt_rows"], case["effective"]["num_frame_per_block"], inputs["prompt_embeds"]
    prompts, segments = case["block_prompts"], []
    for block, text in enumerate(prompts):
        if block and not text.startswith(SCENE_CUT_PREFIX) and text == prompts[block - 1]:
            continue
        cut = text.startswith(SCENE_CUT_PREFIX)
        plain = text[len(SCENE_CUT_PREFIX):] if cut else text
        row = rows[plain] if plain in rows else rows[text]
        segments.append(Segment(block * nf, embeds[row:row + 1], f"block {block}", cut,
                                embeds[rows[text]:rows[text] + 1] if cut else None))
    return PromptSchedule(tuple(segments), inputs.get("negative_prompt_embeds"))


def case_config(case: dict, **changes):
    eff = case["effective"]
    asked = dict(noise="reference", shot_sink=eff["multi_shot_sink"], guidance_scale=eff["guidance_scale"],
                 shot_clean_recache=eff["shot_clean_recache"])
    return sampling_config(DEFAULTS, **{**asked, **changes})


def run_case(name: str, model):
    case = json.loads((CASES / name / "case.json").read_text())
    inputs = load_file(str(CASES / name / "inputs.safetensors"))
    _, _, t, h, w = case["latent_shape_bcthw"]
    res = generate(model, case_schedule(case, inputs), t, (h, w), case["seeds"]["noise"], case_config(case))
    return case, res


@pytest.fixture(scope="module")
def results(model):
    return {name: run_case(name, model) for name in NAMES}


def test_the_cases_cover_guidance_and_clean_recache_at_several_sizes():
    cases = [json.loads((CASES / n / "case.json").read_text()) for n in NAMES]
    guided = {tuple(c["latent_shape_bcthw"][2:]) for c in cases if c["effective"]["guidance_scale"] != 1}
    clean = {tuple(c["latent_shape_bcthw"][2:]) for c in cases if c["effective"]["shot_clean_recache"]}
    assert len(guided) >= 2 and len(clean) >= 2
    assert all(c["effective"]["guidance_scale"] in (1.0, 3.0) for c in cases)


@pytest.mark.parametrize("name", NAMES)
def test_latents_match_longlive_2(name, results):
    case, res = results[name]
    ref = load_file(str(CASES / name / "outputs.safetensors"))["latents_bcthw"]
    nf = case["effective"]["num_frame_per_block"]
    errs = [rel_err(res.latents[:, :, s:s + nf], ref[:, :, s:s + nf]) for s in range(0, ref.shape[2], nf)]
    assert max(errs) <= TOL, errs


@pytest.mark.parametrize("name", NAMES)
def test_both_caches_evict_and_clear_as_the_reference_does(name, model):
    """Every eviction (block, frames kept in front, frames evicted) and every clean re-cache, per cache."""
    from core.context.kv_cache import KVCache
    trace = json.loads((CASES / name / "trace.json").read_text())
    evictions, cleans = [], []
    original_evict, original_clear = KVCache.evict_oldest, KVCache.clear_to_sink

    def evict(cache, overflow):
        evictions.append((cache.block_start // 8 + 1, cache._kept(), overflow))
        original_evict(cache, overflow)

    def clear(cache):
        cleans.append((cache.block_start // 8, cache.block_start))
        original_clear(cache)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(KVCache, "evict_oldest", evict)
        mp.setattr(KVCache, "clear_to_sink", clear)
        run_case(name, model)
    assert sorted(evictions) == sorted((e["block"], e["effective_sink_frames"], e["evicted_frames"])
                                       for e in trace["evictions"])
    assert sorted(cleans) == sorted((c["block"], c["frame"]) for c in trace["clean_recaches"])


@pytest.mark.parametrize("name", NAMES)
def test_each_pass_attends_the_frames_the_reference_attends(name, model):
    """Frames attended by each block's first denoising call and by its context pass (after a clean re-cache: the
    sink and the block alone), in the prompt's cache."""
    from core.context.kv_cache import KVCache
    seen, original = [], KVCache._prepare_positions

    def positions(cache):
        original(cache)
        (s0, s1), (l0, l1) = cache._sink, cache._local
        seen.append((id(cache), cache.block_start, s1 - s0 + l1 - l0))

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(KVCache, "_prepare_positions", positions)
        case, _ = run_case(name, model)
    first = seen[0][0]            # the prompt's cache is built first
    mine = [(start, n) for cache, start, n in seen if cache == first]
    starts = sorted({s for s, _ in mine})
    at_first = [next(n for s, n in mine if s == start) for start in starts]
    at_context = [[n for s, n in mine if s == start][-1] for start in starts]
    assert at_first == case["attended_frames_first_call"]
    assert at_context == case["attended_frames_context_pass"]


def test_guidance_moves_the_video_and_guidance_1_is_the_unguided_path(model, results):
    """Guidance 3 differs from the plain run; guidance 1 with a negative prompt given is bit for bit the run
    without one (the published default path)."""
    case, guided = results["guidance_ll2_t2v_6x8"]
    inputs = load_file(str(CASES / "guidance_ll2_t2v_6x8" / "inputs.safetensors"))
    _, _, t, h, w = case["latent_shape_bcthw"]
    schedule = case_schedule(case, inputs)
    plain = generate(model, schedule.segments[0].embeds, t, (h, w), 60, case_config(case, guidance_scale=1.0))
    one = generate(model, schedule, t, (h, w), 60, case_config(case, guidance_scale=1.0))
    assert torch.equal(plain.latents, one.latents)
    assert rel_err(plain.latents, guided.latents) > 1e-2
    assert guided.cache_bytes == 2 * plain.cache_bytes


def test_a_clean_recache_changes_only_what_follows_the_first_cleared_cut(model, results):
    """Without shot_clean_recache the case leaves the reference from the block after the first cut that clears
    something (block 5 here: the cut at block 1 sits right behind the sink, nothing to clear); before, bit for bit."""
    name = "cleanrecache_ll2_multishot_8x12"
    case, clean = results[name]
    inputs = load_file(str(CASES / name / "inputs.safetensors"))
    _, _, t, h, w = case["latent_shape_bcthw"]
    kept = generate(model, case_schedule(case, inputs), t, (h, w), case["seeds"]["noise"],
                    case_config(case, shot_clean_recache=False))
    assert torch.equal(kept.latents[:, :, :48], clean.latents[:, :, :48])
    assert rel_err(kept.latents[:, :, 48:], clean.latents[:, :, 48:]) > 1e-3
