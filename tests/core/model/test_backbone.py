"""The backbone interface (core/model/backbone.py): what the loop, the re-cache and the budget ask of a model."""
from dataclasses import dataclass

import pytest
import torch

from core.app.plan import sampling_config

import core.context.kv_cache
import core.context.rolling
from core.context.kv_cache import CachePolicy, KVCache
from core.context.recache import RecachePlan, _RecacheContext
from core.model.backbone import OPTIONAL, AttentionContext, BackboneConfig, BackboneModel, CacheWriter, TextContext
from core.retrieval.config import PoolConfig, RetrievalConfig
from core.sampling.budget import device_bytes_needed
from core.sampling.config import SamplingConfig, SwitchConfig
from core.sampling.loop import generate
from core.sampling.prompts import PromptSchedule, Segment
from core.sampling.samplers import NAMES as SAMPLERS

from factory import tiny_model

HW = (4, 6)


def declared(protocol) -> set[str]:
    """The members a protocol declares: its annotated attributes, methods and properties (``__call__`` included)."""
    body = {n for n, v in vars(protocol).items() if callable(v) or isinstance(v, property)}
    return {n for n in set(getattr(protocol, "__annotations__", {})) | body if not n.startswith("_") or n == "__call__"}


def test_the_wan_transformer_is_a_backbone_model():
    model = tiny_model()
    assert isinstance(model, BackboneModel) and isinstance(model.cfg, BackboneConfig)
    assert declared(BackboneModel) == {"cfg", "blocks", "parameters", "buffers", "encode_text", "__call__", "write_cache"}
    assert {"dim", "num_layers", "num_heads", "head_dim", "in_dim", "out_dim", "patch_size", "text_dim", "text_len",
            "ffn_dim"} == declared(BackboneConfig)


def test_the_cache_and_the_recache_are_attention_contexts_that_write():
    cache = KVCache(CachePolicy(12, 1), 1, 1, (2, 3), 2, 32, torch.float32, torch.device("cpu"))
    recache = _RecacheContext(cache, RecachePlan(0, 0, (0,), (0,)))
    for ctx in (cache, recache):
        assert isinstance(ctx, AttentionContext) and isinstance(ctx, CacheWriter)


def test_something_without_write_cache_is_no_backbone():
    class NoContextPass:
        cfg = tiny_model().cfg

        def parameters(self):
            return iter(())

        def encode_text(self, embeds):
            return TextContext()

        def __call__(self, x, t, text, ctx=None):
            return x
    assert not isinstance(NoContextPass(), BackboneModel)


class Recording:
    """Hands every attribute of ``target`` through and notes its name (``cfg`` is recorded one level down)."""

    def __init__(self, target, seen: set, prefix: str = ""):
        self._target, self._seen, self._prefix = target, seen, prefix

    def __getattr__(self, name):
        self._seen.add(self._prefix + name)
        value = getattr(self._target, name)
        return Recording(value, self._seen, "cfg.") if name == "cfg" else value

    def __call__(self, *args, **kwargs):
        self._seen.add("__call__")
        return self._target(*args, **kwargs)


def test_the_loop_recache_and_budget_use_nothing_of_the_model_outside_the_interface():
    model, seen = tiny_model(), set()
    emb = [torch.randn(1, 5, 32, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    story = PromptSchedule((Segment(0, emb[0]), Segment(9, emb[1], "then")))
    # rag with a latent pool (K/V recomputed by a model forward), a re-cache at the switch, a clamped start
    cfg = sampling_config(retrieval=RetrievalConfig(top_k=2, recent_exclude=0, pool=PoolConfig(storage="latent")),
                          window=6, switch="recache", start_block="clamp")
    res = generate(Recording(model, seen), story, 18, HW, 0, cfg, start=torch.randn(1, 16, 1, *HW))
    assert res.retrieval_log and res.switches[0]["recache"]["frames"]          # every path above did run
    device_bytes_needed(Recording(model, seen), cfg, HW, 1, torch.float32)
    allowed = declared(BackboneModel) | set(OPTIONAL) | {"cfg." + n for n in declared(BackboneConfig)}
    assert seen <= allowed, sorted(seen - allowed)
    assert {"__call__", "write_cache", "encode_text", "parameters", "cfg.head_dim", "cfg.patch_size"} <= seen


# ---------------------------------------------------------------- a backbone that is only the interface
@dataclass(frozen=True)
class FakeSizes:
    dim: int = 16
    num_layers: int = 2
    num_heads: int = 2
    in_dim: int = 16
    out_dim: int = 16
    text_dim: int = 8
    text_len: int = 4
    ffn_dim: int = 32
    patch_size: tuple[int, int, int] = (1, 1, 1)

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads


class FakeBackbone:
    """The interface and nothing more: each latent pixel is a token whose 16 channels are q = k = v (2 heads
    of 8, laid out contiguous as a projection's output is); every layer attends through the context and
    halves the result; the flow is what comes out."""

    def __init__(self):
        self.cfg = FakeSizes()
        self.weight = torch.nn.Parameter(torch.ones(()))
        self.blocks = ()
        self.forwards = 0

    def parameters(self, recurse: bool = True):
        yield self.weight

    def buffers(self, recurse: bool = True):
        return iter(())

    def encode_text(self, prompt_embeds):
        return TextContext([(prompt_embeds.mean(1), prompt_embeds.mean(1))])

    def _tokens(self, x):
        b, c, f, h, w = x.shape
        return x.permute(0, 2, 3, 4, 1).reshape(b, f * h * w, self.cfg.num_heads, self.cfg.head_dim).contiguous()

    def __call__(self, x, t, text, ctx=None):
        self.forwards += 1
        b, c, f, h, w = x.shape
        q = self._tokens(x) * self.weight
        for layer in range(self.cfg.num_layers):
            q = 0.5 * ctx.attend(layer, q, q, q)
        return q.reshape(b, f, h, w, c).permute(0, 4, 1, 2, 3)

    def write_cache(self, x, t, text, ctx):
        q = self._tokens(x) * self.weight
        *layers, last = range(self.cfg.num_layers)
        for layer in layers:
            q = 0.5 * ctx.attend(layer, q, q, q)
        ctx.write(last, q, q)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_a_model_that_is_only_the_interface_drives_the_loop(sampler, monkeypatch):
    fake, keys = FakeBackbone(), []
    assert isinstance(fake, BackboneModel)
    real = core.context.kv_cache.attention
    spy = lambda q, k, v: keys.append(k.shape[1]) or real(q, k, v)    # noqa: E731
    monkeypatch.setattr(core.context.kv_cache, "attention", spy)
    monkeypatch.setattr(core.context.rolling, "attention", spy)          # the rolling sampler's own cache
    cfg = sampling_config(sampler=sampler, steps=(1000, 500), sampling_steps=3)
    res = generate(fake, torch.randn(1, 4, 8), 6, HW, 0, cfg)
    # 2 blocks: 2 steps each (renoise), 3 solver steps (unipc); rolling: 3 joint calls of a 2-block window
    assert fake.forwards == {"renoise": 4, "unipc": 6, "rolling": 3}[sampler] and res.latents.shape == (1, 16, 6, *HW) and torch.isfinite(res.latents).all()
    tokens = HW[0] * HW[1]
    # the second block attends the first block's cached keys: the cache filled through the interface alone
    assert keys[0] == 3 * tokens and keys[-1] == 6 * tokens
