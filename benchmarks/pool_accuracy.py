"""How far the compact history-pool storages move results, on the golden case (tests/data/golden).

    python benchmarks/pool_accuracy.py

For kv-half, kv-fp8 and latent storage it reports (1) the relative L2 error of the retrieved K/V, with the
pool fed the exact run's evicted frames, for every retrieval the exact run made, and (2) the
relative L2 error of the final latents of a full run with that storage versus exact storage.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the golden case's tiny backbone: tests/factory.py

import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from core.sampling import loop as pipeline  # noqa: E402
from core.retrieval.config import PoolConfig, RetrievalConfig
from core.sampling.config import SamplingConfig  # noqa: E402
from core.retrieval.encoder import load_encoder  # noqa: E402
from core.retrieval.pool import HistoryPool  # noqa: E402
from core.model.transformer import WanTransformer  # noqa: E402
from factory import golden_config  # noqa: E402
from core.sampling.loop import generate, recompute_kv  # noqa: E402
from core.app.plan import sampling_config

GOLDEN = ROOT / "tests" / "data" / "golden"


class RecordingPool(HistoryPool):
    """Exact pool that also keeps what it was given, to replay into other storages (installed in
    core.sampling.loop for one run by ``recording``; the last instance is kept in ``RecordingPool.last``)."""
    last = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.frames = []
        RecordingPool.last = self

    def append(self, k, v, latent=None):
        self.frames.append(([t.clone() for t in k], [t.clone() for t in v], latent.clone()))
        super().append(k, v, latent)

    def close(self):   # keep the entries for gather() after the run
        pass


def with_storage(storage: str) -> SamplingConfig:
    return sampling_config(retrieval=RetrievalConfig(pool=PoolConfig(storage=storage)))


def rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def golden_case():
    """(float32 backbone, prompt embeddings, retrieval encoder) of the golden case; its run: 48 frames of 8×12
    latents, seed 42, ``with_storage("kv")``."""
    model = WanTransformer(golden_config())
    model.load_state_dict(load_file(str(GOLDEN / "wan_tiny_t2v_bare.safetensors")))
    model.eval()
    return model, load_file(str(GOLDEN / "inputs.safetensors"))["prompt_embeds"], load_encoder(GOLDEN / "ae.pt")


def main() -> int:
    model, emb, enc = golden_case()
    for dtype in (torch.float32, torch.bfloat16):
        print(f"\n== compute dtype {str(dtype).replace('torch.', '')} ==")
        report(model.to(dtype), emb, enc, dtype)
    return 0


def report(model, emb, enc, dtype) -> None:
    pipeline.HistoryPool = RecordingPool
    try:
        exact = generate(model, emb, 48, (8, 12), 42, with_storage("kv"), encoder=enc)
    finally:
        pipeline.HistoryPool = HistoryPool
    exact_pool = RecordingPool.last
    text = model.encode_text(emb.to(dtype))
    print(f"{'storage':8} {'bytes/frame':>11} {'retrieved K rel.err':>20} {'retrieved V rel.err':>20} "
          f"{'latents rel.err':>16}")
    for storage in ("kv", "kv-half", "kv-fp8", "latent"):
        pool = HistoryPool(PoolConfig(storage=storage), recompute=lambda lat: recompute_kv(model, text, lat, 0.0))
        for k, v, lat in exact_pool.frames:
            pool.append(k, v, lat)
        ek, ev = [], []
        for rec in exact.retrieval_log:
            idx = torch.tensor([rec["pool_indices"]])
            k0, v0 = exact_pool.gather(idx, torch.device("cpu"), dtype)
            k1, v1 = pool.gather(idx, torch.device("cpu"), dtype)
            ek.append(rel(k1, k0))
            ev.append(rel(v1, v0))
        run = generate(model, emb, 48, (8, 12), 42, with_storage(storage), encoder=enc)
        print(f"{storage:8} {pool.bytes_per_frame:11d} {max(ek):20.3e} {max(ev):20.3e} "
              f"{rel(run.latents, exact.latents):16.3e}   (K/V: max over {len(ek)} retrievals)")


if __name__ == "__main__":
    raise SystemExit(main())
