"""Block swap: the weights of the last N transformer blocks live in host memory and are streamed to the device
just ahead of their use, so the device holds the rest of the model plus at most two swapped blocks.

    swap = swap_blocks(model, 8, "cuda")     # blocks L-8 … L-1 in pinned host memory, the rest on the GPU
    generate(model, ...)                     # unchanged: every forward streams the 8 blocks through
    swap.undo()                              # or unswap_blocks(model): every weight back on the device
    swap_bytes(model, 8)                     # the device bytes this saves / still needs (for the memory budget)
    blocks_to_swap(model, short)             # the fewest blocks that save ``short`` device bytes (an ``auto``)

Which blocks: the LAST N. Every forward runs the blocks in order, so the first swapped block's copy is issued at
the end of the previous forward (or of ``encode_text``) and runs behind the head, everything the loop does between
two forwards, the next forward's embeddings and all L-N resident blocks before it: with the first N it would
have only the head and the embeddings to hide behind. The patch embedding, whose parameter gives the loop the
run's device and dtype, is never swapped.

Schedule (double buffer): when swapped block i begins (its forward, the context pass's K/V-only ``write_kv``, or
its prompt K/V in ``encode_text``), the compute stream waits for block i's copy (a CUDA event) and block i's
parameters are pointed at the device copy; then block i+1's copy is issued on a side stream while block i
computes. When block i ends its parameters point at the host tensors again and the device copy is released;
after the last swapped block the first one's copy for the next forward is issued. So at most two swapped blocks
are on the device at once (i and i+1), one between forwards. Every parameter AND buffer of a block moves (an
fp8 layer's weight and its scale buffer alike); the ``Parameter`` objects stay the same, only their data moves.

On CUDA the host tensors are pinned and the copies are asynchronous: a copy's device memory is allocated on the
compute stream (it is freed there after use), and the side stream first waits for the work the compute stream
has queued, since that memory may have just been released by a block still being computed. On any other device
(e.g. CPU) the "stream" is a plain synchronous copy and the results are bit-identical to no swap.

Eager code only: ``WanTransformer.compile_blocks`` would guard on the moving weights. Call ``unswap_blocks``
before moving the model with ``.to()``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from ..files.memory_trace import HOST, allocating, host_device

_SWAP = "_block_swap"                                        # the model's attribute holding its BlockSwap
_WRAPPED = (("", "forward"), ("", "write_kv"), ("cross_attn", "text_kv"))   # what runs a block's weights


@dataclass(frozen=True)
class SwapBytes:
    """What swapping ``blocks`` blocks does to the weights' bytes (each tensor at its own dtype unless told)."""
    blocks: int          # swapped blocks (the last ones)
    block: int           # bytes of the largest swapped block (parameters + buffers)
    host: int            # bytes kept in host memory (pinned on CUDA): the swapped blocks
    buffer: int          # device bytes of swapped weights at the peak: two swapped blocks (double buffer)
    total: int           # every weight of the model

    @property
    def saved(self) -> int:
        """Device bytes the swap saves at the peak."""
        return self.host - self.buffer

    @property
    def device(self) -> int:
        """Device bytes the weights still need at the peak."""
        return self.total - self.saved


def _tensor_bytes(t: torch.Tensor, dtype: torch.dtype | None) -> int:
    size = t.element_size() if dtype is None or not t.is_floating_point() else dtype.itemsize
    return t.numel() * size


def _module_bytes(module: nn.Module, dtype: torch.dtype | None = None) -> int:
    return sum(_tensor_bytes(t, dtype) for t in (*module.parameters(), *module.buffers()))


def swap_bytes(model: nn.Module, n: int, dtype: torch.dtype | None = None) -> SwapBytes:
    """The bytes of swapping the last ``n`` of ``model.blocks`` (a ``WanTransformer``, possibly on the meta device,
    swapped or not). ``dtype``: count every floating-point tensor at this dtype's size (as core/sampling/budget.py
    counts weights at the run's dtype); None: at each tensor's own (fp8 weights 1 byte, their scales 4)."""
    _check_n(model, n)
    blocks = list(model.blocks)[len(model.blocks) - n:]
    sizes = sorted((_module_bytes(b, dtype) for b in blocks), reverse=True)
    return SwapBytes(n, sizes[0] if sizes else 0, sum(sizes), sum(sizes[:2]), _module_bytes(model, dtype))


