"""A hand-checkable KV cache: one layer, one head, one token per frame, each frame's K and V holding its frame index,
so slot contents read as frame labels (the strategy hook tests)."""
import torch

from core.context.kv_cache import KVCache


D = 6   # head_dim: one complex pair per RoPE axis


def labelled(frames, dtype=torch.float64):
    """K/V for frames [F] → [1, F, 1, D] holding the frame index (1 token per frame, 1 head)."""
    return torch.tensor(frames, dtype=dtype).view(1, -1, 1, 1).expand(1, len(frames), 1, D).clone()


def make_cache(policy, strategy):
    return KVCache(policy, num_layers=1, batch=1, grid_hw=(1, 1), heads=1, head_dim=D, dtype=torch.float64,
                   device=torch.device("cpu"), strategy=strategy)


def fill(cache, start, nf=3):
    cache.begin_block(start, nf)
    frames = list(range(start, start + nf))
    cache.write(0, labelled(frames), labelled(frames))


def slot_labels(cache):
    return cache.v[0][0, :cache.filled, 0, 0].round().long().tolist()
