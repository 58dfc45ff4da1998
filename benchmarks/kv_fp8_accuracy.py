"""How far the fp8 KV cache (core/context/kv_cache.py ``kv="fp8"``) moves results, next to the bf16 yardstick.

    python benchmarks/kv_fp8_accuracy.py                 # golden case (rag) and medium case (rag, native)
    python benchmarks/kv_fp8_accuracy.py --strategies rag native deep-forcing

Measured (float32 compute; fp8 KV | bf16 yardstick): golden rag — attention 8.7e-3 | 2.9e-3, retrieved K/V
2.5e-2 | 2.0e-3, final latents 7.6e-4 | 6.4e-3; medium rag — 3.6e-3 | 2.2e-3, 2.6e-2 | 2.0e-3, 4.3e-4 | 7.3e-3.

For each case: (1) the relative L2 error of every attention output and (2) of the retrieved K/V as the cache holds
them, teacher-forced: a twin fp8 cache is given the exact run's inputs at every call, so each figure is the
storage's own error at that step (worst over calls and layers); (3) the relative L2 error of the final latents of a
full fp8 run against the exact one. The yardstick: the same case with the model in bfloat16 against float32 (for
(1) and (2): a twin exact cache in bfloat16 given the same inputs rounded to bfloat16). Shared context buffers
throughout (per-layer ones give bit-identical results). Then the attention cache's bytes at the released sizes
(core/context/kv_store.py ``cache_bytes``).
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the golden case's tiny backbone: tests/factory.py

import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from context_buffers import medium_case  # noqa: E402
from core.app import facts  # noqa: E402
from core.app.plan import strategy_config  # noqa: E402
from core.context.kv_cache import KVCache  # noqa: E402
from core.context.kv_store import cache_bytes  # noqa: E402
from core.model.transformer import WanTransformer  # noqa: E402
from core.retrieval.encoder import load_encoder  # noqa: E402
from core.sampling import loop  # noqa: E402
from core.sampling.loop import generate  # noqa: E402
from factory import golden_config  # noqa: E402

GOLDEN = ROOT / "tests" / "data" / "golden"


def rel(a, b) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


class Twins(KVCache):
    """The exact cache of the run, driving two twins given the same calls: fp8 storage (same compute dtype) and
    exact storage in bfloat16. Records the worst relative error of each twin's attention outputs and retrieved
    K/V against the exact cache's (class attribute ``worst``, reset per run)."""
    worst: dict = {}

    def __init__(self, *args, **kw):
        super().__init__(*args, **{**kw, "context": "shared"})
        base = args[:8]                       # policy … device (the exact cache alone feeds the pool)
        twin = lambda: {"context": "shared", "strategy": copy.deepcopy(kw.get("strategy"))}  # noqa: E731
        self.fp8 = KVCache(*base, kv="fp8", **twin())
        self.half = KVCache(*base[:6], torch.bfloat16, *base[7:], **twin())

    def _note(self, what: str, err: float) -> None:
        Twins.worst[what] = max(Twins.worst.get(what, 0.0), err)

    def begin_block(self, start_frame: int, num_frames: int) -> None:
        for c in (self.fp8, self.half):
            KVCache.begin_block(c, start_frame, num_frames)
        super().begin_block(start_frame, num_frames)

    def set_retrieved(self, k, v) -> None:
        super().set_retrieved(k, v)
        n, layers = k.shape[2], range(len(self.k))
        exact = [torch.stack([s.read(i, 0, n) for i in layers]) for s in self._ret]
        for name, c, dtype in (("fp8", self.fp8, k.dtype), ("bf16", self.half, torch.bfloat16)):
            KVCache.set_retrieved(c, k.to(dtype), v.to(dtype))
            held = [torch.stack([s.read(i, 0, n) for i in layers]) for s in c._ret]
            self._note(f"{name} retrieved K/V", max(rel(a, b) for a, b in zip(held, exact)))

    def attend(self, layer, q, k, v):
        out = super().attend(layer, q, k, v)
        for name, c, dtype in (("fp8", self.fp8, q.dtype), ("bf16", self.half, torch.bfloat16)):
            self._note(f"{name} attention", rel(KVCache.attend(c, layer, *(x.to(dtype) for x in (q, k, v))), out))
        return out

    def write(self, layer, k, v) -> None:
        super().write(layer, k, v)
        KVCache.write(self.fp8, layer, k, v)
        KVCache.write(self.half, layer, k.bfloat16(), v.bfloat16())


class Fp8(KVCache):
    def __init__(self, *args, **kw):
        super().__init__(*args, **{**kw, "kv": "fp8", "context": "shared"})


def with_cache(cache: type, go):
    """``go()`` with the sampling loop building its KV cache as ``cache``."""
    loop.KVCache = cache
    try:
        return go()
    finally:
        loop.KVCache = KVCache


def case(name: str, model, go) -> None:
    """``go(model)`` → one generate() result; the exact, fp8 and bf16-model runs and the twins' errors."""
    Twins.worst = {}
    exact = with_cache(Twins, lambda: go(model))
    teacher = dict(Twins.worst)
    fp8 = with_cache(Fp8, lambda: go(model))
    half = go(copy.deepcopy(model).to(torch.bfloat16))
    print(f"{name:34} {'fp8 KV':>10} {'bf16':>11}")     # bf16: the twin cache (1, 2), the bf16 model (3)
    for what in ("attention", "retrieved K/V"):
        if f"fp8 {what}" in teacher:
            print(f"  {what + ' (worst call)':32} {teacher[f'fp8 {what}']:10.3e} {teacher[f'bf16 {what}']:11.3e}")
    print(f"  {'final latents':32} {rel(fp8.latents, exact.latents):10.3e} {rel(half.latents, exact.latents):11.3e}")


def golden() -> None:
    model = WanTransformer(golden_config())
    model.load_state_dict(load_file(str(GOLDEN / "wan_tiny_t2v_bare.safetensors")))
    model.eval()
    emb = load_file(str(GOLDEN / "inputs.safetensors"))["prompt_embeds"]
    enc = load_encoder(GOLDEN / "ae.pt")
    dtype = lambda m: next(m.parameters()).dtype  # noqa: E731
    case("golden case, rag, float32", model,
         lambda m: generate(m, emb.to(dtype(m)), 48, (8, 12), 42, strategy_config("rag"), encoder=enc))


def medium(strategies) -> None:
    model, embeds = medium_case()
    for s in strategies:
        case(f"medium case, {s}, float32", model,
             lambda m: generate(m, embeds.to(next(m.parameters()).dtype), 60, (16, 24), 5, strategy_config(s)))


def real_sizes() -> None:
    print("\nattention cache at the released sizes, bf16 (GiB): exact per-layer | exact shared | fp8 shared")
    for family in facts.families():
        r = facts.released(family)
        if r is None:
            continue
        for s in ("native", "rag"):
            if not facts.strategy_runs(s, family):
                continue
            policy = strategy_config(s, family).policy
            sizes = (policy, r.layers, 1, r.tokens, r.heads, r.head_dim, torch.bfloat16)
            got = [cache_bytes(*sizes, kv=kv, context=c).total / 2**30
                   for kv, c in (("exact", "per-layer"), ("exact", "shared"), ("fp8", "shared"))]
            print(f"  {family.name:24} {s:7} window {policy.window:2}: " + " | ".join(f"{g:6.2f}" for g in got))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--strategies", nargs="+", default=["rag", "native"])
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    golden()
    medium(args.strategies)
    real_sizes()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
