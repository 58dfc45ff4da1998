"""The command line's device-memory options (core/sampling/memory.py): each auto = chosen from the free memory."""
from __future__ import annotations

import argparse

from ..model.fp8_linear import WEIGHTS
from ..sampling.memory import AUTO, CONTEXTS, KVS, MemorySettings


def arg_type(parse):
    """An argparse type from a parser that raises ValueError (the message is shown as is; the CLI's options use it
    too)."""
    def convert(text):
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    convert.__name__ = parse.__name__
    return convert


def add_memory_options(p: argparse.ArgumentParser) -> None:
    """How the run uses the device's memory (core/sampling/memory.py); each auto = chosen from the free memory."""
    g = p.add_argument_group("device memory (auto: chosen from the free memory, lossless choices first)")
    g.add_argument("--context-buffers", choices=CONTEXTS, default=AUTO,
                   help="relative-RoPE strategies (rag, infinity-rope, memrope, deep-forcing): one context buffer per "
                        "layer (fastest) or one shared by all layers (same output, ~5%% slower, the window's K/V "
                        "once instead of twice)")
    g.add_argument("--kv-cache", choices=KVS, default=AUTO,
                   help="exact: K/V in the compute dtype (the published behaviour); fp8: the window's K/V and the "
                        "retrieved frames as float8 with a scale per token and head (about half the bytes, "
                        "approximate). auto: exact unless only fp8 fits")
    g.add_argument("--weights", choices=WEIGHTS, default=AUTO,
                   help="native: the weights in the compute dtype; fp8: kept (an fp8 file) or quantised (a bf16 one) to "
                        "float8 with a scale per output channel, about half the bytes (approximate); auto: fp8 for an "
                        "fp8 file on a GPU, or when only fp8 weights fit, else native")
    g.add_argument("--block-swap", type=arg_type(parse_block_swap), default=AUTO, metavar="auto|N",
                   help="keep N transformer blocks' weights in host memory, streamed to the GPU ahead of their use "
                        "(same output, slower); auto: as few as fit, 0 = none")


def parse_block_swap(text: str) -> int | str:
    """--block-swap: 'auto' or a number of blocks ≥ 0."""
    if text == AUTO:
        return AUTO
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise ValueError(f"block swap '{text}' must be auto or a number of blocks ≥ 0")
    return n


def memory_settings(args) -> MemorySettings:
    """What the device-memory options ask for (auto where unset)."""
    return MemorySettings(getattr(args, "context_buffers", AUTO), getattr(args, "kv_cache", AUTO),
                          getattr(args, "block_swap", AUTO))
