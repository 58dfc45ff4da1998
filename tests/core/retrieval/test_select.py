import pytest
import torch

from core.retrieval.select import avg_pool_descriptor, idle_note, log_record, select_frames


def descriptors(rows):
    return torch.tensor(rows, dtype=torch.float32).unsqueeze(0)


def test_nothing_is_retrieved_while_every_evicted_frame_is_recent():
    d = torch.randn(1, 12, 4)
    assert select_frames(d, 12, num_evicted=5, sink=1, recent_exclude=5, top_k=6) is None


def test_recency_guard_keeps_only_the_oldest_entries_eligible():
    # pool entries 0..6 = frames 1..7; R=5 leaves entries 0 and 1 (frames 1, 2)
    d = torch.zeros(1, 10, 2)
    d[0, :, 0] = 1.0
    d[0, 9] = torch.tensor([0.0, 1.0])       # query = last generated frame
    d[0, 6] = torch.tensor([0.0, 1.0])       # most similar, but recent
    d[0, 2] = torch.tensor([0.1, 1.0])
    choice = select_frames(d, 10, num_evicted=7, sink=1, recent_exclude=5, top_k=6)
    assert choice.pool_indices.tolist() == [[1, 0]]            # k = min(K, eligible)
    assert choice.similarities[0, 0] > choice.similarities[0, 1]


def test_top_k_is_by_cosine_in_descending_order_per_sample():
    g = torch.Generator().manual_seed(0)
    d = torch.randn(2, 20, 8, generator=g)
    choice = select_frames(d, 20, num_evicted=15, sink=1, recent_exclude=5, top_k=3)
    for b in range(2):
        keys = d[b, 1:11]
        sims = torch.nn.functional.cosine_similarity(keys, d[b, 19:20], dim=-1)
        assert choice.pool_indices[b].tolist() == sims.topk(3).indices.tolist()
        assert choice.similarities[b].tolist() == pytest.approx(sims.topk(3).values.tolist(), abs=1e-6)


def test_avg_pool_descriptor_is_the_spatial_mean():
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).view(2, 3, 4, 5)
    assert torch.equal(avg_pool_descriptor(x), x.mean(dim=(2, 3)))


def test_log_record_is_flat_for_batch_one_and_names_global_frames():
    choice = select_frames(torch.randn(1, 12, 4), 12, num_evicted=8, sink=1, recent_exclude=5, top_k=2)
    rec = log_record(4, 12, choice, sink=1)
    assert set(rec) >= {"block", "query_frame", "pool_indices", "global_frames", "similarities"}
    assert rec["global_frames"] == [i + 1 for i in rec["pool_indices"]]
    assert isinstance(rec["similarities"][0], float)


def test_a_run_that_retrieved_nothing_is_told_why_in_one_line():
    # (block, pool frames the block saw), for the blocks that retrieved nothing
    never_left = idle_note([(0, 0), (1, 0), (2, 0)], 3, recent_exclude=5, segment_scope=False)
    assert "no block retrieved a past frame; no frame left the KV cache window" in never_left
    too_recent = idle_note([(0, 0), (1, 0), (2, 3)], 3, recent_exclude=5, segment_scope=False)
    assert "only 3 frames had left the window and the 5 most recently evicted are never retrieved" in too_recent
    scoped = idle_note([(0, 0), (1, 9)], 2, recent_exclude=5, segment_scope=True)
    assert "with retrieval scope 'segment' only frames of the current prompt" in scoped
    assert all("\n" not in note for note in (never_left, too_recent, scoped))


def test_blocks_after_a_switch_that_found_no_frame_of_their_prompt_are_named_once():
    idle = [(0, 0), (1, 0), (2, 0), (6, 8), (7, 11), (8, 14), (11, 20)]   # blocks 3-5, 9-10 retrieved
    note = idle_note(idle, 12, recent_exclude=5, segment_scope=True)
    assert note.startswith("retrieval: blocks 7–9, 12 of 12 retrieved nothing: with retrieval scope 'segment'")
    assert idle_note(idle, 12, recent_exclude=5, segment_scope=False) is None     # early blocks: as expected
    assert idle_note([], 12, recent_exclude=5, segment_scope=True) is None
