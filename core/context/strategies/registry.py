"""Every long-context strategy by name: its published defaults, what it costs, where it comes from.

One name per strategy, everywhere (CLI ``--strategy``, nodes, docs): ``native``, ``rag``,
``infinity-rope``, ``memrope``, ``deep-forcing``. ``describe`` gives the text a user picking a strategy needs.

Defaults per backbone family: the published numbers below were set for blocks of 3 latent frames (the Wan2.1
backbones). ``StrategySpec.defaults_for(frames_per_block, family_window, family_sink)`` gives a strategy's
window, sink and options on a family with other blocks: native and rag take the family's own window and sink;
the others scale the numbers that are whole blocks in the published configs to longer blocks (see each ``scale``
function) and keep them in frames for shorter ones (frame-wise backbones), and say what they did. At blocks of 3 every strategy gets exactly its published numbers.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Callable

from . import deep_forcing, infinity_rope, memrope
from .base import Strategy, StrategyDefaults


PUBLISHED_BLOCK = 3      # latent frames per block of the configs the published numbers come from


def _published(spec: "StrategySpec", frames_per_block: int) -> StrategyDefaults:
    return StrategyDefaults(spec.window, spec.sink)


@dataclass(frozen=True)
class StrategySpec:
    """A strategy's identity and published defaults.

    ``window``/``sink``: cache frames / sink frames; ``top_k``: retrieved frames (rag only);
    ``relative_rope``: keys stored before RoPE and rotated at slot positions; ``switch``: what a prompt
    switch does by default, ``switches``: the switch modes that make sense with it; ``params``: the
    strategy's own settings (a frozen dataclass of defaults); ``needs``: the window it needs, in words.
    """
    name: str
    title: str
    summary: str
    tradeoffs: str
    memory: str
    reference: str
    window: int
    sink: int
    relative_rope: bool
    switch: str = "recache"
    switches: tuple[str, ...] = ("recache", "none")
    top_k: int = 0
    params: object = None
    needs: str = "window ≥ sink + top_k + one block"
    make: Callable[[object], Strategy] = field(default=lambda params: Strategy(), repr=False)
    check: Callable[[object, int, object], None] = field(default=lambda policy, fpb, params: None, repr=False)
    follows_family: bool = False
    scale: Callable[["StrategySpec", int], StrategyDefaults] = field(default=_published, repr=False)

    def defaults_for(self, frames_per_block: int, family_window: int, family_sink: int) -> StrategyDefaults:
        """Window, sink and options of this strategy on a family with blocks of ``frames_per_block`` frames
        whose own sliding window is ``family_window`` frames with ``family_sink`` sink frames."""
        if self.follows_family:
            return StrategyDefaults(family_window, family_sink)
        if frames_per_block == PUBLISHED_BLOCK:
            return StrategyDefaults(self.window, self.sink)
        if frames_per_block < PUBLISHED_BLOCK:
            # shorter blocks (frame-wise backbones) keep the published numbers in frames: whole blocks scaled down
            # would leave a third of the context (∞-RoPE 3 frames, MemRoPE no recent frame at all) for the same cost
            return StrategyDefaults(self.window, self.sink, scaled=(
                f"window {self.window} and sink {self.sink} kept in frames at blocks of {frames_per_block} (published "
                f"at blocks of {PUBLISHED_BLOCK}; scaled by blocks: window {self.scale(self, frames_per_block).window})"))
        return self.scale(self, frames_per_block)

    def resolve_params(self, options) -> object:
        """The defaults with ``options`` (name → value) applied; unknown names are an error listing the known."""
        options = dict(options or {})
        if self.params is None:
            if options:
                raise ValueError(f"strategy '{self.name}' has no options; got {sorted(options)}")
            return None
        known = [f.name for f in fields(self.params)]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ValueError(f"strategy '{self.name}' has no option {', '.join(unknown)}; its options are "
                             f"{', '.join(known)}")
        return replace(self.params, **options)


SPECS: dict[str, StrategySpec] = {s.name: s for s in (
    StrategySpec(
        "native", "Sliding window", "the published baseline: a window of recent frames plus a sink",
        tradeoffs="Simplest and fastest; forgets everything older than the window, so identity and colours drift "
                  "on long videos.",
        memory="Constant: window frames of K/V per layer.",
        reference="Self-Forcing / LongLive sliding window (absolute RoPE, K cached after RoPE)",
        window=12, sink=1, relative_rope=False, follows_family=True),
    StrategySpec(
        "rag", "LongLive-RAG retrieval", "retrieves the most similar past frames into the context of every block",
        tradeoffs="Brings back frames that left the window (returning subjects and places stay consistent); "
                  "needs a history pool that grows with the video.",
        memory="Window frames of K/V per layer twice (cache + context buffers) plus a history pool that grows by "
               "one frame of K/V per layer for every generated frame (host RAM by default; can spill to disk).",
        reference="LongLive-RAG (arXiv 2606.02553), github.com/qixinhu11/LongLive-RAG",
        window=12, sink=1, top_k=6, relative_rope=True, needs="window ≥ sink + top_k + one block",
        follows_family=True),
    StrategySpec(
        "infinity-rope", "∞-RoPE", "block-relativistic RoPE: the cache always sits at positions 0…window−1",
        tradeoffs="Training-free and as cheap as the sliding window; positions never leave the trained range. "
                  "Prompt switches flush the cache (and can hard-cut a scene with a # mark).",
        memory="Constant: window frames of K/V per layer (+ the same again as context buffers).",
        reference="yesiltepe-hidir/infinity-rope commit 63d7b84 (arXiv 2511.20649), configs/self_forcing_dmd.yaml",
        window=6, sink=1, relative_rope=True, switch="flush", switches=("flush", "recache", "none"),
        params=infinity_rope.InfinityRopeParams(), needs="window ≥ sink + 2 (the flush) and ≥ sink + one block",
        make=infinity_rope.InfinityRope, check=infinity_rope.check, scale=infinity_rope.scale),
    StrategySpec(
        "memrope", "MemRoPE", "folds frames that leave the window into two memory tokens (long and short EMA)",
        tradeoffs="Constant memory for any length (an hour of video in a 12-frame cache); old frames survive only "
                  "as an average, so details of returning subjects are not recovered exactly.",
        memory="Constant: window frames of K/V per layer (+ the same again as context buffers), two of them memory.",
        reference="YoungRaeKimm/MemRoPE commit b89bf5b (arXiv 2603.12513), configs/{selfforcing,longlive}/memrope_30s.yaml",
        window=12, sink=3, relative_rope=True, switch="none", switches=("none",),
        params=memrope.MemRopeParams(), needs="window ≥ sink + 2 memory frames + one block",
        make=memrope.MemRope, check=memrope.check, scale=memrope.scale),
    StrategySpec(
        "deep-forcing", "Deep Forcing", "a deep sink (about half the window) plus the history tokens recent frames "
                                        "attend to most",
        tradeoffs="Training-free; keeps the tokens that matter instead of whole old frames. Implemented per the "
                  "paper; no reference code: defaults not stated in the paper are ours.",
        memory="Constant: window frames of K/V per layer (+ context buffers) plus one block of queries per layer.",
        reference="Deep Forcing (arXiv 2512.05081), per the paper; no reference code",
        window=21, sink=10, relative_rope=True, switch="none", switches=("none",),
        params=deep_forcing.DeepForcingParams(), needs="window ≥ sink + compressed + recent frames + one block",
        make=deep_forcing.DeepForcing, check=deep_forcing.check, scale=deep_forcing.scale),
)}
NAMES = tuple(SPECS)


def get_spec(name: str) -> StrategySpec:
    """The spec of ``name``; an unknown name is an error that lists the known ones."""
    if name not in SPECS:
        raise ValueError(f"strategy '{name}' is unknown; use one of {', '.join(NAMES)}")
    return SPECS[name]


def describe(name: str) -> dict:
    """Plain data about a strategy for UIs and docs: name, title, summary, trade-offs, memory, reference,
    defaults (window, sink, top_k, switch, options)."""
    s = get_spec(name)
    options = {f.name: getattr(s.params, f.name) for f in fields(s.params)} if s.params is not None else {}
    return {"name": s.name, "title": s.title, "summary": s.summary, "tradeoffs": s.tradeoffs, "memory": s.memory,
            "reference": s.reference, "needs": s.needs,
            "defaults": {"window": s.window, "sink": s.sink, "top_k": s.top_k, "switch": s.switch, "options": options}}
