"""The backbone interface: what the AR loop, the re-cache and the memory budget ask of a model.

Everything above the model (core/sampling/loop.py, core/context/recache.py, core/sampling/budget.py) is
written against these protocols, not against ``WanTransformer`` (core/model/transformer.py, today's one
implementation). A model that provides them runs in the loop with every cache strategy:

  ``BackboneModel``     its sizes (``cfg``: a ``BackboneConfig``), its parameters (they decide the device and
                        the compute dtype), the prompt's conditioning (``encode_text``), the forward with an
                        attention context (``__call__``) and the K/V-only forward of the context pass
                        (``write_cache``)
  ``AttentionContext``  what a self-attention layer hands its q/k/v to (the KV cache, the re-cache, a
                        capture); the model itself knows no cache
  ``CacheWriter``       an AttentionContext that can also store K/V without attending (``write_cache``)
  ``TextContext``       the prompt's per-layer cross-attention K/V, made by ``encode_text``, passed back as is

Where a run computes is ``compute_place(model)``: the model's ``compute_device`` / ``compute_dtype`` when it
states them (a model whose weights another memory manager places, e.g. streamed from RAM, or kept in another
dtype and cast per layer), else its first parameter's device and dtype.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Protocol, Sequence, runtime_checkable

import torch


OPTIONAL = ("compute_device", "compute_dtype")     # what a BackboneModel may state besides the protocol


def compute_place(model) -> tuple[torch.device, torch.dtype]:
    """(device, dtype) a run on ``model`` computes in: its ``compute_device`` / ``compute_dtype`` attributes when
    it has them, else its first parameter's."""
    device, dtype = getattr(model, "compute_device", None), getattr(model, "compute_dtype", None)
    if device is None or dtype is None:
        param = next(model.parameters())
        device, dtype = device or param.device, dtype or param.dtype
    return torch.device(device), dtype


@dataclass
class TextContext:
    """Cross-attention keys/values of one prompt batch, per layer: (k, v) or (k, v, bias). k and v are
    batch-first ([B, heads, L, head_dim]); a bias ([1, 1, 1, L], shared by the batch) broadcasts."""
    kv: list[tuple[torch.Tensor, ...]] = field(default_factory=list)

    def repeat_batch(self, n: int) -> "TextContext":
        """Each prompt's K/V repeated ``n`` times in a row along the batch ([B] → [B·n]), biases shared."""
        return TextContext([(k.repeat_interleave(n, 0), v.repeat_interleave(n, 0), *rest) for k, v, *rest in self.kv])


@runtime_checkable
class AttentionContext(Protocol):
    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q/k/v [B, F·tokens, heads, head_dim] before RoPE (head_dim contiguous, as a projection's output)
        → attention output, same layout."""


@runtime_checkable
class CacheWriter(Protocol):
    """What ``BackboneModel.write_cache`` needs: an AttentionContext that can also store K/V alone."""

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor: ...

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """k/v [B, F·tokens, heads, head_dim] before RoPE → stored for later forwards; nothing attended."""


@runtime_checkable
class BackboneConfig(Protocol):
    """The sizes read above the model. A frame of latents [C = in_dim, H, W] becomes
    (H / patch_size[1])·(W / patch_size[2]) tokens of ``dim`` features, ``num_heads`` × ``head_dim`` in
    attention, in each of ``num_layers`` layers (the cache keeps K/V per layer)."""
    dim: int
    num_layers: int
    num_heads: int
    in_dim: int                          # latent channels in (16 Wan2.1, 48 Wan2.2)
    out_dim: int                         # channels of the flow: the loop needs out_dim == in_dim
    text_dim: int                        # width of the prompt embeddings given to ``encode_text``
    text_len: int                        # prompt rows at most (the cross-attention K/V the memory budget counts)
    ffn_dim: int                         # width of a layer's feed-forward (its largest activation)
    patch_size: tuple[int, int, int]     # (time, height, width) latents per token; the loop needs time 1

    @property
    def head_dim(self) -> int: ...


@runtime_checkable
class BackboneModel(Protocol):
    """A backbone the AR loop can drive (``WanTransformer`` is one)."""
    cfg: BackboneConfig

    blocks: Sequence[torch.nn.Module]    # its layers in order (the budget's and block swap's unit)

    def parameters(self, recurse: bool = True) -> Iterator[torch.nn.Parameter]:
        """Its weights: the first one's device and dtype are the run's (unless it states ``compute_device`` and
        ``compute_dtype``: ``compute_place``); the budget counts them all."""

    def buffers(self, recurse: bool = True) -> Iterator[torch.Tensor]:
        """Its other tensors (e.g. the scales of fp8 weights): the budget counts them too."""

    def encode_text(self, prompt_embeds: torch.Tensor) -> TextContext:
        """prompt_embeds [B, L, text_dim] (device and dtype of the parameters) → the prompt's conditioning."""

    def __call__(self, x: torch.Tensor, t: torch.Tensor, text: TextContext,
                 ctx: AttentionContext | None = None) -> torch.Tensor:
        """x [B, in_dim, F, H, W] noisy latents, t [B, F] timesteps (float32, 0..1000) → flow, same layout.
        Every layer's self-attention goes through ``ctx`` (None: the frames attend to themselves)."""

    def write_cache(self, x: torch.Tensor, t: torch.Tensor, text: TextContext, ctx: CacheWriter) -> None:
        """What ``__call__`` would hand to ``ctx`` at every layer, the last layer's K/V through ``ctx.write``,
        and nothing else (the context pass: nothing reads the output)."""
