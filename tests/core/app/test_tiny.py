"""Tiny random Wan transformers (core/app/tiny.py): seeded weights, the sizes asked for."""
import torch

from core.app.tiny import randomise, tiny_config, tiny_model


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_the_same_seed_gives_the_same_weights():
    assert _same(tiny_model(3), tiny_model(3))


def test_another_seed_gives_other_weights():
    assert not _same(tiny_model(3), tiny_model(4))


def test_the_config_states_its_channels_and_widths():
    cfg = tiny_config(channels=48, dim=32)
    assert (cfg.in_dim, cfg.out_dim, cfg.dim, cfg.ffn_dim, cfg.num_layers, cfg.num_heads) == (48, 48, 32, 64, 2, 2)


def test_any_other_field_can_be_given():
    assert tiny_config(freq_dim=16).freq_dim == 16


def test_the_model_is_in_eval_mode_without_gradients():
    model = tiny_model(0, channels=48)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert model.cfg.in_dim == 48


def test_randomise_draws_biases_from_their_own_spread():
    layer = randomise(torch.nn.Linear(256, 256), std=1.0, bias_std=0.001)
    assert layer.weight.std() > 0.5 and layer.bias.abs().max() < 0.01
