import pytest
import torch

from core.sampling.timesteps import FlowMatchTimesteps


def test_warped_steps_are_grid_timesteps_at_1000_minus_step():
    ts = FlowMatchTimesteps(shift=5.0).denoising_timesteps([1000, 750, 500, 250])
    assert ts.tolist() == pytest.approx([1000.0, 937.5, 833.3333, 625.0], abs=1e-3)


def test_unwarped_steps_are_used_as_given():
    assert FlowMatchTimesteps().denoising_timesteps([1000, 500], warp=False).tolist() == [1000.0, 500.0]


def test_sigma_grid_is_shifted_linspace():
    s = FlowMatchTimesteps(shift=5.0)
    assert s.sigmas[0] == 1.0 and s.sigmas.shape == (1000,)
    raw = 0.5
    assert s.sigmas[500].item() == pytest.approx(5 * raw / (1 + 4 * raw), abs=1e-6)


def test_x0_inverts_the_flow_definition():
    s = FlowMatchTimesteps()
    x0, noise = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    t = torch.tensor([937.5, 625.0])
    sigma = torch.tensor([0.9375, 0.625]).view(-1, 1, 1, 1)
    xt = (1 - sigma) * x0 + sigma * noise
    assert torch.allclose(s.x0_from_flow(noise - x0, xt, t), x0, atol=1e-5)
    assert torch.allclose(s.add_noise(x0, noise, t), xt, atol=1e-6)


def test_out_of_range_steps_are_refused():
    with pytest.raises(ValueError, match="1..1000"):
        FlowMatchTimesteps().denoising_timesteps([1200])
