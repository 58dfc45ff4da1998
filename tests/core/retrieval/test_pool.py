"""History pool tiers, budgets and storage modes: end to end on the golden case, and the pool alone."""
import gc
import os
from pathlib import Path

import pytest
import torch

from core.retrieval.config import PoolConfig, RetrievalConfig
from core.retrieval.encoder import load_encoder
from core.retrieval.pool import HistoryPool
from core.sampling.loop import generate
from core.app.plan import sampling_config

from paths import GOLDEN


@pytest.fixture(scope="module")
def encoder():
    return load_encoder(GOLDEN / "ae.pt")


def run(model, inputs, encoder, pool=None, frames=48, callback=None):
    cfg = sampling_config(retrieval=RetrievalConfig(pool=pool or PoolConfig()))
    return generate(model, inputs["prompt_embeds"], frames, (8, 12), 42, cfg, encoder=encoder, callback=callback)


@pytest.fixture(scope="module")
def reference(golden_model, golden_inputs, encoder):
    return run(golden_model, golden_inputs, encoder)   # host RAM, the auto budget: everything fits


def frame_bytes(model):
    cfg = model.cfg
    return 2 * cfg.num_layers * 24 * cfg.dim * 4   # K and V, 24 tokens, float32


def files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


@pytest.fixture(scope="module")
def spill(golden_model, golden_inputs, encoder, tmp_path_factory):
    """A run whose host tier holds 5 frames (+100 bytes), the rest on disk; files counted after every block."""
    folder = tmp_path_factory.mktemp("pool")
    budget = 5 * frame_bytes(golden_model) + 100
    counts = []
    res = run(golden_model, golden_inputs, encoder, PoolConfig("host", budget / 2**20, directory=str(folder)),
              callback=lambda update: counts.append(len(files(folder))))
    return res, budget, counts, folder


@pytest.mark.parametrize("location", ["device", "disk", "spill"])
def test_lossless_tiers_give_bit_identical_latents(golden_model, golden_inputs, encoder, reference, spill, tmp_path,
                                                   location):
    if location == "spill":
        res = spill[0]
    else:
        res = run(golden_model, golden_inputs, encoder, PoolConfig(location, directory=str(tmp_path)))
    assert torch.equal(res.latents, reference.latents)
    assert res.retrieval_log == reference.retrieval_log


def test_budget_is_respected_and_frames_spill_to_the_next_tier(golden_model, spill):
    res, budget, _, _ = spill
    use = res.pool_usage
    assert use["host"]["bytes"] <= budget and use["host"]["frames"] == 5
    assert use["disk"]["frames"] > 0 and use["disk"]["bytes"] == use["disk"]["frames"] * frame_bytes(golden_model)
    assert res.pool_bytes_per_frame == frame_bytes(golden_model)


def test_the_disk_tier_is_one_file_during_the_run_and_none_after(spill):
    _, _, counts, folder = spill
    assert max(counts) == 1 and counts[-1] == 1
    assert files(folder) == []


def test_an_interrupted_run_leaves_no_files(golden_model, golden_inputs, encoder, tmp_path):
    def stop(update):
        if update.block == 8:
            assert len(files(tmp_path)) == 1
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        run(golden_model, golden_inputs, encoder, PoolConfig("disk", directory=str(tmp_path)), callback=stop)
    assert files(tmp_path) == []


@pytest.mark.parametrize("location, budget, kinds", [
    ("device", 10, ["device", "host", "disk"]), ("host", None, ["host", "disk"]), ("disk", None, ["disk"])])
def test_tier_order_follows_the_chosen_location(location, budget, kinds):
    use = HistoryPool(PoolConfig(location, budget)).usage()
    assert list(use) == kinds
    assert use[location]["budget"] == (None if budget is None else budget * 2**20)


def test_the_auto_budget_is_half_of_the_ram_the_rest_of_the_run_leaves(monkeypatch):
    from core.retrieval import pool as pool_mod
    monkeypatch.setattr(pool_mod, "host_available", lambda: 10 * 2**20)
    assert HistoryPool(PoolConfig(), reserved={"host": 4 * 2**20}).usage()["host"]["budget"] == 3 * 2**20
    assert HistoryPool(PoolConfig(budget_mb=None)).usage()["host"]["budget"] is None      # unlimited when asked
    use = HistoryPool(PoolConfig("device", 1)).usage()               # a RAM tier after the GPU: auto as well
    assert (use["device"]["budget"], use["host"]["budget"]) == (2**20, 5 * 2**20)
    monkeypatch.setattr(pool_mod, "host_available", lambda: 2**20)
    assert HistoryPool(PoolConfig(), reserved={"host": 4 * 2**20}).usage()["host"]["budget"] == 0


