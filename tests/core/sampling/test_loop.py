import pytest
import torch

from core.retrieval.config import PoolConfig, RetrievalConfig
from core.sampling.config import SamplingConfig
from core.sampling.loop import generate
from core.app.plan import sampling_config

from factory import tiny_model

EMB = torch.randn(1, 7, 32, generator=torch.Generator().manual_seed(5))


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def config(mode="rag", top_k=6, **kw) -> SamplingConfig:
    return sampling_config(retrieval=RetrievalConfig(top_k) if mode == "rag" else None, **kw)


def run(model, mode="rag", seed=3, frames=24, **kw):
    return generate(model, EMB, frames, (4, 6), seed, config(mode, **kw))


def test_same_seed_gives_the_same_video(model):
    a, b = run(model), run(model)
    assert torch.equal(a.latents, b.latents)
    assert a.retrieval_log == b.retrieval_log


def test_different_seeds_give_different_videos(model):
    a, b = run(model, seed=1).latents, run(model, seed=2).latents
    # every block differs, not just the first: each block's noise comes from the seed
    for start in range(0, 24, 3):
        assert (a[:, :, start:start + 3] - b[:, :, start:start + 3]).abs().mean() > 0.05


def test_output_layout_is_b_c_t_h_w(model):
    assert run(model).latents.shape == (1, 16, 24, 4, 6)


def test_native_and_retrieval_agree_while_the_local_budget_holds_every_frame(model):
    # blocks 0-1 (frames 0-5): both attend to every frame so far at the same positions (slot = frame index);
    # from block 2 on retrieval keeps only window − sink − K = 5 local frames besides the sink
    nat, rag = run(model, "native"), run(model, "rag")
    assert torch.allclose(nat.latents[:, :, :6], rag.latents[:, :, :6], atol=1e-5)
    later = (nat.latents[:, :, 6:] - rag.latents[:, :, 6:]).abs().amax(dim=(0, 1, 3, 4))
    assert (later > 1e-4).all()
    assert nat.retrieval_log == [] and len(rag.retrieval_log) > 0


def test_retrieval_starts_once_a_frame_is_older_than_the_recency_guard(model):
    log = run(model).retrieval_log
    assert log[0]["query_frame"] == 18 and log[0]["pool_indices"] == [0]


def test_callback_sees_every_block_and_can_stop_the_run(model):
    seen = []

    class Stop(Exception):
        pass

    def cb(update):
        seen.append(update.block)
        if update.block == 2:
            raise Stop

    with pytest.raises(Stop):
        generate(model, EMB, 24, (4, 6), 0, sampling_config(strategy="rag"), callback=cb)
    assert seen == [0, 1, 2]


def test_bfloat16_runs_and_stays_close_to_float32(model):
    ref = run(model, frames=12).latents
    bf = generate(tiny_model().to(torch.bfloat16), EMB, 12, (4, 6), 3, sampling_config(strategy="rag")).latents
    assert bf.dtype == torch.float32 and torch.isfinite(bf).all()
    assert ((bf - ref).norm() / ref.norm()) < 0.1


def test_batch_of_two_prompts_retrieves_per_sample(model):
    emb = torch.randn(2, 7, 32, generator=torch.Generator().manual_seed(9))
    res = generate(model, emb, 27, (4, 6), 0, sampling_config(strategy="rag"))
    assert res.latents.shape[0] == 2
    assert all(len(r["pool_indices"]) == 2 for r in res.retrieval_log)


def test_bad_frame_count_fails_before_generation(model):
    with pytest.raises(ValueError, match="multiple of the block size 3"):
        run(model, frames=10)


@pytest.mark.parametrize("build, message", [
    (lambda: config(window=8), r"window \(local_attn_size\) ≥ 10"),
    (lambda: config(top_k=0), "top_k 0 must be ≥ 1"),
    (lambda: config(steps=()), "at least one timestep"),
    (lambda: RetrievalConfig(pool=PoolConfig(location="cloud")), "pool location 'cloud'"),
    (lambda: PoolConfig(storage="zip"), "pool storage 'zip'"),
    (lambda: PoolConfig(location="disk", budget_mb=5), "budget for the disk tier"),
])
def test_bad_settings_are_refused_when_the_config_is_built(build, message):
    with pytest.raises(ValueError, match=message):
        build()


@pytest.mark.parametrize("hw, message", [((5, 6), "patch size"), ((0, 0), "must be positive")])
def test_bad_latent_size_is_refused(model, hw, message):
    with pytest.raises(ValueError, match=message):
        generate(model, EMB, 3, hw, 0, sampling_config())


def test_the_pool_is_built_and_closed_by_generate_and_reported(model, tmp_path):
    cfg = sampling_config(retrieval=RetrievalConfig(pool=PoolConfig("host", budget_mb=0, directory=str(tmp_path))))
    res = generate(model, EMB, 24, (4, 6), 3, cfg)
    assert res.pool_bytes_per_frame > 0 and res.pool_peak_bytes >= res.pool_bytes_per_frame
    assert res.pool_usage["disk"]["frames"] == 24 - 12 and res.pool_usage["host"]["frames"] == 0
    assert list(tmp_path.iterdir()) == []       # closed: the disk tier's files are gone
    assert torch.equal(res.latents, run(model).latents)   # where the pool lives changes nothing


def test_timings_are_detailed_only_when_asked(model):
    plain = generate(model, EMB, 6, (4, 6), 0, sampling_config(strategy="rag")).timings
    detailed = generate(model, EMB, 6, (4, 6), 0, sampling_config(strategy="rag"), timings=True).timings
    assert set(plain[0]) == {"block", "total_s"}
    assert set(detailed[0]) == {"block", "retrieval_s", "denoise_s", "context_s", "total_s"}


class _Stop(Exception):
    pass


def test_the_cancel_hook_runs_before_every_model_call_and_stops_inside_a_block(model, monkeypatch):
    calls, hooks = [], []
    for name in ("forward", "write_cache"):                 # the denoising steps' calls, the context pass's
        method = getattr(model, name)
        monkeypatch.setattr(model, name, lambda *a, _m=method, **k: calls.append(len(hooks)) or _m(*a, **k))
    run_all = generate(model, EMB, 24, (4, 6), 3, config(), cancel=lambda: hooks.append(1))
    assert len(hooks) == len(calls) > 0 and calls == list(range(1, len(hooks) + 1))   # each call right after a hook
    calls.clear()

    def cancel_in_block_two():
        if len(calls) == per_block + 1:          # after the first model call of the second block
            raise _Stop
    per_block = len(hooks) // len(run_all.timings)
    updates = []
    with pytest.raises(_Stop):
        generate(model, EMB, 24, (4, 6), 3, config(), cancel=cancel_in_block_two, callback=updates.append)
    assert len(calls) == per_block + 1 and len(updates) == 1          # stopped before the block's second call


def test_a_retrieval_run_that_retrieves_nothing_says_so_once_and_why(model):
    short = run(model, frames=12)                 # the window holds the whole video: nothing ever leaves it
    assert short.retrieval_log == [] and len(short.notes) == 1
    assert short.notes[0].startswith("retrieval: no block retrieved a past frame; no frame left the KV cache window")
    assert run(model, frames=48).notes == []                         # a run that retrieves has nothing to say
    assert run(model, mode="native", frames=12).notes == []          # nor does one that never retrieves
