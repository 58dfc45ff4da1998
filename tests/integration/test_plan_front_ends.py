"""The CLI and the AR Block Sampler node plan a run the same way: the same request, given through either front
end, gives an equal plan (config, frames, size, blocks)."""
import importlib
import sys

import pytest

from pack import PACK     # the nodes and the core they import


def module(name: str):
    return importlib.import_module(f"{PACK.__name__}.{name}") if f"{PACK.__name__}.{name}" not in sys.modules \
        else sys.modules[f"{PACK.__name__}.{name}"]


cli, plan_run = module("core.app.cli"), module("core.app.plan").plan_run
RetrievalConfig = module("core.retrieval.config").RetrievalConfig
request, schedule = module("nodes.request"), module("nodes.schedule")
strategy, settings = module("nodes.strategy"), module("nodes.settings")
WAN21, WAN22 = (f.defaults for f in module("core.formats").FAMILIES)

# (name, family, CLI options, node inputs); node inputs not given are the widgets' defaults (auto). The CLI's
# generate runs rag unless told (retrieval is its main job); the node runs native until Retrieve Context is connected.
CASES = [
    ("auto", WAN21, ["--mode", "native"], {}),
    ("auto on LongLive 2.0", WAN22, ["--mode", "native"], {}),
    ("memrope with a window", WAN21, ["--strategy", "memrope", "--window", "16"],
     {"strategy": dict(name="memrope", window=16)}),
    ("deep-forcing options", WAN22, ["--strategy", "deep-forcing", "--strategy-options", "compressed_frames=4"],
     {"strategy": dict(name="deep-forcing", options=(("compressed_frames", 4),))}),
    ("rag with retrieval settings", WAN21, ["--mode", "rag", "--top-k", "3", "--recent-exclude", "2"],
     {"retrieval": RetrievalConfig(3, 2)}),
    ("sampler widgets", WAN21, ["--mode", "native", "--sink", "2", "--window", "15", "--steps", "1000,500", "--shift", "3",
                                "--noise-contract", "reference"],
     {"sink_size": 2, "local_attn_size": 15, "steps": "1000,500", "shift": 3.0, "noise": "reference"}),
    ("switch settings", WAN21, ["--mode", "rag", "--switch", "none", "--no-global-sink", "--retrieval-scope",
                                "segment"],
     {"retrieval": RetrievalConfig(), "switch": dict(mode="none", global_sink=False, retrieval_scope="segment")}),
    ("unipc steps and size", WAN22, ["--mode", "native", "--sampling-steps", "2", "--width", "640", "--height", "352"],
     {"steps": "2", "width": 640, "height": 352}),
    ("advanced settings", WAN22, ["--mode", "native", "--sampler", "renoise", "--steps", "1000,500", "--context-noise", "10",
                                  "--shot-rope-offset", "4", "--no-multi-shot-sink"],
     {"steps": "1000,500", "settings": dict(sampler="renoise", context_noise=10.0, shot_rope_offset=4.0,
                                            shot_sink=False)}),
    ("guidance and a clean re-cache at cuts", WAN22, ["--mode", "native", "--guidance-scale", "3",
                                                      "--shot-clean-recache"],
     {"settings": dict(guidance_scale=3.0, shot_clean_recache=True)}),
]


def cli_plan(family, options, length):
    args = cli.build_parser().parse_args(["generate", "--backbone", "x", "--prompt", "p", "--length", str(length),
                                          *options])
    (name,) = cli.strategy_names(args)
    return plan_run(cli.run_request(args, name), family)


def node_plan(family, inputs, length):
    given = dict(inputs)
    strat = strategy.StrategyInput(**given.pop("strategy")) if "strategy" in given else None
    switch = schedule.SwitchChoice(**given.pop("switch")) if "switch" in given else None
    extra = settings.SamplerSettings(**given.pop("settings")) if "settings" in given else None
    widgets = {"sink_size": -1, "local_attn_size": 0, "frames_per_block": 0, "steps": "auto", "shift": 0.0,
               "noise": "per-block", "width": 0, "height": 0, **given}
    sampling = request.sampling_request(family, strat, widgets.pop("retrieval", None), switch, widgets["noise"],
                                        widgets["sink_size"], widgets["local_attn_size"], widgets["frames_per_block"],
                                        widgets["steps"], widgets["shift"], extra)
    return plan_run(request.run_request(sampling, length, widgets["width"], widgets["height"], None), family)


@pytest.mark.parametrize("name, family, options, inputs", CASES, ids=[c[0] for c in CASES])
def test_the_cli_and_the_sampler_node_plan_the_same_run(name, family, options, inputs):
    a, b = cli_plan(family, options, 121), node_plan(family, inputs, 121)
    assert a.config == b.config
    assert (a.frames, a.latent_hw, a.blocks) == (b.frames, b.latent_hw, b.blocks)
    assert a.info() == b.info()


def test_the_cases_are_not_all_the_same_plan():
    plans = {str(cli_plan(f, o, 121).config) for _, f, o, _ in CASES}
    assert len(plans) == len(CASES)
