"""Block samplers (core/sampling/samplers): each one behind one protocol, chosen by name, never by the loop."""
import pytest
import torch

from core.app.plan import sampling_config

from core.families.wan21_t2v import WAN21_T2V
from core.families.wan22_ti2v import DEFAULTS as WAN22
from core.model.transformer import WanTransformer
from core.sampling import samplers
from core.sampling.loop import generate
from core.sampling.samplers import NAMES, NoisyBlock, get_sampler
from core.sampling.timesteps import FlowMatchTimesteps
from core.sampling.unipc import UniPCSolver

from factory import tiny_model

WAN21 = WAN21_T2V.defaults
B, F, C, H, W = 1, 3, 16, 4, 6


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=2)


@pytest.fixture(scope="module")
def text(model):
    return model.encode_text(torch.randn(B, 5, 32, generator=torch.Generator().manual_seed(4)))


def flow_of(model, text, calls=None):
    """The model as a sampler sees it: x [B, F, C, H, W] at t [B, F] → flow, same layout."""
    def flow(x, t):
        if calls is not None:
            calls.append(t.clone())
        return model(x.permute(0, 2, 1, 3, 4), t, text).permute(0, 2, 1, 3, 4)
    return flow


def noisy_block(model, text, seed=0, clean=None, calls=None, draws=None, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(B, F, C, H, W, generator=g)

    def fresh():
        if draws is not None:
            draws.append(1)
        return torch.randn(B * F, C, H, W, generator=g)
    return NoisyBlock(noise, flow_of(model, text, calls), fresh, clean, torch.device("cpu"), dtype)


# ---------------------------------------------------------------- the block's arithmetic as it was written in the loop
def renoise_as_before(model, text, noise, fresh, steps, shift, clean=None, dtype=torch.float32):
    """In the compute dtype throughout; x0 from flow in float64."""
    schedule = FlowMatchTimesteps(shift)
    timesteps = schedule.denoising_timesteps(steps, True)
    x = noise.to(dtype)
    for i, ts in enumerate(timesteps):
        t = torch.full((B, F), float(ts))
        if clean is not None:
            x[:, :clean.shape[1]], t[:, :clean.shape[1]] = clean, 0
        flow = flow_of(model, text)(x, t)
        x0 = schedule.x0_from_flow(flow.flatten(0, 1), x.flatten(0, 1), t.flatten()).unflatten(0, (B, F))
        if clean is not None:
            x0[:, :clean.shape[1]] = clean
        if i + 1 < len(timesteps):
            t_next = torch.full((B * F,), float(timesteps[i + 1]))
            x = schedule.add_noise(x0.flatten(0, 1), fresh().to(dtype), t_next).unflatten(0, (B, F))
    return x0


def unipc_as_before(model, text, noise, steps, shift, clean=None, dtype=torch.float32):
    """The solver's state in float32 whatever the compute dtype; the model sees x in the compute dtype."""
    solver = UniPCSolver(steps, shift)
    x = noise.clone()
    for ts in solver.timesteps.tolist():
        t = torch.full((B, F), float(ts))
        if clean is not None:
            x[:, :clean.shape[1]], t[:, :clean.shape[1]] = clean, 0
        x = solver.step(flow_of(model, text)(x.to(dtype), t).float(), x)
        if clean is not None:
            x[:, :clean.shape[1]] = clean
    return x.to(dtype)


# ---------------------------------------------------------------- the registry
def test_every_sampler_is_one_registry_entry_under_its_name():
    assert NAMES == ("renoise", "unipc", "rolling")
    for name in NAMES:
        assert get_sampler(name).name == name


def test_an_unknown_sampler_is_an_error_that_lists_the_known_ones():
    with pytest.raises(ValueError, match="sampler 'euler' is unknown; use one of renoise, unipc"):
        get_sampler("euler")
    with pytest.raises(ValueError, match="sampler 'euler' is unknown; use one of renoise, unipc"):
        sampling_config(sampler="euler")


def test_the_config_gives_the_sampler_object_of_its_name():
    assert sampling_config(sampler="unipc").block_sampler is get_sampler("unipc")
    assert sampling_config().block_sampler is get_sampler("renoise")


def test_each_sampler_checks_its_own_steps():
    with pytest.raises(ValueError, match="steps must list at least one timestep"):
        sampling_config(sampler="renoise", steps=())
    with pytest.raises(ValueError, match="sampling steps 0 must be ≥ 1"):
        sampling_config(sampler="unipc", sampling_steps=0)
    sampling_config(sampler="unipc", steps=())              # unipc reads no timesteps


# ---------------------------------------------------------------- noise draws
@pytest.mark.parametrize("steps", [(1000,), (1000, 500), (1000, 750, 500, 250)])
def test_renoise_draws_one_fresh_noise_per_step_after_the_first(model, text, steps):
    cfg = sampling_config(steps=steps)
    sampler, draws, calls = cfg.block_sampler, [], []
    sampler.denoise(noisy_block(model, text, calls=calls, draws=draws), sampler.step_list(cfg))
    assert cfg.renoises_per_block == sampler.noise_draws(cfg) == len(draws) == len(steps) - 1
    assert len(calls) == len(steps)


@pytest.mark.parametrize("count", [1, 3, 4])
def test_unipc_draws_no_fresh_noise_and_calls_the_model_once_per_solver_step(model, text, count):
    cfg = sampling_config(sampler="unipc", sampling_steps=count)
    sampler, draws, calls = cfg.block_sampler, [], []
    sampler.denoise(noisy_block(model, text, calls=calls, draws=draws), sampler.step_list(cfg))
    assert cfg.renoises_per_block == sampler.noise_draws(cfg) == len(draws) == 0
    assert [float(t[0, 0]) for t in calls] == UniPCSolver(count, 5.0).timesteps.tolist()


# ---------------------------------------------------------------- a block denoised by each, against the old loop
@pytest.fixture(scope="module")
def half(model):
    """The tiny model in bfloat16 and its prompt."""
    m = WanTransformer(model.cfg).to(torch.bfloat16)
    m.load_state_dict(model.state_dict())
    return m.eval().requires_grad_(False), m.encode_text(torch.randn(B, 5, 32, dtype=torch.bfloat16))


def in_dtype(model, text, half, dtype):
    return (model, text) if dtype == torch.float32 else half


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_renoise_block_is_the_loops_former_arithmetic(model, text, half, dtype):
    m, tx = in_dtype(model, text, half, dtype)
    cfg = sampling_config(steps=(1000, 750, 500, 250))
    block = noisy_block(m, tx, seed=1, dtype=dtype)
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(B, F, C, H, W, generator=g)
    expected = renoise_as_before(m, tx, noise, lambda: torch.randn(B * F, C, H, W, generator=g), cfg.steps, 5.0,
                                 dtype=dtype)
    x0 = cfg.block_sampler.denoise(block, cfg.block_sampler.step_list(cfg))
    assert x0.dtype == dtype and torch.equal(x0, expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_unipc_block_is_the_loops_former_arithmetic(model, text, half, dtype):
    m, tx = in_dtype(model, text, half, dtype)
    cfg = sampling_config(sampler="unipc", sampling_steps=4)
    block = noisy_block(m, tx, seed=1, dtype=dtype)
    expected = unipc_as_before(m, tx, block.noise, 4, 5.0, dtype=dtype)
    x0 = cfg.block_sampler.denoise(block, cfg.block_sampler.step_list(cfg))
    assert x0.dtype == dtype and torch.equal(x0, expected)


@pytest.mark.parametrize("name", [n for n in NAMES if n != "rolling"])     # rolling: whole blocks only (below)
def test_given_frames_stay_clean_at_timestep_0_with_every_sampler(model, text, name):
    clean = torch.randn(B, 1, C, H, W, generator=torch.Generator().manual_seed(7))
    cfg = sampling_config(sampler=name, steps=(1000, 500), sampling_steps=3)
    calls = []
    x0 = cfg.block_sampler.denoise(noisy_block(model, text, clean=clean, calls=calls), cfg.block_sampler.step_list(cfg))
    assert torch.equal(x0[:, :1], clean)
    assert all((t[:, 0] == 0).all() and (t[:, 1:] > 0).all() for t in calls)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(B, F, C, H, W, generator=g)
    expected = (renoise_as_before(model, text, noise, lambda: torch.randn(B * F, C, H, W, generator=g), (1000, 500),
                                  5.0, clean) if name == "renoise" else unipc_as_before(model, text, noise, 3, 5.0, clean))
    assert torch.equal(x0, expected)


# ---------------------------------------------------------------- steps text and summaries
def test_renoise_parses_timesteps_into_the_steps_field():
    assert get_sampler("renoise").parse_steps("1000, 750,500") == {"steps": (1000, 750, 500)}
    with pytest.raises(ValueError, match="steps '1000;500' must be comma-separated integers"):
        get_sampler("renoise").parse_steps("1000;500")
    with pytest.raises(ValueError, match="at least one timestep"):
        get_sampler("renoise").parse_steps(",")


def test_unipc_parses_a_step_count_into_the_sampling_steps_field():
    assert get_sampler("unipc").parse_steps(" 6 ") == {"sampling_steps": 6}
    with pytest.raises(ValueError, match="steps '1000,750': the unipc sampler takes a number of solver steps"):
        get_sampler("unipc").parse_steps("1000,750")
    with pytest.raises(ValueError, match="at least 1 solver step"):
        get_sampler("unipc").parse_steps("0")


@pytest.mark.parametrize("name, text, summary", [("renoise", "1000,500", "steps 1000,500"),
                                                 ("unipc", "6", "UniPC 6 steps")])
def test_parsed_steps_make_a_config_that_describes_them_back(name, text, summary):
    sampler = get_sampler(name)
    cfg = sampling_config(sampler=name, **sampler.parse_steps(text))
    assert sampler.describe(cfg) == summary


def test_a_familys_summary_names_its_samplers_steps():
    assert "steps 1000,750,500,250" in WAN21.describe() and "UniPC 4 steps" in WAN22.describe()


def test_another_sampler_than_the_familys_brings_its_published_steps():
    on_ll2 = sampling_config(WAN22, sampler="renoise")
    assert on_ll2.steps == get_sampler("renoise").published["steps"] == (1000, 750, 500, 250)
    assert sampling_config(WAN21, sampler="unipc").sampling_steps == get_sampler("unipc").published["sampling_steps"]
    assert sampling_config(WAN22, sampler="renoise", steps=(1000, 500)).steps == (1000, 500)    # given steps win
    assert sampling_config(WAN22).sampling_steps == WAN22.sampling_steps


# ---------------------------------------------------------------- the loop goes through the registry
class OneStep:
    """A sampler the loop has never heard of: x0 = noise − flow at timestep 1000 (one model call)."""
    name, summary, steps_help, published = "one-step", "one flow step", "ignored", {}

    def __init__(self):
        self.blocks = []

    def check(self, cfg):
        pass

    def noise_draws(self, cfg):
        return 0

    def step_list(self, cfg):
        return 1000.0

    def denoise(self, block, steps):
        self.blocks.append(block.shape)
        x = block.noise.to(device=block.device, dtype=block.dtype)
        x, t = block.hold(x, block.timestep(steps))
        return block.hold(x - block.flow(x, t), t)[0]

    def parse_steps(self, text):
        return {}

    def describe(self, settings):
        return "one step"


def test_a_new_sampler_is_one_registry_entry_and_the_loop_runs_it(model, monkeypatch):
    one = OneStep()
    monkeypatch.setitem(samplers.registry.SAMPLERS, "one-step", one)
    cfg = sampling_config(sampler="one-step")
    emb = torch.randn(1, 5, 32, generator=torch.Generator().manual_seed(3))
    image = torch.randn(1, C, 1, H, W)
    res = generate(model, emb, 7, (H, W), 0, cfg, start=image)
    assert one.blocks == [(1, 3), (1, 3)]                    # the image's 1-frame block is replayed, not denoised
    assert torch.equal(res.latents[:, :, :1], image)
    clamp = generate(model, emb, 6, (H, W), 0, sampling_config(sampler="one-step",
                                                              start_block="clamp"), start=image)
    assert torch.equal(clamp.latents[:, :, :1], image) and one.blocks[2:] == [(1, 3), (1, 3)]


def test_the_loop_names_no_sampler():
    import inspect
    import core.sampling.loop as loop
    source = inspect.getsource(loop)
    assert not any(f'"{name}"' in source or f"'{name}'" in source for name in NAMES)


def test_a_tiny_wan22_config_runs_both_samplers_end_to_end():
    m = tiny_model(0, channels=48)
    emb = torch.randn(1, 5, 32)
    for name in NAMES:
        res = generate(m, emb, 6, (4, 6), 0, sampling_config(sampler=name))
        assert res.latents.shape == (1, 48, 6, 4, 6) and torch.isfinite(res.latents).all()
