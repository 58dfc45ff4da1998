"""A run's identity (what a resumed run must share with the stopped one) is its resolved settings, not how they
were asked for."""
from core.app.plan import sampling_config
from core.app.resume import run_identity
import torch

PROMPT = torch.zeros(1, 4, 8)


def identity(cfg):
    return run_identity("backbone.pt", PROMPT, 0, 12, (8, 12), cfg)


def test_the_same_settings_asked_differently_are_the_same_run():
    assert identity(sampling_config(strategy="memrope")) == identity(sampling_config(strategy="memrope", window=12))
    assert "request" not in identity(sampling_config())["settings"]


def test_a_setting_that_changes_the_result_changes_the_identity():
    assert identity(sampling_config(strategy="memrope")) != identity(sampling_config(strategy="memrope", window=16))