def blocks_to_swap(model: nn.Module, short: int, dtype: torch.dtype | None = None) -> int | None:
    """The fewest blocks to swap so that the weights need ``short`` fewer device bytes (0 when ``short`` <= 0);
    None when swapping every block does not save that much. For an ``auto`` setting: ``short`` = what the run
    needs on the device - what is free there."""
    if short <= 0:
        return 0
    return next((n for n in range(len(model.blocks) + 1) if swap_bytes(model, n, dtype).saved >= short), None)


def _check_n(model: nn.Module, n: int) -> None:
    layers = len(model.blocks)
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= layers:
        raise ValueError(f"block swap: {n!r} blocks asked, but this model has {layers} blocks; "
                         f"give a whole number from 0 (no swap) to {layers} (every block)")


class CopyTransfer:
    """The transfer on a device without streams (CPU): a plain, synchronous copy."""

    def __init__(self, device: torch.device):
        self.device = device

    def copy(self, host: list[torch.Tensor]) -> tuple[list[torch.Tensor], object]:
        """Device copies of ``host`` and a token that ``ready`` waits for."""
        with allocating("weights"):
            return [torch.empty_like(h, device=self.device).copy_(h) for h in host], None

    def ready(self, token) -> None:
        """Make the compute wait for the copy that returned ``token``."""


class CudaTransfer(CopyTransfer):
    """Host→device copies on one side stream, ordered before their use by a CUDA event."""

    def __init__(self, device: torch.device):
        super().__init__(device)
        self.stream = torch.cuda.Stream(device)

    def copy(self, host):
        compute = torch.cuda.current_stream(self.device)
        with allocating("weights"):
            out = [torch.empty_like(h, device=self.device) for h in host]    # the compute stream's: freed there after use
        self.stream.wait_stream(compute)      # that memory may be a released block's that queued work still reads
        with torch.cuda.stream(self.stream):
            for o, h in zip(out, host):
                o.copy_(h, non_blocking=True)
            event = torch.cuda.Event()
            event.record(self.stream)
        return out, event

    def ready(self, token) -> None:
        torch.cuda.current_stream(self.device).wait_event(token)


class _Slot:
    """One swapped block: where each of its tensors sits (owner module, name, parameter or buffer), the host
    tensors, and the device copy while there is one."""

    def __init__(self, block: nn.Module, host_of):
        self.block = block
        self.places = [(m, name, True) for m in block.modules() for name, p in m._parameters.items() if p is not None]
        self.places += [(m, name, False) for m in block.modules() for name, b in m._buffers.items() if b is not None]
        self.host = [host_of(self._get(place)) for place in self.places]
        self.device: list[torch.Tensor] | None = None
        self.token = None
        self.depth = 0            # nested uses in progress (the device copy is attached while > 0)
        self.point(self.host)

    @staticmethod
    def _get(place) -> torch.Tensor:
        m, name, param = place
        return m._parameters[name].data if param else m._buffers[name]

    def point(self, tensors: list[torch.Tensor]) -> None:
        """Make the block's parameters and buffers these tensors (the Parameter objects stay the same)."""
        for (m, name, param), t in zip(self.places, tensors):
            if param:
                m._parameters[name].data = t
            else:
                m._buffers[name] = t