def test_a_pool_whose_ram_is_taken_spills_everything_to_disk_with_the_same_video(golden_model, golden_inputs, encoder,
                                                                                 reference, tmp_path, monkeypatch):
    from core.retrieval import pool as pool_mod
    monkeypatch.setattr(pool_mod, "host_available", lambda: 0)
    res = run(golden_model, golden_inputs, encoder, PoolConfig(directory=str(tmp_path)))
    assert res.pool_usage["host"]["frames"] == 0
    assert res.pool_usage["disk"]["frames"] == reference.pool_usage["host"]["frames"] > 0
    assert torch.equal(res.latents, reference.latents)


@pytest.mark.parametrize("budget, words", [("lots", "pool budget 'lots' is unknown"), (-1, "must be ≥ 0")])
def test_a_pool_budget_that_is_no_number_nor_auto_is_refused(budget, words):
    with pytest.raises(ValueError, match=words):
        PoolConfig(budget_mb=budget)
    assert PoolConfig("disk").budget_mb == "auto"                   # the default is fine on disk, a number is not
    with pytest.raises(ValueError, match="disk"):
        PoolConfig("disk", 100)


def test_unknown_location_and_storage_are_refused():
    with pytest.raises(ValueError, match="pool location"):
        PoolConfig(location="cloud")
    with pytest.raises(ValueError, match="pool storage"):
        PoolConfig(storage="zip")


def relative(a, b):
    return ((a - b).norm() / b.norm()).item()


def test_half_precision_storage_halves_the_bytes_and_stays_close(golden_model, golden_inputs, encoder, reference):
    res = run(golden_model, golden_inputs, encoder, PoolConfig(storage="kv-half"))
    assert res.pool_bytes_per_frame == frame_bytes(golden_model) // 2
    assert relative(res.latents, reference.latents) < 0.05


def test_latent_storage_recomputes_kv_and_runs_end_to_end(golden_model, golden_inputs, encoder, reference):
    res = run(golden_model, golden_inputs, encoder, PoolConfig(storage="latent"))
    assert res.pool_bytes_per_frame == 16 * 8 * 12 * 4
    assert torch.isfinite(res.latents).all()
    # identical until the first retrieval (block at frame 18), approximate afterwards
    assert torch.equal(res.latents[:, :, :18], reference.latents[:, :, :18])
    assert 0 < relative(res.latents, reference.latents) < 0.5


# ---------------------------------------------------------------------------------------------
# The pool alone: small random frames, batch of two, 2 layers × 4 tokens × 2 heads × 8.

def random_frames(count, dtype=torch.float32, seed=0):
    """count frames of (k, v) each [layers, B, tokens, heads, d] and latents [B, C, H, W]."""
    g = torch.Generator().manual_seed(seed)
    kv = [(torch.randn(2, 2, 4, 2, 8, generator=g).to(dtype), torch.randn(2, 2, 4, 2, 8, generator=g).to(dtype))
          for _ in range(count)]
    return kv, [torch.randn(2, 3, 4, 4, generator=g).to(dtype) for _ in range(count)]


def filled(config, kv, latents):
    pool = HistoryPool(config, recompute=lambda lat: (lat, lat))   # latent storage: gather returns the latents
    for (k, v), lat in zip(kv, latents):
        pool.append(list(k), list(v), latent=lat)
    return pool


INDICES = torch.tensor([[9, 0, 4, 2], [1, 3, 8, 0]])   # per sample; host holds 0-2, disk 3-9


def host_then_disk(tmp_path, kv, latents, storage="kv"):
    """A pool whose host tier holds 3 frames, the rest on disk."""
    probe = filled(PoolConfig(storage=storage), kv[:1], latents[:1])
    frame = probe.bytes_per_frame
    probe.close()
    return PoolConfig("host", 3 * frame / 2**20, storage, str(tmp_path))


