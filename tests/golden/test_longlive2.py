"""LongLive 2.0 (Wan2.2-TI2V-5B, NVlabs/LongLive main 7860ad9) reproduces: tests/data/golden_extra/longlive2_*
were made from the published code on CPU in float32 with a tiny random Wan2.2-style backbone and its
LoRA (longlive2_README.md says how). The backbone and LoRA are loaded through this pack's own loader (the
LoRA merged at load; the reference applies it unmerged: 2.3e-7 apart)."""
import json

import pytest
import torch
from safetensors.torch import load_file

from core.formats import load_backbone
from core.app.plan import sampling_config
from core.families.wan22_ti2v import DEFAULTS
from core.sampling.loop import generate
from core.sampling.prompts import SCENE_CUT_PREFIX, PromptSchedule, Segment

from paths import DATA

CASES = DATA / "golden_extra"
MODEL = CASES / "longlive2_model"
NAMES = sorted(p.parent.name for p in CASES.glob("longlive2_*/case.json"))
TOL = 1e-4        # the cases' tolerance hint (rel. L2 on the latents)


def rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.fixture(scope="module")
def model():
    return load_backbone(MODEL / "generator.safetensors", lora=MODEL / "lora.pt", num_heads=2).model


def case_schedule(case: dict, embeds: torch.Tensor) -> PromptSchedule:
    """One segment per shot: a block whose prompt carries the scene-cut prefix begins a cut segment, its row
    is the segment's cut_embeds; the plain prompt's row conditions the rest of the shot."""
    rows, nf = case["prompt_rows"], case["effective"]["num_frame_per_block"]
    prompts = case["block_prompts"]
    segments = []
    for block, text in enumerate(prompts):
        if block and not text.startswith(SCENE_CUT_PREFIX) and text == prompts[block - 1]:
            continue
        cut = text.startswith(SCENE_CUT_PREFIX)
        plain = text[len(SCENE_CUT_PREFIX):] if cut else text
        row = rows[plain] if plain in rows else rows[text]
        segments.append(Segment(block * nf, embeds[row:row + 1], f"block {block}", cut,
                                embeds[rows[text]:rows[text] + 1] if cut else None))
    return PromptSchedule(tuple(segments))


def run_case(name: str, model):
    case = json.loads((CASES / name / "case.json").read_text())
    inputs = load_file(str(CASES / name / "inputs.safetensors"))
    eff = case["effective"]
    # the cases at other sizes also move the window and sink off the published ones
    moved = {} if (eff["local_attn_size"], eff["sink_size"]) == (DEFAULTS.window, DEFAULTS.sink) else \
        {"window": eff["local_attn_size"], "sink": eff["sink_size"]}
    cfg = sampling_config(DEFAULTS, shot_sink=eff["multi_shot_sink"], noise="reference", **moved)
    assert (cfg.frames_per_block, cfg.window, cfg.sink, cfg.sampling_steps, cfg.shift, cfg.shots.rope_offset) == \
        (eff["num_frame_per_block"], eff["local_attn_size"], eff["sink_size"], eff["sampling_steps"],
         eff["timestep_shift"], eff["multi_shot_rope_offset"])
    b, c, t, h, w = case["latent_shape_bcthw"]
    prefix = inputs.get("initial_latent_bcthw")
    res = generate(model, case_schedule(case, inputs["prompt_embeds"]), t, (h, w), case["seeds"]["noise"], cfg,
                   start=prefix)
    return case, res, inputs


@pytest.fixture(scope="module")
def results(model):
    return {name: run_case(name, model) for name in NAMES}


def test_all_longlive2_cases_are_present():
    """Two frame sizes per kind at least (a bug can hide at one size: 6×8, 4×8, 8×12 and 10×6 latents)."""
    assert NAMES == ["longlive2_i2v", "longlive2_i2v_8x12", "longlive2_multishot_10x6", "longlive2_multishot_nosink",
                     "longlive2_multishot_sink", "longlive2_t2v", "longlive2_t2v_10x6_win24_sink4",
                     "longlive2_t2v_8x12"]
    sizes = {tuple(json.loads((CASES / n / "case.json").read_text())["latent_shape_bcthw"][3:]) for n in NAMES}
    assert sizes == {(6, 8), (4, 8), (8, 12), (10, 6)}


def test_the_sampler_feeds_the_published_integer_timesteps():
    from core.sampling.unipc import UniPCSolver
    case = json.loads((CASES / "longlive2_t2v" / "case.json").read_text())
    solver = UniPCSolver(4, 5.0)
    assert solver.timesteps.tolist() == case["sampler"]["timesteps_fed"]
    assert solver.sigmas.tolist() == case["sampler"]["sigmas"]


@pytest.mark.parametrize("name", NAMES)
def test_latents_match_longlive_2(name, results):
    case, res, _ = results[name]
    ref = load_file(str(CASES / name / "outputs.safetensors"))["latents_bcthw"]
    assert res.latents.shape == ref.shape
    err = rel_err(res.latents, ref)
    print(f"{name}: rel L2 {err:.3g}")
    assert err <= TOL


