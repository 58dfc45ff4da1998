"""Paired runs: this project's AR loop vs the published LongLive-RAG code, medium size, both regimes.

    # once: the published code, outside this repository (never committed here)
    git --git-dir=<bare clone of github.com/qixinhu11/LongLive-RAG> archive 973884a | tar -x -C /tmp/llrag_published
    python benchmarks/vs_published.py --published /tmp/llrag_published [--rounds 3]

The script applies ``benchmarks/published_cpu.patch`` to that copy once (``patch -p1``; a marker
file records it). The patch changes only what CPU needs to import and run the published loop:
  - utils/memory.py, wan/modules/t5.py: ``torch.cuda.current_device()`` at import → CPU when no CUDA
  - wan/__init__.py: skip WanI2V/WanT2V (bidirectional pipelines, import torchvision; unused here)
  - wan/modules/attention.py: the SDPA fallback keeps the model's dtype (its bf16 cast is meant for
    flash-attn on CUDA; on a float32 model it fails at the output projection)
  - pipeline/causal_inference.py: layers, heads, head_dim and tokens per frame from the model and the
    latent size instead of the hard-coded 1.3B values (30, 12, 128, 1560)
At run time (not in the copy): a stand-in ``easydict`` module (not installed here; a dict with
attribute access), ``CausalWanModel.from_pretrained`` builds the medium architecture and loads the
weights, a stand-in text encoder returns the prompt embedding, VAE decoding is skipped.

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
import json
import os
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from floor import (MEDIUM, MEDIUM_FRAMES, MEDIUM_HW, ROOT, STEADY_FROM_FRAME, FloorProbe,  # noqa: E402
                   context_pass_writes_only, medium_shape, prompt, random_model, random_state_dict, run_regime,
                   spread)

import torch  # noqa: E402

PATCH = Path(__file__).resolve().parent / "published_cpu.patch"
MARKER = ".llrag_cpu_patch_applied"


def prepare(published: Path) -> None:
    """Apply the CPU patch to the extracted copy (once) and make its packages importable."""
    if not (published / "pipeline" / "causal_inference.py").exists():
        raise SystemExit(f"{published} does not hold the published code (pipeline/causal_inference.py missing); "
                         f"extract it first: git --git-dir=<clone> archive HEAD | tar -x -C {published}")
    if not (published / MARKER).exists():
        subprocess.run(["patch", "-p1", "-d", str(published), "-i", str(PATCH)], check=True)
        (published / MARKER).write_text(PATCH.read_text())
    easydict = types.ModuleType("easydict")
    easydict.EasyDict = AttrDict
    sys.modules.setdefault("easydict", easydict)
    sys.path.insert(0, str(published))


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
    return CausalInferencePipeline(args, torch.device("cpu"), generator=generator,
                                   text_encoder=_Text(prompt(MEDIUM)), vae=object())


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
    path = ROOT / "benchmarks" / "results" / "vs_published.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1))
    print(f"wrote {path}")
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
