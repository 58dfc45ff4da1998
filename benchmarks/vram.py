"""Peak device memory of every family × strategy × memory setting at the published size, measured by the
real-size dry run (core/app/dry_run.py: the block loop on the meta device, every allocation counted), next to
the memory estimate (core/sampling/budget.py) and what was live at the peak; then the dry run's validation on
real tensors at a size this CPU runs, and the goals.

    python benchmarks/vram.py                       # everything (minutes: the meta device computes nothing, but
                                                    # torch runs its shape functions in Python)
    python benchmarks/vram.py --family wan22 --strategy rag native --jobs 2
    python benchmarks/vram.py --validate-only

Figures in GiB (2^30 bytes), bf16 compute, batch 1, the family's published size, window and sink.
"""
from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.app import facts as F  # noqa: E402
from core.app.dry_run import trace_run  # noqa: E402
from core.app.plan import strategy_config  # noqa: E402
from core.app.tiny import tiny_model  # noqa: E402
from core.sampling.budget import device_bytes, run_bytes  # noqa: E402
from core.sampling.memory import EXACT, MemorySettings  # noqa: E402
from memory_variants import VARIANTS, GOALS, prepare, run_config, runs  # noqa: E402

GiB = 2 ** 30
DTYPE = torch.bfloat16
VALIDATION = dict(dim=512, layers=4, heads=4, text_dim=64)      # the medium size of benchmarks/floor.py
VALIDATION_HW = (16, 24)


def families(names):
    out = [f for f in F.families() if F.released(f) is not None]
    return [f for f in out if not names or any(n.lower() in (F.key(f) + f.name).lower() for n in names)]


def measure(job):
    """One row: (family key, strategy, variant) → figures."""
    fam_key, strategy, variant = job
    torch.set_grad_enabled(False)
    family = F.family_by_key(fam_key)
    memory, weights = VARIANTS[variant]
    model = prepare(F._model(family), weights, DTYPE)
    cfg = run_config(F._config(family, strategy), variant)
    begin = time.perf_counter()
    traced = trace_run(model, cfg, family.defaults.latent_hw, dtype=DTYPE, memory=memory)
    est = device_bytes(model, cfg, family.defaults.latent_hw, 1, DTYPE, memory)
    return dict(family=family.name, strategy=strategy, variant=variant, peak=traced.peak, estimate=est.total,
                kinds=traced.kinds(), seconds=time.perf_counter() - begin)


def validate() -> list[dict]:
    """The dry run against the same trace on real tensors (float32, CPU), and the estimate against both."""
    torch.set_grad_enabled(False)
    model = tiny_model(0, **VALIDATION)
    rows = []
    for strategy in ("native", "rag", "memrope"):
        for variant in ("exact", "shared"):
            memory, _ = VARIANTS[variant]
            cfg = strategy_config(strategy)
            dry = trace_run(model, cfg, VALIDATION_HW, memory=memory)
            real = trace_run(model, cfg, VALIDATION_HW, memory=memory, dry=False)
            est = device_bytes(model, cfg, VALIDATION_HW, 1, torch.float32, memory).total
            rows.append(dict(strategy=strategy, variant=variant, dry=dry.peak, real=real.peak, estimate=est))
    return rows


def host_ram(ram_gib: int, minutes: float = 2) -> list[str]:
    """The history pool of a ``minutes`` 480p retrieval run (Wan 1.3B) with the auto budget on a machine of
    ``ram_gib`` GiB: what stays in RAM, what spills to disk (the planner's own placement, core/app/plan.py)."""
    from core.app.plan import _pool_placement, plan_run, RunRequest
    from core.retrieval.config import PoolConfig, RetrievalConfig
    from core.sampling.request import SamplingRequest
    family = F.family_by_key("wan21")
    out = []
    for storage in ("kv", "kv-fp8"):
        request = SamplingRequest(strategy="rag", retrieval=RetrievalConfig(pool=PoolConfig(storage=storage)))
        plan = plan_run(RunRequest(request, seconds=60 * minutes), family.defaults)
        need = run_bytes(F._model(family), plan.config, plan.latent_hw, plan.frames, 1, DTYPE)
        room = ram_gib * GiB - 6 * GiB                        # the OS, ComfyUI and the rest of the desktop
        placed = _pool_placement(plan, need.pool, {"host": room, "device": 0}, {"host": need.host, "device": 0})
        out.append(f"{minutes:g} min 480p rag, pool {storage} ({need.pool_frame_bytes / 2**20:.1f} MiB per frame, "
                   f"{need.pool / GiB:.1f} GiB in all), {ram_gib} GiB RAM, auto budget: {placed.get('host', 0) / GiB:.1f}"
                   f" GiB in RAM, {placed.get('disk', 0) / GiB:.1f} GiB on disk")
    return out


def _kinds(kinds) -> str:
    return ", ".join(f"{k} {v / GiB:.2f}" for k, v in kinds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", nargs="*", default=[])
    ap.add_argument("--strategy", nargs="*", default=list(F.STRATEGIES))
    ap.add_argument("--variant", nargs="*", default=list(VARIANTS))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--validate-only", action="store_true")
    args = ap.parse_args()
    if not args.validate_only:
        jobs = [(F.key(f), s, v) for f in families(args.family) for s in args.strategy if F.strategy_runs(s, f)
                for v in args.variant if runs(s, v)]
        with ProcessPoolExecutor(args.jobs) as pool:
            rows = list(pool.map(measure, jobs))
        print("| family | strategy | memory settings | dry-run peak | estimate | estimate / peak | live at the peak |")
        print("|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['family']} | {r['strategy']} | {r['variant']} | {r['peak'] / GiB:.2f} | "
                  f"{r['estimate'] / GiB:.2f} | {r['estimate'] / r['peak']:.3f} | {_kinds(r['kinds'])} |")
        print()
        found = {(r["family"], r["strategy"], r["variant"]): r["peak"] for r in rows}
        for name, (fam, strategy, variant, goal) in GOALS.items():
            peak = found.get((fam, strategy, variant))
            if peak is not None:
                print(f"goal {name}: {peak / GiB:.2f} GiB (goal ≤ {goal} GiB): {'met' if peak <= goal * GiB else 'NOT met'}")
        print()
        for ram in (32, 64):
            print("\n".join(host_ram(ram)))
        print()
    print("validation at the medium size (4 layers of 512, 16×24 latents, float32, CPU): the dry run (meta) against "
          "the same trace on real tensors, and the estimate against the real run")
    print("| strategy | memory settings | real tensors MiB | dry run MiB | dry / real | estimate MiB | estimate / real |")
    print("|---|---|---|---|---|---|---|")
    for r in validate():
        print(f"| {r['strategy']} | {r['variant']} | {r['real'] / 2**20:.1f} | {r['dry'] / 2**20:.1f} | "
              f"{r['dry'] / r['real']:.3f} | {r['estimate'] / 2**20:.1f} | {r['estimate'] / r['real']:.3f} |")


if __name__ == "__main__":
    main()
