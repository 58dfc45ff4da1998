"""Paired runs: this project's AR loop vs the published LongLive-RAG code, medium size, both regimes.

    # once: the published code, outside this repository (never committed here)
    git --git-dir=<bare clone of github.com/qixinhu11/LongLive-RAG> archive 973884a | tar -x -C /tmp/llrag_published
    python benchmarks/vs_published.py --published /tmp/llrag_published [--rounds 3]

The copy is used as extracted (its files are never edited); what CPU needs is patched at run time, here:
  - ``torch.cuda.current_device()`` is read at import by utils/memory.py and wan/modules/t5.py: it answers
    0 while the published modules import (a device object, never used on CPU)
  - wan/__init__.py imports WanI2V/WanT2V (bidirectional pipelines that need torchvision; unused here):
    empty stand-in modules are registered for them
  - ``attention`` in the causal models and ``flash_attention`` in wan/modules/model.py (flash-attn, or an
    SDPA fallback that casts to bf16) are replaced in those module namespaces by unmasked SDPA in the
    model's dtype (the causal loop passes no sequence lengths; any would raise)
  - the pipeline's hard-coded 1.3B sizes (30 layers, 12 heads x 128, 1560 tokens per frame) are set from
    the model and the latent size; its K/V caches are re-made at the model's heads x head_dim
  - a stand-in ``easydict`` module (a dict with attribute access), ``CausalWanModel.from_pretrained``
    building the medium architecture and loading the weights, a stand-in text encoder returning the
    prompt embedding; VAE decoding is skipped.

Both implementations load the same random weights (floor.random_state_dict, bare Wan names, strict)
and the same prompt embedding; 60 latent frames of 16x24; float32; CPU. Per block after the cache
is full (blocks from frame 30 on): wall time from the end of the previous block to the end of the
block's context pass (retrieval, 4 denoising forwards, descriptors, context pass). The floor
(benchmarks/floor.py) is measured right after every block of both, outside the timed span. Runs are
interleaved ours/published, alternating which goes first, so machine load hits both alike; the
figures are medians over all paired blocks with [min–max] as the noise statement.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from floor import (MEDIUM, MEDIUM_FRAMES, MEDIUM_HW, STEADY_FROM_FRAME, FloorProbe,  # noqa: E402
                   context_pass_writes_only, medium_shape, prompt, random_model, random_state_dict, run_regime,
                   spread, write_result)

import torch  # noqa: E402

def prepare(published: Path) -> None:
    """Make the extracted copy importable on CPU (run-time patches only; see the module docstring)."""
    if not (published / "pipeline" / "causal_inference.py").exists():
        raise SystemExit(f"{published} does not hold the published code (pipeline/causal_inference.py missing); "
                         f"extract it first: git --git-dir=<clone> archive 973884a | tar -x -C {published}")
    easydict = types.ModuleType("easydict")
    easydict.EasyDict = AttrDict
    sys.modules.setdefault("easydict", easydict)
    for name, cls in (("wan.image2video", "WanI2V"), ("wan.text2video", "WanT2V")):
        stub = types.ModuleType(name)
        setattr(stub, cls, None)
        sys.modules.setdefault(name, stub)
    sys.path.insert(0, str(published))
    current_device = torch.cuda.current_device
    torch.cuda.current_device = lambda: 0
    try:
        import pipeline.causal_inference  # noqa: F401  (imports utils.memory and wan.modules.t5)
        import wan.modules.causal_model as native_mod
        import wan.modules.causal_model_latentmem as rag_mod
        import wan.modules.model as base_mod      # cross-attention, inherited by the causal models
    finally:
        torch.cuda.current_device = current_device
    native_mod.attention = rag_mod.attention = base_mod.flash_attention = _sdpa


def _sdpa(q, k, v, q_lens=None, k_lens=None, dropout_p=0.0, causal=False, **_):
    """The published ``attention`` / ``flash_attention`` ([B, L, heads, d] in and out) as unmasked SDPA in q's dtype."""
    if q_lens is not None or k_lens is not None:
        raise NotImplementedError("variable-length attention is not used by the causal loop")
    out = torch.nn.functional.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                                           dropout_p=dropout_p, is_causal=causal)
    return out.transpose(1, 2).contiguous()


