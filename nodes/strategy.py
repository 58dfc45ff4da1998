"""Context Strategy and Compare Grid: pick how the sampler remembers, and see the strategies side by side."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.formats import FAMILIES
from ..core.sampling.config import SWITCH_MODES, SamplingConfig, SwitchConfig
from ..core.sampling.defaults import FamilyDefaults
from ..core.context.strategies import NAMES, describe
from ..core.files.grid import tile
from ..core.app.fact_text import fragment
from .bridge import io
from .schedule import DEFAULT_SWITCH, SwitchChoice

CATEGORY = "LongLive-RAG/sampling"
AUTO = "strategy default"
GRID_INPUTS = 6
WAN21 = FAMILIES[0].defaults


@dataclass(frozen=True)
class StrategyInput:
    """LLRAG_STRATEGY: a strategy by name and what the artist changed from its published defaults."""
    name: str
    window: int | None = None
    sink: int | None = None
    switch: str | None = None
    options: tuple[tuple[str, float], ...] = ()


STRATEGY = io.Custom("LLRAG_STRATEGY")          # carries a StrategyInput


def parse_options(text: str) -> dict[str, float]:
    """'compressed_frames=5, alpha_long=0.01' (commas or lines) → {name: number}; a clear error otherwise."""
    out = {}
    for item in (p.strip() for line in str(text).splitlines() for p in line.split(",")):
        if not item:
            continue
        name, sep, value = item.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = None
        if not sep or not name.strip() or number is None:
            raise ValueError(f"strategy option '{item}' must read name=number, e.g. compressed_frames=5")
        out[name.strip()] = int(number) if number.is_integer() and "." not in value else number
    return out


def tooltip_table() -> str:
    """One line per strategy: its name, what it does and what it costs, its defaults (the combo's tooltip)."""
    return fragment("strategy-choices")


def strategy_info(cfg: SamplingConfig) -> str:
    """What a run with ``cfg`` uses, in one line (the sampler's info and the strategy node's preview)."""
    d = describe(cfg.strategy)
    options = ", ".join(f"{k}={v}" for k, v in dict(d["defaults"]["options"], **dict(cfg.strategy_options)).items())
    return (f"strategy {cfg.strategy} ({d['title']}): window {cfg.window}, sink {cfg.sink}"
            + (f", top_k {cfg.retrieval.top_k}" if cfg.retrieval is not None else "")
            + f", prompt switch '{cfg.switch.mode}'" + (f", {options}" if options else "") + f". Ref: {d['reference']}")


def sampling_config(strategy: StrategyInput | None, retrieval_config, switch: SwitchChoice | None = None,
                    family: FamilyDefaults = WAN21, **fields) -> SamplingConfig:
    """The sampler's run config over the backbone ``family``'s published settings (``fields``: SamplingConfig
    fields, None = the family's). Without a Context Strategy: the family's sliding window, rag or native by
    whether Retrieve Context is connected; with one, the strategy's window and sink (its defaults unless set on
    the strategy node; native and rag default to the family's)."""
    switch = switch or SwitchChoice()
    if strategy is None:
        return family.sampling(retrieval_config, switch.resolve(family.switch), **fields)
    if retrieval_config is not None and strategy.name != "rag":
        raise ValueError(f"Retrieve Context is connected but the Context Strategy is '{strategy.name}', which "
                         "retrieves nothing: disconnect Retrieve Context or set the strategy to rag")
    default = family.switch_for(strategy.name)
    if strategy.switch is not None:
        mode = strategy.switch
    elif switch.mode is None or switch == SwitchChoice(DEFAULT_SWITCH.mode):
        mode = default                   # earlier workflows: the schedule's default recache = the strategy's own
    else:
        mode = switch.mode
    fields.update(strategy=strategy.name, window=strategy.window, sink=strategy.sink,
                  strategy_options=tuple(sorted(strategy.options)))
    return family.sampling(retrieval_config, SwitchConfig(mode, switch.global_sink, switch.retrieval_scope), **fields)


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
                io.Int.Input("window", default=0, min=0, max=64,
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
        info = strategy_info(sampling_config(value, None))     # checks the choice now (on the Wan2.1 family)
        return io.NodeOutput(value, info)


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
