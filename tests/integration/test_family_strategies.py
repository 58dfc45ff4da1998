"""Every long-context strategy runs on every backbone family with its defaults there (scaled to the family's
blocks where the published numbers are in blocks), through the run planner, on a tiny model of each family."""
import pytest
import torch

from core.app.plan import RunRequest, plan_run
from core.context.strategies import NAMES
from core.formats import FAMILIES
from core.model.transformer import WanTransformer
from core.retrieval.config import RetrievalConfig
from core.sampling.loop import generate
from core.sampling.prompts import PromptSchedule, Segment
from core.sampling.request import SamplingRequest

from factory import tiny_model


def tiny(channels: int) -> WanTransformer:
    return tiny_model(0, channels=channels)


# every family, and the variants that run otherwise (frame-wise Causal Forcing++: blocks of one frame)
RUNS = [(f.name, f.defaults) for f in FAMILIES] + [(p, d) for f in FAMILIES for p, d in f.variants.items()
                                                   if p.startswith("Causal-Forcing++")]


@pytest.fixture(scope="module", params=[d for _, d in RUNS], ids=[n for n, _ in RUNS])
def defaults(request):
    return request.param


@pytest.fixture(scope="module")
def model(defaults):
    return tiny(defaults.latent.channels)


@pytest.mark.parametrize("name", NAMES)
def test_every_strategy_generates_on_every_family_past_its_first_eviction(defaults, model, name):
    retrieval = RetrievalConfig(top_k=2, recent_exclude=0) if name == "rag" else None
    first = plan_run(RunRequest(SamplingRequest(strategy=name, retrieval=retrieval), frames=defaults.frames_per_block),
                     defaults)
    nf = defaults.frames_per_block
    frames = first.config.window + 2 * nf - first.config.window % nf     # whole blocks, past the window
    g = torch.Generator().manual_seed(1)
    prompts = PromptSchedule((Segment(0, torch.randn(1, 6, 32, generator=g), "a"),
                              Segment(frames // 2 // nf * nf, torch.randn(1, 6, 32, generator=g), "b")))
    plan = plan_run(RunRequest(SamplingRequest(strategy=name, retrieval=retrieval), frames=frames, latent_hw=(4, 4)),
                    defaults)
    res = generate(model, prompts, plan.frames, plan.latent_hw, 0, plan.config)
    assert res.latents.shape == (1, defaults.latent.channels, frames, 4, 4)
    assert torch.isfinite(res.latents).all()
    if name == "rag":
        assert res.retrieval_log, "the run evicted frames, so later blocks retrieve"
    assert len(res.switches) == 1