def _fit_sizes(pipe, model) -> None:
    """The pipeline's hard-coded 1.3B sizes → the model's; its caches re-made at heads x head_dim."""
    heads, head_dim = model.num_heads, model.dim // model.num_heads
    pipe.num_transformer_blocks = len(model.blocks)
    pipe.frame_seq_length = (MEDIUM_HW[0] // 2) * (MEDIUM_HW[1] // 2)

    def resized(make, attr):
        def run(*args, **kwargs):
            make(*args, **kwargs)
            for entry in getattr(pipe, attr):
                for key in ("k", "v"):
                    entry[key] = entry[key].new_zeros(*entry[key].shape[:2], heads, head_dim)
        return run
    pipe._initialize_kv_cache = resized(pipe._initialize_kv_cache, "kv_cache1")
    pipe._initialize_crossattn_cache = resized(pipe._initialize_crossattn_cache, "crossattn_cache")


class AttrDict(dict):
    """A dict with attribute access (what the published code reads its config through)."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key, value):
        self[key] = value


class _Text:
    """Stand-in for the published T5 wrapper: returns the given prompt embedding."""

    def __init__(self, embeds: torch.Tensor):
        self.embeds = embeds

    def __call__(self, text_prompts):
        return {"prompt_embeds": self.embeds}


def published_pipeline(regime: str, state: dict):
    """The published CausalInferencePipeline with the medium architecture and ``state`` loaded."""
    import wan.modules.causal_model as native_mod
    import wan.modules.causal_model_latentmem as rag_mod
    from pipeline.causal_inference import CausalInferencePipeline
    from utils.wan_wrapper import WanDiffusionWrapper

    c = MEDIUM
    kwargs = AttrDict(local_attn_size=12, timestep_shift=5.0, sink_size=1)
    if regime == "retrieval":
        kwargs.update(memory_size=6, recent_exclude=5, use_latentmem=True, compression_method="avg_pool")
    cls = rag_mod.CausalWanModel if regime == "retrieval" else native_mod.CausalWanModel

    def from_pretrained(path, **kw):
        model = cls(model_type="t2v", dim=c.dim, ffn_dim=c.ffn_dim, freq_dim=c.freq_dim, text_dim=c.text_dim,
                    num_heads=c.num_heads, num_layers=c.num_layers, **kw)
        model.load_state_dict(state, strict=True)
        return model.eval().requires_grad_(False)

    saved = cls.__dict__["from_pretrained"] if "from_pretrained" in cls.__dict__ else None
    cls.from_pretrained = staticmethod(from_pretrained)
    try:
        wrapper_kw = {k: v for k, v in kwargs.items() if k not in ("recent_exclude", "compression_method")}
        generator = WanDiffusionWrapper(**wrapper_kw, is_causal=True)
    finally:
        if saved is None:
            del cls.from_pretrained
        else:
            cls.from_pretrained = saved
    args = AttrDict(model_kwargs=kwargs, denoising_step_list=[1000, 750, 500, 250], warp_denoising_step=True,
                    num_frame_per_block=3, context_noise=0)
    pipe = CausalInferencePipeline(args, torch.device("cpu"), generator=generator,
                                   text_encoder=_Text(prompt(MEDIUM)), vae=object())
    _fit_sizes(pipe, generator.model)
    return pipe


class _BlockClock:
    """Per-block wall time of the published loop: a block ends with its 5th generator call (the context
    pass); the floor probe runs right after, outside the timed span."""

    def __init__(self, probe: FloorProbe, calls_per_block: int = 5):
        self.probe, self.calls_per_block = probe, calls_per_block
        self.calls, self.block_s, self.floor_s = 0, [], []
        self.start = time.perf_counter()

    def __call__(self, module, args, kwargs, output):
        self.calls += 1
        if self.calls % self.calls_per_block == 0:
            self.block_s.append(time.perf_counter() - self.start)
            self.floor_s.append(self.probe.measure()["floor_s"])
            self.start = time.perf_counter()


def run_published(pipe, probe: FloorProbe, frames: int = MEDIUM_FRAMES) -> dict:
    noise = torch.randn(1, frames, 16, *MEDIUM_HW, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)   # the published loop re-noises from the global generator
    clock = _BlockClock(probe)
    hook = pipe.generator.register_forward_hook(clock, with_kwargs=True)
    try:   # the published loop prints its cache policy and a progress bar: keep the table readable
        with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            clock.start = time.perf_counter()
            pipe.inference(noise, ["benchmark"], return_latents=True, skip_vae_decode=True)
    finally:
        hook.remove()
    first = STEADY_FROM_FRAME // 3
    ms = [1e3 * s for s in clock.block_s[first:]]
    ratios = [b / f for b, f in zip(clock.block_s[first:], clock.floor_s[first:])]
    return {"block_ms": ms, "ms": statistics.median(ms), "ratios": ratios, "ratio": statistics.median(ratios)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--published", required=True, type=Path, help="extracted copy of the published code")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (each: ours and published, both regimes)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--regimes", default="native,retrieval")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    prepare(args.published.resolve())
    context_pass = context_pass_writes_only()
    state = random_state_dict(MEDIUM)
    ours_model = random_model(MEDIUM)
    probe = FloorProbe(medium_shape())
    regimes = args.regimes.split(",")
    with contextlib.redirect_stdout(io.StringIO()):
        pubs = {r: published_pipeline(r, state) for r in regimes}
    results = {r: {"ours": [], "published": []} for r in regimes}
    load = [os.getloadavg()[0]]
    print(f"context pass (ours): {context_pass}; {args.threads} threads; {args.rounds} rounds")
    for rnd in range(args.rounds):
        for regime in regimes:
            order = ("ours", "published") if rnd % 2 == 0 else ("published", "ours")
            for impl in order:
                r = (run_regime(ours_model, regime, probe) if impl == "ours" else run_published(pubs[regime], probe))
                results[regime][impl].append(r)
                load.append(os.getloadavg()[0])
                print(f"  round {rnd} {regime:9} {impl:9} {r['ms']:8.1f} ms/block  {r['ratio']:.2f}x floor", flush=True)
    report = summarize(results)
    report.update(threads=args.threads, rounds=args.rounds, context_pass=context_pass, load_average=load,
                  command=" ".join([Path(sys.executable).name] + sys.argv))
    print(f"load average (1 min) during the runs: {spread(load)}")
    write_result("vs_published", report)
    return 0


def summarize(results: dict) -> dict:
    """Per regime: medians of ms/block and ratio to floor of each, and published/ours per paired block."""
    out = {}
    print(f"{'regime':10} {'ours ms':>16} {'published ms':>18} {'ours/floor':>18} {'pub/floor':>18} {'speed-up':>18}")
    for regime, r in results.items():
        ours = [m for run in r["ours"] for m in run["block_ms"]]
        pub = [m for run in r["published"] for m in run["block_ms"]]
        speedup = [p / o for p, o in zip(pub, ours)]   # block i of round j of each, paired
        o_ratio = [x for run in r["ours"] for x in run["ratios"]]
        p_ratio = [x for run in r["published"] for x in run["ratios"]]
        out[regime] = {"ours_ms": ours, "published_ms": pub, "speedup": speedup, "ours_floor_ratio": o_ratio,
                       "published_floor_ratio": p_ratio,
                       "speedup_median": statistics.median(speedup),
                       "speedup_of_medians": statistics.median(pub) / statistics.median(ours)}
        print(f"{regime:10} {spread(ours):>16} {spread(pub):>18} {spread(o_ratio):>18} {spread(p_ratio):>18} "
              f"{spread(speedup):>18}")
    print("values: median [min–max] over paired blocks; speed-up = published ms / ours ms, block by block")
    return out


if __name__ == "__main__":
    raise SystemExit(main())
