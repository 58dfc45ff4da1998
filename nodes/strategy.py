"""Context Strategy and Compare Grid: pick how the sampler remembers, and see the strategies side by side."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.app.plan import strategy_line
from ..core.context.strategies import NAMES, describe
from ..core.files.grid import tile
from ..core.formats import FAMILIES
from ..core.sampling.config import SWITCH_MODES
from ..core.sampling.limits import MAX_WINDOW
from ..core.sampling.request import SamplingRequest, parse_options, resolve
from ..core.app.fact_text import fragment
from .bridge import io

CATEGORY = "LongLive-RAG/sampling"
AUTO = "strategy default"
GRID_INPUTS = 6


@dataclass(frozen=True)
class StrategyInput:
    """LLRAG_STRATEGY: a strategy by name and what the artist changed from its published defaults."""
    name: str
    window: int | None = None
    sink: int | None = None
    switch: str | None = None
    options: tuple[tuple[str, float], ...] = ()


STRATEGY = io.Custom("LLRAG_STRATEGY")          # carries a StrategyInput


def tooltip_table() -> str:
    """One line per strategy: its name, what it does and what it costs, its defaults (the combo's tooltip)."""
    return fragment("strategy-choices")


def strategy_preview(value: StrategyInput) -> str:
    """What the strategy runs with on each backbone family (its defaults differ with the family's blocks); a
    choice that cannot run on any family is refused with the first family's reason."""
    lines, errors = [], []
    for family in FAMILIES:
        request = SamplingRequest(strategy=value.name, window=value.window, sink=value.sink, options=value.options,
                                  switch=value.switch)
        try:
            lines.append(f"{family.name} backbones: {strategy_line(resolve(request, family.defaults))}")
        except ValueError as exc:
            errors.append(f"{family.name} backbones: {exc}")
    if not lines:
        raise ValueError(errors[0])
    return "\n".join(lines + errors)


class ContextStrategy(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="LongLiveRAG_ContextStrategy", display_name="Context Strategy (LongLive-RAG)", category=CATEGORY,
            description=("How the AR Block Sampler remembers what left its window: the plain sliding window "
                         "(native), LongLive-RAG retrieval (rag), ∞-RoPE, MemRoPE or Deep Forcing — each with its "
                         "published defaults, on the same backbone. Deep Forcing is implemented per its paper (no "
                         "reference code). Connect to the sampler's 'strategy' input; its window and sink then "
                         "replace the sampler's."),
            inputs=[
                io.Combo.Input("strategy", options=list(NAMES), default="infinity-rope", tooltip=tooltip_table()),
                io.Int.Input("window", default=0, min=0, max=MAX_WINDOW,
                             tooltip="KV cache frames; 0 = the strategy's default on the backbone: "
                                     f"{fragment('strategy-windows')}."),
                io.Int.Input("sink", default=-1, min=-1, max=32,
                             tooltip="Frames never evicted; -1 = the strategy's default on the backbone: "
                                     f"{fragment('strategy-sinks')}."),
                io.Combo.Input("prompt_switch", options=[AUTO, *SWITCH_MODES], default=AUTO,
                               tooltip="What a Prompt Schedule's switch does: recache (LongLive), flush (∞-RoPE's KV "
                                       "flush; a line marked # also cuts the scene), none (only the prompt changes). "
                                       f"strategy default: {fragment('strategy-switches')}."),
                io.String.Input("options", default="", multiline=True,
                                tooltip="The strategy's own settings as name=value lines; empty = published values: "
                                        f"{fragment('strategy-options')}. Deep Forcing's compressed_frames is C, in "
                                        "frames' worth of tokens."),
            ],
            outputs=[STRATEGY.Output(display_name="strategy", tooltip="For the AR Block Sampler's 'strategy' input."),
                     io.String.Output(display_name="info", tooltip="The settings this strategy will run with.")],
        )

    @classmethod
    def execute(cls, strategy, window, sink, prompt_switch, options) -> io.NodeOutput:
        value = StrategyInput(strategy, window or None, None if sink < 0 else sink,
                              None if prompt_switch == AUTO else prompt_switch,
                              tuple(sorted(parse_options(options).items())))
        return io.NodeOutput(value, strategy_preview(value))


class CompareGrid(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        images = [io.Image.Input(f"images_{i}", optional=i > 1, tooltip=f"Video {i} (frames from a Decode node).")
                  for i in range(1, GRID_INPUTS + 1)]
        return io.Schema(
            node_id="LongLiveRAG_CompareGrid", display_name="Compare Grid (LongLive-RAG)", category="LongLive-RAG",
            description=("Tiles up to six videos of the same size into one, each under its label: the same prompt "
                         "and seed under different strategies, side by side. Shorter videos hold their last frame."),
            inputs=[images[0],                   # required inputs first: ComfyUI lists them before optional ones
                    io.String.Input("labels", default="native\nrag\ninfinity-rope\nmemrope\ndeep-forcing", multiline=True,
                                    tooltip="One label per connected video, in input order (one per line)."),
                    io.Int.Input("columns", default=0, min=0, max=GRID_INPUTS,
                                 tooltip="Videos per row; 0 = as square as possible."),
                    *images[1:]],
            outputs=[io.Image.Output(display_name="images", tooltip="The grid video's frames → CreateVideo.")],
        )

    @classmethod
    def execute(cls, labels, columns, **images) -> io.NodeOutput:
        videos = [images[f"images_{i}"] for i in range(1, GRID_INPUTS + 1) if images.get(f"images_{i}") is not None]
        names = [line.strip() for line in labels.splitlines() if line.strip()]
        if len(names) < len(videos):
            raise ValueError(f"{len(videos)} videos are connected but 'labels' has {len(names)} lines; give one "
                             "label per video")
        grid = tile([v.detach().cpu() for v in videos], names[:len(videos)], columns)
        return io.NodeOutput(torch.from_numpy(grid).float().div(255.0))