class BlockSwap:
    """The swap of the last ``n`` of ``model.blocks`` to host memory for computing on ``device``
    (see the module's docstring). Made by ``swap_blocks``; ``undo`` restores the model."""

    def __init__(self, model: nn.Module, n: int, device, transfer: CopyTransfer | None = None):
        _check_n(model, n)
        self.model, self.device = model, torch.device(device)
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.transfer = transfer or (CudaTransfer if self.device.type == "cuda" else CopyTransfer)(self.device)
        self.indices = list(range(len(model.blocks) - n, len(model.blocks)))
        self.copies = 0                 # host→device copies issued so far
        self.peak = 0                   # most swapped blocks with a device copy at once
        pin = self.device.type == "cuda"
        self.slots = [_Slot(model.blocks[i], lambda t: _host_copy(t, pin)) for i in self.indices]
        _move(model, self.device, skip={id(m) for s in self.slots for m in s.block.modules()})
        self._wrapped: list[tuple[object, str]] = []
        for j, slot in enumerate(self.slots):
            for owner, name in _WRAPPED:
                obj = getattr(slot.block, owner) if owner else slot.block
                setattr(obj, name, self._using(j, getattr(obj, name)))
                self._wrapped.append((obj, name))
        object.__setattr__(model, _SWAP, self)
        if self.slots:
            self._prefetch(0)           # the first forward's first swapped block

    def loaded(self) -> list[int]:
        """The model's block indices that have a device copy now (in use or prefetched)."""
        return [i for i, s in zip(self.indices, self.slots) if s.device is not None]

    def _using(self, j: int, run):
        def call(*args, **kwargs):
            self._enter(j)
            try:
                return run(*args, **kwargs)
            finally:
                self._exit(j)
        return call

    def _prefetch(self, j: int) -> None:
        slot = self.slots[j]
        if slot.device is None:
            slot.device, slot.token = self.transfer.copy(slot.host)
            self.copies += 1
            self.peak = max(self.peak, len(self.loaded()))

    def _drop(self, slot: _Slot) -> None:
        """Release a device copy that is not in use (the compute waits for its copy first: its memory is the
        compute stream's)."""
        if slot.device is not None and slot.depth == 0:
            self.transfer.ready(slot.token)
            slot.device, slot.token = None, None

    def _enter(self, j: int) -> None:
        slot = self.slots[j]
        if slot.depth == 0:
            for other in self.slots:     # a copy prefetched for a use that did not come (e.g. a forward that raised)
                if other is not slot:
                    self._drop(other)
            self._prefetch(j)
            self.transfer.ready(slot.token)
            slot.point(slot.device)
            if j + 1 < len(self.slots):
                self._prefetch(j + 1)    # runs while block j computes
        slot.depth += 1

    def _exit(self, j: int) -> None:
        slot = self.slots[j]
        slot.depth -= 1
        if slot.depth == 0:
            slot.point(slot.host)
            slot.device, slot.token = None, None
            if j + 1 == len(self.slots):
                self._prefetch(0)        # the next forward's first swapped block, behind the head and embeddings

    def undo(self, device=None) -> None:
        """Every swapped block's weights back to ``device`` (default: the compute device; "cpu" keeps them in
        host memory), the blocks' own methods restored, the model no longer swapped."""
        if getattr(self.model, _SWAP, None) is not self:
            return
        target = self.device if device is None else torch.device(device)
        for slot in self.slots:
            if slot.depth:
                raise RuntimeError("block swap: undo was called while a swapped block is running; "
                                   "undo after the forward returns")
            self._drop(slot)
            slot.point([h.to(target) for h in slot.host])
        for obj, name in self._wrapped:
            del obj.__dict__[name]
        self._wrapped, self.slots, self.indices = [], [], []
        object.__delattr__(self.model, _SWAP)


def _host_copy(t: torch.Tensor, pin: bool) -> torch.Tensor:
    """``t`` in host memory (pinned when ``pin``); ``t`` itself when it already is."""
    with allocating(HOST):
        h = t.detach().to(host_device(), copy=True)     # its own storage, counted as RAM by a memory trace
        return h.pin_memory() if pin and not h.is_pinned() else h


def _move(model: nn.Module, device: torch.device, skip: set[int]) -> None:
    """Every parameter and buffer of ``model``'s modules not in ``skip`` (module ids) onto ``device``."""
    for m in model.modules():
        if id(m) in skip:
            continue
        for p in m._parameters.values():
            if p is not None and p.device != device:
                p.data = p.data.to(device)
        for name, b in m._buffers.items():
            if b is not None and b.device != device:
                m._buffers[name] = b.to(device)


def swap_blocks(model: nn.Module, n: int, device=None) -> BlockSwap:
    """Keep the weights of the last ``n`` of ``model.blocks`` (a ``WanTransformer``) in host memory, pinned when
    ``device`` is CUDA, and stream each to ``device`` ahead of its use in every forward, ``write_cache`` and
    ``encode_text``; everything else of the model is moved to ``device`` (default: where its first parameter,
    the patch embedding, is). ``n`` = 0 swaps nothing; ``n`` = the number of blocks swaps every block. A model
    already swapped is re-swapped (its blocks pass through host memory, never all onto the device).
    Returns the ``BlockSwap`` (``undo()``, ``loaded()``); ``unswap_blocks(model)`` undoes it too."""
    _check_n(model, n)
    target = torch.device(device) if device is not None else next(model.parameters()).device
    unswap_blocks(model, host_device())
    return BlockSwap(model, n, target)


def unswap_blocks(model: nn.Module, device=None) -> None:
    """Undo ``swap_blocks`` on ``model`` (nothing if it is not swapped): see ``BlockSwap.undo``."""
    swap = getattr(model, _SWAP, None)
    if swap is not None:
        swap.undo(device)


def swapped_blocks(model: nn.Module) -> int:
    """How many of ``model``'s blocks are swapped now (0 when none)."""
    swap = getattr(model, _SWAP, None)
    return len(swap.slots) if swap is not None else 0
