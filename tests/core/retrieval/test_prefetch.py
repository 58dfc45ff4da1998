"""Reading the next block's retrieved frames during the context pass changes nothing but when they are read."""
import threading

import pytest
import torch

import core.retrieval.prefetch as prefetch_mod
from core.retrieval.config import PoolConfig, RetrievalConfig
from core.retrieval.encoder import load_encoder
from core.sampling.loop import generate
from core.app.plan import sampling_config

from paths import GOLDEN


@pytest.fixture(scope="module")
def encoder():
    return load_encoder(GOLDEN / "ae.pt")


class Spy:
    """Counts reads served ahead and the threads the pool's gather ran on."""

    def __init__(self, monkeypatch):
        self.hits, self.threads = 0, set()
        take, read = prefetch_mod.Prefetcher.take, prefetch_mod.Prefetcher._read
        spy = self

        def counting_take(self, start):
            got = take(self, start)
            spy.hits += got is not None
            return got

        def recording_read(self, indices):
            spy.threads.add(threading.current_thread().name)
            return read(self, indices)

        monkeypatch.setattr(prefetch_mod.Prefetcher, "take", counting_take)
        monkeypatch.setattr(prefetch_mod.Prefetcher, "_read", recording_read)


def run(model, inputs, encoder, pool, prefetch, recent_exclude=5, frames=48):
    cfg = sampling_config(retrieval=RetrievalConfig(recent_exclude=recent_exclude, pool=pool, prefetch="on" if prefetch else "off"))
    return generate(model, inputs["prompt_embeds"], frames, (8, 12), 42, cfg, encoder=encoder)


@pytest.mark.parametrize("location", ["host", "disk", "spill"])
def test_prefetched_reads_give_bit_identical_output(golden_model, golden_inputs, encoder, tmp_path, monkeypatch,
                                                    location):
    frame = 2 * golden_model.cfg.num_layers * 24 * golden_model.cfg.dim * 4
    pool = (PoolConfig("host", 4 * frame / 2**20, directory=str(tmp_path)) if location == "spill"
            else PoolConfig(location, directory=str(tmp_path)))
    serial = run(golden_model, golden_inputs, encoder, pool, prefetch=False)
    spy = Spy(monkeypatch)
    ahead = run(golden_model, golden_inputs, encoder, pool, prefetch=True)
    assert torch.equal(ahead.latents, serial.latents)
    assert ahead.retrieval_log == serial.retrieval_log and len(serial.retrieval_log) > 5
    # every retrieving block was read ahead (during the previous block's context pass), on the reader thread
    assert spy.hits == len(serial.retrieval_log)
    assert spy.threads and all(t.startswith("history-pool-reader") for t in spy.threads)
    if location != "host":
        assert ahead.pool_usage["disk"]["frames"] > 0


@pytest.mark.parametrize("recent_exclude", [0, 2])
def test_read_ahead_is_exact_when_the_newest_frames_are_eligible(golden_model, golden_inputs, encoder, monkeypatch,
                                                                 recent_exclude):
    """Fewer excluded frames than a block evicts: the choice still sees the pool as the block's start found it."""
    spy = Spy(monkeypatch)
    ahead = run(golden_model, golden_inputs, encoder, PoolConfig(), prefetch=True, recent_exclude=recent_exclude)
    serial = run(golden_model, golden_inputs, encoder, PoolConfig(), prefetch=False, recent_exclude=recent_exclude)
    assert spy.hits == len(serial.retrieval_log)
    assert torch.equal(ahead.latents, serial.latents) and ahead.retrieval_log == serial.retrieval_log


def test_a_failed_read_surfaces_at_the_block_that_needed_it(golden_model, golden_inputs, encoder, monkeypatch):
    def broken(self, indices):
        raise OSError("disk gone")
    monkeypatch.setattr(prefetch_mod.Prefetcher, "_read", broken)
    with pytest.raises(OSError, match="disk gone"):
        run(golden_model, golden_inputs, encoder, PoolConfig(), prefetch=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (run by benchmarks/gpu_check.py)")
@pytest.mark.parametrize("location", ["host", "disk"])
def test_cuda_side_stream_reads_give_the_serial_output(golden_model, golden_inputs, tmp_path, location):
    model = golden_model.to("cuda")
    try:
        enc = load_encoder(GOLDEN / "ae.pt", "cuda")
        pool = PoolConfig(location, directory=str(tmp_path))
        serial = run(model, golden_inputs, enc, pool, prefetch=False)
        ahead = run(model, golden_inputs, enc, pool, prefetch=True)
        assert torch.equal(ahead.latents, serial.latents) and ahead.retrieval_log == serial.retrieval_log
    finally:
        golden_model.to("cpu")
