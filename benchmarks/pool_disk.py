"""The history pool's disk tier at real frame size: a block's gather against the same disk's sequential read rate.

    python benchmarks/pool_disk.py                           # Wan 1.3B 480x832 frames (274 MiB each, bf16 kv)
    python benchmarks/pool_disk.py --family wan2.2           # LongLive 2.0 704x1280 frames (309 MiB)
    python benchmarks/pool_disk.py --frames 24 --dir /mnt/nvme/tmp --rounds 7

Writes a pool of N real-size frames (bf16 ``kv``) with ``HistoryPool.append`` to its disk tier, then, in every round
and side by side:
  sequential  K consecutive rows of that file read front to back, one row-sized read per call, once with O_DIRECT
              and once through the page cache; the faster of the two is the disk's sequential rate;
  gather      ``HistoryPool.gather`` of K random, non-adjacent entries (a block's retrieved frames) into reused
              output tensors (on a GPU the caching allocator reuses them; on this host, fresh memory would cost its
              first-touch page faults, reported once on its own as ``fresh``);
  reads       the same gather's row reads alone (the disk tier's read path, no decode).
Nothing is read from RAM: direct reads pass the page cache, and before every read through it the file is written
back and its cached pages dropped (fsync + posix_fadvise DONTNEED). A host's own cache (a VM's disk image) cannot
be dropped from here; the rounds interleave sequential and random reads so both meet it alike.

Prints the rates and the gather / sequential ratio per round and their medians; writes benchmarks/results/
pool_disk.json. The figures per block (K frames at NVMe rates) are printed with them.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402

from core.retrieval import disk  # noqa: E402
from core.retrieval.config import PoolConfig  # noqa: E402
from core.retrieval.pool import HistoryPool  # noqa: E402
from pool_benchmark import REAL_FRAMES  # noqa: E402


def real_frame(family: str) -> tuple[list[torch.Tensor], int]:
    """One frame's per-layer K [1, tokens, heads, 128] in bf16 (random) and its tokens."""
    layers, heads, defaults = REAL_FRAMES[family]
    h, w = defaults.latent_hw
    tokens = (h // 2) * (w // 2)
    torch.manual_seed(0)
    return [torch.randn(1, tokens, heads, 128).to(torch.bfloat16) for _ in range(layers)], tokens


def fill(pool: HistoryPool, k: list[torch.Tensor], frames: int) -> float:
    """Append ``frames`` frames (frame i marked by K[0][0, 0, 0, 0] = i) → seconds per frame, written back."""
    start = time.perf_counter()
    for i in range(frames):
        k[0][0, 0, 0, 0] = i
        pool.append(k, k)
        print(f"\rwriting frame {i + 1}/{frames}", end="", flush=True)
    os.fsync(pool.tiers[0].file._fd)
    print()
    return (time.perf_counter() - start) / frames


def drop_cache(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def sequential(path: str, first: int, count: int, stride: int, buf: torch.Tensor, direct: bool) -> float:
    """Seconds to read rows first..first+count−1 front to back, one ``stride``-byte read per row."""
    drop_cache(path)
    fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECT", 0) if direct else 0))
    view = memoryview(buf.numpy()).cast("B")
    try:
        start = time.perf_counter()
        for r in range(first, first + count):
            done = 0
            while done < stride:
                done += os.preadv(fd, [view[done:]], r * stride + done)
        return time.perf_counter() - start
    finally:
        os.close(fd)


def spread_rows(n: int, k: int, rng: random.Random) -> list[int]:
    """k random entries of n, no two adjacent (every read seeks)."""
    while True:
        rows = sorted(rng.sample(range(n), k))
        if all(b - a > 1 for a, b in zip(rows, rows[1:])):
            return rows


def timed_gather(pool: HistoryPool, rows: list[int], out) -> float:
    drop_cache(pool.tiers[0].path)
    start = time.perf_counter()
    k, _ = pool.gather(torch.tensor([rows]), torch.device("cpu"), torch.bfloat16, out=out)
    seconds = time.perf_counter() - start
    tokens = k.shape[2] // len(rows)
    marks = [int(k[0, 0, j * tokens, 0, 0]) for j in range(len(rows))]
    if marks != rows:
        raise SystemExit(f"gather returned frames {marks}, expected {rows}")
    return seconds


def timed_reads(pool: HistoryPool, rows: list[int]) -> float:
    """The disk tier's row reads alone, into the pool's gather buffer."""
    drop_cache(pool.tiers[0].path)
    buf = pool._gather_buffer(len(rows), torch.device("cpu"))
    start = time.perf_counter()
    for _ in pool.tiers[0].file.read_many([(r, buf.data[j]) for j, r in enumerate(rows)]):
        pass
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", choices=sorted(REAL_FRAMES), default="wan2.1")
    ap.add_argument("--frames", type=int, default=40, help="frames in the pool file (default 40: 11 GB at 1.3B)")
    ap.add_argument("--top-k", type=int, default=6, help="frames per gather (a block's retrieved frames)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--dir", default=None, help="the pool folder (default: the system's temporary folder)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "pool_disk.json"))
    args = ap.parse_args()

    k, tokens = real_frame(args.family)
    pool = HistoryPool(PoolConfig("disk", directory=args.dir))
    folder = disk.pool_folder(args.dir)
    frame = 2 * sum(x.numel() for x in k) * 2
    need, free = args.frames * frame, shutil.disk_usage(folder).free
    if need > free // 2:
        raise SystemExit(f"{args.frames} frames need {need / 1e9:.1f} GB in {folder}, which has {free / 1e9:.1f} GB "
                         f"free; keep half of it free: use --frames {max(2 * args.top_k + 2, free // 2 // frame)} "
                         f"or another --dir")
    print(f"{args.family}: {len(k)} layers x {tokens} tokens x {k[0].shape[2] * 128} x 2 (K, V) bf16 = "
          f"{frame / 2**20:.1f} MiB per frame; {args.frames} frames ({need / 1e9:.1f} GB) in {folder}")
    write_s = fill(pool, k, args.frames)
    del k
    tier = pool.tiers[0]
    path, stride, n = tier.path, tier.file.stride, args.top_k
    print(f"appended at {frame / write_s / 1e9:.2f} GB/s ({write_s:.2f} s per frame); row stride {stride} bytes")

    layers, heads = REAL_FRAMES[args.family][:2]
    shape = (layers, 1, n * tokens, heads, 128)        # 4 KiB-aligned, as gather's own: read into directly
    out = tuple(disk.aligned_bytes(2 * math.prod(shape)).view(torch.bfloat16).view(shape) for _ in range(2))
    buf = disk.aligned_bytes(stride)
    rng, rounds = random.Random(0), []
    timed_gather(pool, spread_rows(args.frames, n, rng), out)    # first touch of the gather buffers
    print(f"the disk tier reads {'directly (O_DIRECT)' if tier.file._direct >= 0 else 'through the page cache'}")
    print(f"{'round':>5} {'seq direct':>11} {'seq cached':>11} {'gather':>8} {'reads':>8} {'gather/seq':>11}  (GB/s)")
    for rnd in range(args.rounds):
        first = rng.randrange(args.frames - n + 1)
        seq_d = sequential(path, first, n, stride, buf, direct=True)
        seq_c = sequential(path, first, n, stride, buf, direct=False)
        gather = timed_gather(pool, spread_rows(args.frames, n, rng), out)
        reads = timed_reads(pool, spread_rows(args.frames, n, rng))
        rate = {name: n * stride / s / 1e9 for name, s in
                (("seq_direct", seq_d), ("seq_cached", seq_c), ("gather", gather), ("reads", reads))}
        rate["ratio"] = rate["gather"] / max(rate["seq_direct"], rate["seq_cached"])
        rounds.append(rate)
        print(f"{rnd:5d} {rate['seq_direct']:11.2f} {rate['seq_cached']:11.2f} {rate['gather']:8.2f} "
              f"{rate['reads']:8.2f} {rate['ratio']:11.2f}")
    fresh = n * stride / timed_gather(pool, spread_rows(args.frames, n, rng), None) / 1e9
    med = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    print(f"{'median':>5} {med['seq_direct']:11.2f} {med['seq_cached']:11.2f} {med['gather']:8.2f} "
          f"{med['reads']:8.2f} {med['ratio']:11.2f}")
    print(f"a gather into fresh output tensors: {fresh:.2f} GB/s (their first-touch page faults included)")
    block = n * frame
    print(f"per block: {n} frames x {frame / 2**20:.1f} MiB = {block / 2**30:.2f} GiB; "
          + ", ".join(f"{block / (r * 1e9):.2f} s at {r:g} GB/s" for r in (3.5, 7.0))
          + f", {block / (med['gather'] * 1e9):.2f} s here")
    pool.close()
    report = {"family": args.family, "frame_bytes": frame, "row_stride": stride, "frames": args.frames,
              "top_k": n, "write_s_per_frame": write_s, "rounds": rounds, "median": med, "fresh_gather": fresh,
              "block_bytes": block, "torch": torch.__version__}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