@pytest.mark.parametrize("name", NAMES)
def test_each_block_matches(name, results):
    """Per block (8 frames): no block is off even where the whole video's error would hide it."""
    case, res, _ = results[name]
    ref = load_file(str(CASES / name / "outputs.safetensors"))["latents_bcthw"]
    nf = case["effective"]["num_frame_per_block"]
    for s in range(0, ref.shape[2], nf):
        assert rel_err(res.latents[:, :, s:s + nf], ref[:, :, s:s + nf]) <= TOL, s


def test_image_to_video_keeps_the_clean_first_frame_exactly(results):
    _, res, inputs = results["longlive2_i2v"]
    assert torch.equal(res.latents[:, :, :1], inputs["initial_latent_bcthw"])


def test_cuts_move_the_rope_offset_and_are_recorded(results):
    case, res, _ = results["longlive2_multishot_sink"]
    cuts = [s for s in res.switches if s.get("cut")]
    nf = case["effective"]["num_frame_per_block"]
    assert [s["block_start"] // nf for s in cuts] == case["scene_cuts_at_blocks"]
    assert [s["rope_offset"] for s in cuts] == [8.0, 16.0]


@pytest.mark.parametrize("name", ["longlive2_multishot_sink", "longlive2_multishot_nosink", "longlive2_t2v",
                                  "longlive2_t2v_8x12", "longlive2_t2v_10x6_win24_sink4", "longlive2_i2v_8x12",
                                  "longlive2_multishot_10x6"])
def test_evictions_and_shot_sink_follow_the_reference_trace(name, model):
    """Per eviction: the block, the frames kept in front (sink, or sink + shot sink) and how many left;
    per block: where the shot sink sits (the trace's pins, then sliding 24 → 16 → 8 with each roll)."""
    from core.context.kv_cache import KVCache
    trace = json.loads((CASES / name / "trace.json").read_text())
    seen, pinned = [], []
    original_evict, original_begin = KVCache.evict_oldest, KVCache.begin_block

    def evict(cache, overflow):
        seen.append((cache.block_start // 8 + 1, cache._kept(), overflow))
        original_evict(cache, overflow)

    def begin(cache, start, frames):
        original_begin(cache, start, frames)
        pinned.append(cache.pinned[0] if cache.pinned else None)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(KVCache, "evict_oldest", evict)
        mp.setattr(KVCache, "begin_block", begin)
        run_case(name, model)
    want = [(e["block"], e["effective_sink_frames"], e["evicted_frames"]) for e in trace["evictions"]]
    assert seen == want
    if name == "longlive2_multishot_sink":
        pins = {p["block"]: p["pinned_slot"] for p in trace["pins"]}
        assert pins == {1: 8, 4: 24}
        assert pinned == [None, None, 8, 8, 8, 16, 8, 8]   # seen at each block's start, after its roll


@pytest.mark.parametrize("name", [n for n in NAMES if "attended_frames_first_call" in
                                  json.loads((CASES / n / "case.json").read_text())])
def test_each_block_attends_the_frames_the_reference_attends(name, model):
    """The number of frames each block's first call attends (sink, shot sink and window), as the reference's."""
    from core.context.kv_cache import KVCache
    attended, original = [], KVCache._prepare_positions

    def positions(cache):
        original(cache)
        (s0, s1), (l0, l1) = cache._sink, cache._local
        attended.append(s1 - s0 + cache._retrieved + l1 - l0)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(KVCache, "_prepare_positions", positions)
        case, _, _ = run_case(name, model)
    assert attended == case["attended_frames_first_call"]


def test_retrieval_on_longlive_2_leaves_the_published_window_where_its_reserved_slots_begin(model):
    """``rag`` is LongLive-RAG's regime, not LongLive 2.0's sliding window: of the 32-frame window it attends the
    sink (8), up to K = 6 retrieved frames and the newest 18 — so it equals the reference while a block sees at
    most 8 + 18 = 26 frames (blocks 0–2) and leaves it at block 3, whatever the frame size (this is what a run
    with the CLI's default strategy shows; ``--strategy native`` is the published method)."""
    for name in ("longlive2_t2v", "longlive2_t2v_8x12"):
        case = json.loads((CASES / name / "case.json").read_text())
        inputs = load_file(str(CASES / name / "inputs.safetensors"))
        b, c, t, h, w = case["latent_shape_bcthw"]
        cfg = sampling_config(DEFAULTS, strategy="rag", noise="reference")
        assert (cfg.window, cfg.sink, cfg.retrieval.top_k) == (32, 8, 6)
        res = generate(model, case_schedule(case, inputs["prompt_embeds"]), t, (h, w), case["seeds"]["noise"], cfg)
        ref = load_file(str(CASES / name / "outputs.safetensors"))["latents_bcthw"]
        errs = [rel_err(res.latents[:, :, s:s + 8], ref[:, :, s:s + 8]) for s in range(0, t, 8)]
        assert max(errs[:3]) <= TOL and min(errs[3:]) > 1e-3, (name, errs)