def test_gather_over_host_and_disk_returns_the_stored_frames(tmp_path):
    kv, lat = random_frames(10)
    pool = filled(host_then_disk(tmp_path, kv, lat), kv, lat)
    assert [u["frames"] for u in pool.usage().values()] == [3, 7]
    k, v = pool.gather(INDICES, torch.device("cpu"), torch.float32)
    assert k.shape == v.shape == (2, 2, 4 * 4, 2, 8)            # [layers, B, n·tokens, heads, d]
    for b, row in enumerate(INDICES.tolist()):
        for j, i in enumerate(row):
            assert torch.equal(k[:, b, 4 * j:4 * j + 4], kv[i][0][:, b])
            assert torch.equal(v[:, b, 4 * j:4 * j + 4], kv[i][1][:, b])
    pool.close()


@pytest.mark.parametrize("storage, dtype", [("kv-half", torch.float32), ("kv-half", torch.bfloat16),
                                            ("kv-fp8", torch.float32), ("kv-fp8", torch.bfloat16),
                                            ("latent", torch.float32)])
def test_compact_storages_read_back_the_same_from_disk_as_from_ram(tmp_path, storage, dtype):
    kv, lat = random_frames(10, dtype)
    ram = filled(PoolConfig("host", storage=storage), kv, lat)
    spilled = filled(host_then_disk(tmp_path, kv, lat, storage), kv, lat)
    assert spilled.usage()["disk"]["frames"] == 7 and spilled.bytes_per_frame == ram.bytes_per_frame
    for a, b in zip(ram.gather(INDICES, torch.device("cpu"), dtype), spilled.gather(INDICES, torch.device("cpu"), dtype)):
        assert torch.equal(a, b)
    k, _ = ram.gather(INDICES[:, :1], torch.device("cpu"), dtype)
    if storage != "latent":
        assert relative(k[:, 0].float(), kv[9][0][:, 0].float()) < 0.1
    else:
        assert torch.equal(k[0, 0], lat[9][0])
    ram.close()
    spilled.close()


def test_the_pool_keeps_copies_and_gather_returns_tensors_the_caller_owns(tmp_path):
    kv, lat = random_frames(10)
    sources = [(k.clone(), v.clone()) for k, v in kv]
    pool = filled(host_then_disk(tmp_path, kv, lat), kv, lat)
    for k, v in kv:                                   # the evicted views change after the append
        k.zero_()
        v.zero_()
    first, _ = pool.gather(INDICES, torch.device("cpu"), torch.float32)
    expected = first.clone()
    pool.gather(INDICES.flip(1), torch.device("cpu"), torch.float32)   # reuses the read buffer
    assert torch.equal(first, expected)
    first.zero_()
    again, _ = pool.gather(INDICES, torch.device("cpu"), torch.float32)
    assert torch.equal(again, expected) and torch.equal(again[:, 0, :4], sources[9][0][:, 0])
    pool.close()


def test_a_write_never_lists_the_pool_directory(tmp_path, monkeypatch):
    def listing(*args, **kwargs):
        raise AssertionError("the pool listed a directory")
    for module, name in [(os, "listdir"), (os, "scandir"), (os, "walk"), (Path, "iterdir"), (Path, "glob"),
                         (Path, "rglob")]:
        monkeypatch.setattr(module, name, listing)
    kv, lat = random_frames(20)
    pool = filled(PoolConfig("disk", directory=str(tmp_path)), kv, lat)
    pool.gather(INDICES, torch.device("cpu"), torch.float32)
    pool.close()


def test_the_disk_tier_keeps_one_file_however_many_frames(tmp_path):
    kv, _ = random_frames(1)
    pool = HistoryPool(PoolConfig("disk", directory=str(tmp_path)))
    counts = []
    for n in (1, 10, 1000):
        while len(pool) < n:
            pool.append(list(kv[0][0]), list(kv[0][1]))
        counts.append(len(files(tmp_path)))
    assert counts == [1, 1, 1]
    assert files(tmp_path)[0].stat().st_size == 1000 * pool.bytes_per_frame
    pool.close()


def test_close_deletes_the_file(tmp_path):
    kv, lat = random_frames(3)
    pool = filled(PoolConfig("disk", directory=str(tmp_path)), kv, lat)
    assert len(files(tmp_path)) == 1
    pool.close()
    assert files(tmp_path) == [] and len(pool) == 0


def test_garbage_collection_deletes_the_file(tmp_path):
    kv, lat = random_frames(3)
    pool = filled(PoolConfig("disk", directory=str(tmp_path)), kv, lat)
    pool.self_reference = pool   # only the cycle collector can free it, as in generate() (recompute → loop → pool)
    del pool
    gc.collect()
    assert files(tmp_path) == []
