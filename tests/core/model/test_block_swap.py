"""Block swap: a swapped model computes exactly what the plain one does, its swapped weights live in host memory
between uses, at most two swapped blocks have a device copy at once, each copy is ordered before its use and
issued one block ahead, and undo gives the plain model back."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from core.app.plan import sampling_config
from core.model.block_swap import (BlockSwap, CopyTransfer, blocks_to_swap, swap_blocks, swap_bytes, swapped_blocks,
                                   unswap_blocks)
from core.model.transformer import WanConfig, WanTransformer
from core.retrieval.config import RetrievalConfig
from core.sampling.loop import generate

from factory import tiny_model

LAYERS = 4
EMB = torch.randn(1, 7, 32, generator=torch.Generator().manual_seed(5))


def model():
    return tiny_model(layers=LAYERS)


def run(m, mode):
    cfg = sampling_config(retrieval=RetrievalConfig(6) if mode == "rag" else None)
    return generate(m, EMB, 24, (4, 6), 3, cfg).latents


def weights(m):
    return {k: v.clone() for k, v in m.state_dict().items()}


@pytest.fixture(scope="module")
def plain():
    m = model()
    return {mode: run(m, mode) for mode in ("rag", "native")}


@pytest.mark.parametrize("mode", ["rag", "native"])
@pytest.mark.parametrize("n", [0, 1, 2, LAYERS])
def test_a_whole_run_with_n_swapped_blocks_is_bit_identical_to_no_swap(plain, mode, n):
    m = model()
    swap = swap_blocks(m, n, "cpu")
    assert swapped_blocks(m) == n and swap.indices == list(range(LAYERS - n, LAYERS))
    assert torch.equal(run(m, mode), plain[mode])
    assert swap.copies > 0 if n else swap.copies == 0


def test_swapped_weights_point_at_their_host_tensors_between_uses_and_at_a_copy_during_use():
    m = model()
    swap = swap_blocks(m, 2, "cpu")
    host_ptr = {id(p): h.data_ptr() for s in swap.slots for (mod, name, is_p), h in zip(s.places, s.host)
                if is_p for p in [mod._parameters[name]]}
    seen = []

    def probe(i):
        def hook(module, args):
            ptrs = [p.data_ptr() for p in m.blocks[i].parameters()]
            seen.append((i, any(ptr == host_ptr[id(p)] for p, ptr in zip(m.blocks[i].parameters(), ptrs)),
                         swap.loaded()))
        return hook

    for i in swap.indices:
        m.blocks[i].norm1.register_forward_pre_hook(probe(i))
    run(m, "rag")
    assert seen and all(not on_host for _, on_host, _ in seen)          # computing on a copy, never the host tensor
    assert all(i in loaded and len(loaded) <= 2 for i, _, loaded in seen)
    assert swap.peak == 2
    for p in (p for i in swap.indices for p in m.blocks[i].parameters()):
        assert p.data_ptr() == host_ptr[id(p)]                          # back on the host tensor after the run
    assert swap.loaded() == [swap.indices[0]]                           # the next forward's first one, prefetched


class Recorder(CopyTransfer):
    """A transfer that logs every copy and every wait, naming the block by its host tensors."""

    def __init__(self, device, log, names):
        super().__init__(device)
        self.log, self.names = log, names

    def copy(self, host):
        block = self.names[host[0].data_ptr()]
        self.log.append(("copy", block))
        out, _ = super().copy(host)
        return out, block

    def ready(self, token):
        self.log.append(("wait", token))


def test_each_copy_is_waited_for_before_its_block_computes_and_issued_while_the_previous_one_computes():
    m, log = model(), []
    swap = swap_blocks(m, 3, "cpu")
    swap.transfer = Recorder(swap.device, log, {s.host[0].data_ptr(): i for i, s in zip(swap.indices, swap.slots)})
    for i, blk in enumerate(m.blocks):
        blk.norm1.register_forward_pre_hook(lambda *a, i=i: log.append(("compute", i)))
    m.patch_embedding.register_forward_pre_hook(lambda *a: log.append(("embed", None)))
    x, t = torch.randn(1, 16, 3, 4, 6), torch.zeros(1, 3)
    text = m.encode_text(EMB)
    assert log[-1] == ("copy", 1)                       # encode_text streamed the blocks, then prefetched block 1
    log.clear()
    m(x, t, text)
    m(x, t, text)
    one = [("embed", None), ("compute", 0), ("wait", 1), ("copy", 2), ("compute", 1), ("wait", 2), ("copy", 3),
           ("compute", 2), ("wait", 3), ("compute", 3), ("copy", 1)]
    assert log == one + one


def test_a_forward_that_raises_inside_a_swapped_block_leaves_the_weights_on_the_host_and_the_next_one_exact():
    m = model()
    x, t, text = torch.randn(1, 16, 3, 4, 6), torch.zeros(1, 3), m.encode_text(EMB)
    want = m(x, t, text)
    swap = swap_blocks(m, 3, "cpu")
    host = [s.host for s in swap.slots]

    def fail(*a):
        raise RuntimeError("out of memory")
    hook = m.blocks[2].norm1.register_forward_pre_hook(fail)
    with pytest.raises(RuntimeError):
        m(x, t, text)
    hook.remove()
    assert all(p is h for s, hs in zip(swap.slots, host) for p, h in zip(s.host, hs))
    assert all(s.depth == 0 for s in swap.slots) and len(swap.loaded()) <= 2
    assert all(p.data_ptr() == h.data_ptr() for s in swap.slots for (mod, name, is_p), h in zip(s.places, s.host)
               if is_p for p in [mod._parameters[name]])
    assert torch.equal(m(x, t, text), want)
    assert swap.peak <= 2


def test_write_cache_and_encode_text_stream_the_swapped_blocks_too():
    from core.context.kv_cache import CachePolicy, KVCache
    a, b = model(), model()
    swap = swap_blocks(b, LAYERS, "cpu")
    c = a.cfg

    def cache():
        k = KVCache(CachePolicy.native(window=12, sink=1), c.num_layers, 1, (2, 3), c.num_heads, c.head_dim,
                    torch.float32, torch.device("cpu"))
        k.begin_block(0, 3)
        return k

    ta, tb = a.encode_text(EMB), b.encode_text(EMB)
    assert all(torch.equal(x, y) for p, q in zip(ta.kv, tb.kv) for x, y in zip(p, q))
    x, t = torch.randn(1, 16, 3, 4, 6), torch.zeros(1, 3)
    ca, cb = cache(), cache()
    copies = swap.copies
    a.write_cache(x, t, ta, ca)
    b.write_cache(x, t, tb, cb)
    assert swap.copies - copies == LAYERS
    assert all(torch.equal(x, y) for x, y in zip(ca.k + ca.v, cb.k + cb.v))


class ScaledLinear(nn.Module):
    """An fp8 layer as another part of the pack stores it: a float8 weight parameter and a float32 scale buffer."""

    def __init__(self, lin: nn.Linear):
        super().__init__()
        scale = lin.weight.abs().amax(1, keepdim=True) / 448
        self.weight = nn.Parameter((lin.weight / scale).to(torch.float8_e4m3fn), requires_grad=False)
        self.register_buffer("scale", scale)
        self.bias = lin.bias

    def forward(self, x):
        return F.linear(x, self.weight.to(x.dtype) * self.scale, self.bias)


def test_a_blocks_buffers_move_with_its_parameters():
    a, b = model(), model()
    for m in (a, b):
        m.blocks[-1].self_attn.q = ScaledLinear(m.blocks[-1].self_attn.q)
    swap = swap_blocks(b, 1, "cpu")
    layer = b.blocks[-1].self_attn.q
    host = layer.scale
    during = []
    layer.register_forward_pre_hook(lambda mod, args: during.append((mod.scale is host, mod.weight.dtype)))
    x, t = torch.randn(1, 16, 3, 4, 6), torch.zeros(1, 3)
    assert torch.equal(a(x, t, a.encode_text(EMB)), b(x, t, b.encode_text(EMB)))
    assert during == [(False, torch.float8_e4m3fn)]
    assert layer.scale is host
    bytes_ = swap_bytes(b, 1)
    assert bytes_.block == sum(t.numel() * t.element_size() for t in (*b.blocks[-1].parameters(), *b.blocks[-1].buffers()))
    assert swap.slots[0].host[-1] is host                               # the scale is one of the swapped tensors


def test_undo_gives_back_the_plain_model_with_the_same_weights(plain):
    m = model()
    before = weights(m)
    swap = swap_blocks(m, 3, "cpu")
    run(m, "rag")
    swap.undo()
    assert swapped_blocks(m) == 0 and swap.loaded() == []
    assert not any(name in vars(obj) for blk in m.blocks for obj in (blk, blk.cross_attn)
                   for name in ("forward", "write_kv", "text_kv"))
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    assert torch.equal(run(m, "rag"), plain["rag"])
    unswap_blocks(m)                                                    # a model not swapped: nothing to do


def test_swapping_again_replaces_the_earlier_swap(plain):
    m = model()
    swap_blocks(m, 1, "cpu")
    swap = swap_blocks(m, 3, "cpu")
    assert swapped_blocks(m) == 3
    assert sum(1 for blk in m.blocks if "forward" in vars(blk)) == 3
    assert torch.equal(run(m, "native"), plain["native"])
    assert isinstance(swap, BlockSwap)


def test_runs_under_inference_mode_as_comfyui_calls_nodes(plain):
    m = model()
    swap_blocks(m, 2, "cpu")
    with torch.inference_mode():
        assert torch.equal(run(m, "rag"), plain["rag"])


@pytest.mark.parametrize("n", [-1, LAYERS + 1, 1.5, True])
def test_a_count_outside_the_blocks_is_refused_in_one_line_with_the_range(n):
    with pytest.raises(ValueError) as err:
        swap_blocks(model(), n)
    msg = str(err.value)
    assert "\n" not in msg and f"has {LAYERS} blocks" in msg and f"from 0 (no swap) to {LAYERS}" in msg


def test_swap_bytes_of_the_real_1_3b_block_on_the_meta_device():
    d, f = 1536, 8960
    with torch.device("meta"):
        m = WanTransformer(WanConfig(dim=d, ffn_dim=f, num_layers=30, num_heads=12, in_dim=16, out_dim=16))
    per_block = 8 * d * d + 8 * d + 4 * d + 2 * d + 2 * d * f + f + d + 6 * d   # attn ×2, norms, ffn, modulation
    total = sum(p.numel() for p in m.parameters())
    got = swap_bytes(m, 28, torch.bfloat16)
    assert (got.block, got.host, got.buffer) == (2 * per_block, 56 * per_block, 4 * per_block)
    assert got.saved == 52 * per_block and got.device == 2 * total - 52 * per_block
    assert swap_bytes(m, 1).saved == 0 and swap_bytes(m, 2).saved == 0 and swap_bytes(m, 0).host == 0
    assert swap_bytes(m, 3).block == 4 * per_block                        # meta tensors in float32: their own size


def test_blocks_to_swap_is_the_fewest_count_that_saves_what_is_short():
    m = model()
    block = swap_bytes(m, 1).block
    assert blocks_to_swap(m, 0) == 0 and blocks_to_swap(m, -5) == 0
    assert blocks_to_swap(m, 1) == 3                                    # the first two swapped blocks save nothing
    assert blocks_to_swap(m, block) == 3 and blocks_to_swap(m, block + 1) == 4
    assert blocks_to_swap(m, 2 * block) == 4 and blocks_to_swap(m, 2 * block + 1) is None
