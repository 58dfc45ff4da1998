"""The bounds of one run (core/sampling/limits.py): every size beyond them is refused by the planner, the config
and the step parsers in one line naming the bound, before anything is allocated; the bounds themselves run."""
import pytest

from core.app.plan import RunRequest, plan_run
from core.app.default_family import default_family
from core.sampling import limits
from core.sampling.request import SamplingRequest
from core.sampling.samplers import get_sampler

FAMILY = default_family().defaults


def plan(**fields):
    sampling = fields.pop("sampling", SamplingRequest())
    if not any(k in fields for k in ("frames", "video_frames", "seconds")):
        fields["frames"] = 12
    return plan_run(RunRequest(sampling, **fields), FAMILY)


@pytest.mark.parametrize("fields, words", [
    ({"frames": 30_000_000}, f"beyond the bound of one run, {limits.MAX_SECONDS} s"),
    ({"video_frames": 10**9}, f"beyond the bound of one run, {limits.MAX_SECONDS} s"),
    ({"seconds": 1e12}, f"at most {limits.MAX_SECONDS} s"),
    ({"seconds": float("nan")}, f"at most {limits.MAX_SECONDS} s"),
    ({"seconds": float("inf")}, f"at most {limits.MAX_SECONDS} s"),
    ({"latent_hw": (60000, 104000)}, f"beyond the bound of {limits.MAX_SIDE_PX} px a side"),
    ({"width": 100_000, "height": 480}, f"beyond the bound of {limits.MAX_SIDE_PX} px a side"),
    ({"sampling": SamplingRequest(window=10_000_000)}, f"beyond the bound of {limits.MAX_WINDOW}"),
    ({"sampling": SamplingRequest(sampling_steps=2_000_000_000)}, f"beyond the bound of {limits.MAX_STEPS}"),
    ({"sampling": SamplingRequest(steps=(500,) * (limits.MAX_STEPS + 1))}, f"beyond the bound of {limits.MAX_STEPS}"),
])
def test_a_size_beyond_the_bounds_is_refused_in_one_line(fields, words):
    with pytest.raises(ValueError) as err:
        plan(**fields)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_the_bounds_themselves_plan():
    fmt = FAMILY.latent
    longest = plan(seconds=limits.MAX_SECONDS)
    assert longest.frames <= limits.max_latent_frames(fmt, FAMILY.frames_per_block)
    assert plan(video_frames=limits.max_video_frames(fmt)).frames <= limits.max_latent_frames(fmt, FAMILY.frames_per_block)
    side = limits.MAX_SIDE_PX
    assert plan(width=side, height=side).latent_hw == (side // fmt.stride,) * 2
    assert plan(sampling=SamplingRequest(window=limits.MAX_WINDOW)).config.window == limits.MAX_WINDOW


@pytest.mark.parametrize("sampler, text", [("renoise", "1000," * 5000), ("unipc", "9" * 100_000),
                                           ("unipc", "2000000000"), ("renoise", ",".join(["500"] * (limits.MAX_STEPS + 1)))])
def test_a_steps_text_beyond_the_bounds_is_refused_before_it_is_split(sampler, text):
    with pytest.raises(ValueError, match="beyond the bound") as err:
        get_sampler(sampler).parse_steps(text)
    assert "\n" not in str(err.value) and len(str(err.value)) < 300
