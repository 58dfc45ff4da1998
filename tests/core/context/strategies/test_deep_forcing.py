"""Deep Forcing's invariants (per the paper; no reference code to compare against).

Hand-checkable cache: 2 tokens per frame, 1 head, V = 10·frame + token (so every kept token names itself),
sink 2, C = 2 frames' worth (4 tokens), recent 2, blocks of 2 frames, window 8. Scores are re-derived here
from the stated rule: Σ over the last block's rotated queries and the heads of q·k, each candidate key
rotated at its temporal slot and its own spatial position.
"""
import pytest
import torch

import core.context.kv_cache as kv_cache_mod

from core.context.kv_cache import CachePolicy, KVCache
from core.sampling.loop import generate
from core.model.rope import apply_rope, rope_table
from core.context.strategies.deep_forcing import DeepForcing, DeepForcingParams
from core.app.plan import strategy_config

from factory import tiny_model

D, T, S, C, R, F, W = 6, 2, 2, 2, 2, 2, 8
GRID = (1, 2)


@pytest.fixture
def attended(monkeypatch):
    calls = []

    def fake_attention(q, k, v):
        calls.append((k.clone(), v.clone()))
        return q

    monkeypatch.setattr(kv_cache_mod, "attention", fake_attention)
    return calls


def rot(x, temporal: int, spatial: int):
    """One token [D] rotated at (temporal, 0, spatial) — written out here, not through the cache."""
    table = rope_table(torch.tensor([temporal]), *GRID, D)[spatial:spatial + 1]      # [1, 1, D/2]
    return apply_rope(x.view(1, 1, 1, D), table).view(D)


class Run:
    """A cache driven block by block with seeded random K/Q; keeps every raw K and Q it fed in."""

    def __init__(self, batch: int = 1):
        self.strategy = DeepForcing(DeepForcingParams(recent_frames=R, compressed_frames=C))
        self.cache = KVCache(CachePolicy(W, S, 0, True), 1, batch, GRID, 1, D, torch.float64, torch.device("cpu"),
                             strategy=self.strategy)
        self.gen = torch.Generator().manual_seed(7)
        self.raw_k, self.batch, self.last_q = {}, batch, None

    def block(self, start: int):
        self.cache.begin_block(start, F)
        b, n = self.batch, F * T
        k = torch.randn(b, n, 1, D, generator=self.gen, dtype=torch.float64)
        q = torch.randn(b, n, 1, D, generator=self.gen, dtype=torch.float64)
        v = torch.tensor([10 * (start + i // T) + i % T for i in range(n)], dtype=torch.float64)
        for i in range(n):
            self.raw_k[(start + i // T, i % T)] = k[:, i, 0]
        self.last_q = (q, self.cache.block_slot)
        self.cache.attend(0, q, k, v.view(1, n, 1, 1).expand(b, n, 1, D).clone())

    def labels(self, batch: int = 0) -> list[tuple[int, int]]:
        """(frame, token) held by each cached token, slot order."""
        vals = self.cache.v[0][batch, :self.cache.filled * T, 0, 0].round().long().tolist()
        return [(x // 10, x % 10) for x in vals]


def brute_force_top_c(run: Run, batch: int = 0) -> list[tuple[int, int]]:
    """The C (frame, token) pairs the rule keeps at the next block's start, derived from scratch."""
    labels, filled = run.labels(batch), run.cache.filled
    q, q_slot = run.last_q
    queries = [rot(q[batch, i, 0], q_slot + i // T, i % T) for i in range(F * T)]
    scores = []
    for j, (frame, token) in enumerate(labels[S * T:(filled - R) * T]):
        key = rot(run.raw_k[(frame, token)][batch], S + j // T, token)
        scores.append((sum(float(qi @ key) for qi in queries), j, (frame, token)))
    best = sorted(scores, reverse=True)[:C * T]
    return [pair for _, _, pair in sorted(best, key=lambda s: s[1])]


def test_selection_equals_a_brute_force_top_c_at_every_compression(attended):
    run = Run()
    for start in range(0, 8, F):
        run.block(start)
    for start in range(8, 20, F):
        expected = brute_force_top_c(run)
        run.block(start)
        assert run.labels()[S * T:(S + C) * T] == expected, start
    assert len(run.strategy.compressions) == 6


def test_selection_is_per_batch_element(attended):
    run = Run(batch=2)
    for start in range(0, 14, F):
        expected = [brute_force_top_c(run, b) for b in (0, 1)] if start >= 8 else None
        run.block(start)
        if expected:
            assert [run.labels(b)[S * T:(S + C) * T] for b in (0, 1)] == expected


def test_the_sink_is_never_evicted(attended):
    run = Run()
    for start in range(0, 30, F):
        run.block(start)
        assert run.labels()[:S * T] == [(f, t) for f in range(S) for t in range(T)]


def test_exactly_c_history_tokens_are_kept_in_the_order_sink_top_c_recent(attended):
    run = Run()
    for start in range(0, 30, F):
        run.block(start)
        if start < 8:
            continue
        labels = run.labels()
        assert run.cache.filled == S + C + R + F
        kept, recent, block = labels[S * T:(S + C) * T], labels[(S + C) * T:(S + C + R) * T], labels[-F * T:]
        assert len(kept) == C * T
        assert kept == sorted(kept) and all(S <= f < start - R for f, _ in kept)      # history, in original order
        assert recent == [(f, t) for f in range(start - R, start) for t in range(T)]
        assert block == [(f, t) for f in range(start, start + F) for t in range(T)]


def test_a_frame_can_keep_some_of_its_tokens(attended):
    """Token-wise, not frame-wise: over a run some frame keeps one token but not the other."""
    run, partial = Run(), False
    for start in range(0, 40, F):
        run.block(start)
        kept = run.labels()[S * T:(S + C) * T] if start >= 8 else []
        frames = [f for f, _ in kept]
        partial |= any(frames.count(f) == 1 for f in frames)
    assert partial


def test_the_sink_phase_shift_is_applied_once_from_the_stored_keys(attended):
    """Every block attends the sink rotated exactly at slots 0…S−1 (just before the tail), however many blocks
    went by: the stored sink keys are never rotated, and the queries' distance to the sink stays constant."""
    run = Run()
    for start in range(0, 30, F):
        run.block(start)
        k_attended = attended[-1][0][0, :S * T, 0]
        expected = torch.stack([rot(run.raw_k[(f, t)][0], f, t) for f in range(S) for t in range(T)])
        assert torch.allclose(k_attended, expected, atol=1e-12)
        assert torch.equal(run.cache.k[0][0, :S * T, 0], torch.stack([run.raw_k[(f, t)][0] for f in range(S)
                                                                     for t in range(T)]))
        if start >= 8:
            assert run.cache.query_base == S + C + R          # the block right after the tail, every block


def test_deep_forcing_runs_end_to_end_and_scores_with_every_layers_clean_queries():
    model = tiny_model(layers=2)
    cfg = strategy_config("deep-forcing", window=9, sink=3, options={"recent_frames": 1, "compressed_frames": 2})
    seen = []
    original = DeepForcing.observe

    def spy(self, cache, layer, q):
        seen.append(layer)
        original(self, cache, layer, q)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(DeepForcing, "observe", spy)
        res = generate(model, torch.randn(1, 8, 32, generator=torch.Generator().manual_seed(0)), 24, (4, 4), 0, cfg)
    assert torch.isfinite(res.latents).all() and res.latents.shape == (1, 16, 24, 4, 4)
    assert seen.count(1) == seen.count(0) == 8 * 5           # 4 denoising steps + the context pass, every layer
