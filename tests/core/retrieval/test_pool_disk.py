"""The disk tier's read path at real-size settings (rows padded to 4 KiB, O_DIRECT, several readers, reads straight
into the caller's tensors), on small frames: the same values as the RAM tier, and one clear line when the disk fails."""
import errno
import os

import pytest
import torch

from core.files.atomic import WriteError
from core.retrieval import disk
from core.retrieval.config import PoolConfig
from core.retrieval.pool import HistoryPool

LAYERS, B, TOKENS, HEADS, D = 3, 2, 16, 2, 64        # one layer's K of one frame: 8 KiB in float32
INDICES = torch.tensor([[7, 1, 4], [2, 9, 5]])


@pytest.fixture
def direct(monkeypatch):
    """Rows of any size are padded and read as real-size rows are."""
    monkeypatch.setattr(disk, "DIRECT_MIN_ROW", 0)


def reads_directly(folder) -> bool:
    """Whether ``folder``'s file system takes O_DIRECT (tmpfs does not: there the page-cache path is what runs)."""
    if not disk._O_DIRECT:
        return False
    probe = folder / "probe"
    probe.write_bytes(b"")
    try:
        os.close(os.open(probe, os.O_RDONLY | disk._O_DIRECT))
        return True
    except OSError:
        return False
    finally:
        probe.unlink()


def frames(n, dtype=torch.float32):
    torch.manual_seed(0)
    return [([torch.randn(B, TOKENS, HEADS, D).to(dtype) for _ in range(LAYERS)],
             [torch.randn(B, TOKENS, HEADS, D).to(dtype) for _ in range(LAYERS)]) for _ in range(n)]


def filled(config, kv):
    pool = HistoryPool(config)
    for k, v in kv:
        pool.append(k, v)
    return pool


def gather(pool, dtype=torch.float32, out=None):
    return pool.gather(INDICES, torch.device("cpu"), dtype, out=out)


@pytest.mark.parametrize("storage", ["kv", "kv-half", "kv-fp8"])
def test_direct_reads_return_what_the_ram_tier_returns(tmp_path, direct, storage):
    kv = frames(10)
    ram = filled(PoolConfig("host", storage=storage), kv)
    on_disk = filled(PoolConfig("disk", storage=storage, directory=str(tmp_path)), kv)
    file = on_disk.tiers[0].file
    assert file.stride % disk.DIRECT_ALIGN == 0 and file.stride >= ram._layout.row_bytes
    assert os.path.getsize(file.path) == 10 * B * file.stride
    for a, b in zip(gather(ram), gather(on_disk)):
        assert torch.equal(a, b)
    assert (file._direct >= 0) == reads_directly(tmp_path)


def test_exact_rows_read_from_disk_are_the_frames_appended(tmp_path, direct):
    kv = frames(10)
    pool = filled(PoolConfig("disk", directory=str(tmp_path)), kv)
    k, v = gather(pool)
    for b, row in enumerate(INDICES.tolist()):
        for j, i in enumerate(row):
            assert torch.equal(k[:, b, j * TOKENS:(j + 1) * TOKENS], torch.stack(kv[i][0])[:, b])
            assert torch.equal(v[:, b, j * TOKENS:(j + 1) * TOKENS], torch.stack(kv[i][1])[:, b])


def test_gather_into_the_callers_tensors_reuses_them(tmp_path, direct):
    kv = frames(10)
    pool = filled(PoolConfig("disk", directory=str(tmp_path)), kv)
    fresh = gather(pool)
    out = (torch.full_like(fresh[0], 7.0), torch.full_like(fresh[1], 7.0))   # not 4 KiB-aligned: decoded into
    got = gather(pool, out=out)
    assert got[0] is out[0] and got[1] is out[1]
    assert torch.equal(out[0], fresh[0]) and torch.equal(out[1], fresh[1])
    with pytest.raises(ValueError, match=r"^history pool: gather into a torch.float32 tensor of shape .*; expected a "
                                         r"contiguous torch.float32 tensor of shape \(3, 2, 48, 2, 64\)"):
        gather(pool, out=(fresh[0][:, :1], fresh[1]))


def test_short_reads_are_continued(tmp_path, direct, monkeypatch):
    kv = frames(10)
    expected = gather(filled(PoolConfig("host"), kv))
    pool = filled(PoolConfig("disk", directory=str(tmp_path)), kv)
    real, sizes = os.preadv, []

    def short(fd, views, offset):     # at most 3 pages per call: the direct path goes on after each
        room, cut = 3 * 4096, []
        for view in views:
            cut.append(view[:room])
            room -= len(cut[-1])
            if not room:
                break
        sizes.append(sum(len(c) for c in cut))
        return real(fd, cut, offset)
    monkeypatch.setattr(disk.os, "preadv", short)
    for a, b in zip(expected, gather(pool)):
        assert torch.equal(a, b)
    assert max(sizes) <= 3 * 4096 and len(sizes) > 10
    assert (pool.tiers[0].file._direct >= 0) == reads_directly(tmp_path)   # aligned short reads go on directly


def test_a_device_that_refuses_direct_reads_is_read_through_the_page_cache(tmp_path, direct, monkeypatch):
    kv = frames(10)
    expected = gather(filled(PoolConfig("host"), kv))
    pool = filled(PoolConfig("disk", directory=str(tmp_path)), kv)
    real = os.preadv
    pool.tiers[0].file._open_direct()
    direct_fd = pool.tiers[0].file._direct

    def refusing(fd, views, offset):
        if fd == direct_fd:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(fd, views, offset)
    monkeypatch.setattr(disk.os, "preadv", refusing)
    for a, b in zip(expected, gather(pool)):
        assert torch.equal(a, b)
    assert pool.tiers[0].file._direct == -1


def test_a_read_error_is_one_line_naming_the_file_and_the_fix(tmp_path, direct, monkeypatch):
    pool = filled(PoolConfig("disk", directory=str(tmp_path)), frames(10))
    path = pool.tiers[0].path

    def failing(fd, views, offset):
        raise OSError(errno.EIO, "Input/output error")
    monkeypatch.setattr(disk.os, "preadv", failing)
    with pytest.raises(OSError) as info:
        gather(pool)
    message = str(info.value)
    assert "\n" not in message and message.startswith("[Errno 5] history pool: reading row ")
    assert f"of '{path}' failed: Input/output error; the pool's disk failed" in message
    assert message.endswith("then run the same command again")


def test_a_truncated_file_is_one_line(tmp_path, direct):
    pool = filled(PoolConfig("disk", directory=str(tmp_path)), frames(10))
    file = pool.tiers[0].file
    os.truncate(file.path, 4 * B * file.stride)          # rows 0–7 remain
    with pytest.raises(OSError, match=rf"history pool: '.*' ends before row \d+ \(it holds {4 * B * file.stride} "
                                      r"bytes, the row ends at byte \d+\); the pool's disk failed"):
        gather(pool)


def test_a_full_disk_on_write_is_one_line_and_the_file_is_deleted_on_close(tmp_path, direct, monkeypatch):
    pool = filled(PoolConfig("disk", directory=str(tmp_path)), frames(2))

    def full(file, data, offset):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(disk, "_pwrite", full)
    k, v = frames(1)[0]
    with pytest.raises(WriteError) as info:
        pool.append(k, v)
    message = str(info.value)
    assert "\n" not in message and message.startswith("history pool: writing frame 2 to '")
    assert "failed: No space left on device" in message and message.endswith(disk.POOL_FIX)
    assert len(pool) == 2
    pool.close()
    assert list(tmp_path.iterdir()) == []
