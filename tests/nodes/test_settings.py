"""The Sampler Settings node: the CLI's --sampler, --context-noise, --shot-rope-offset and --multi-shot-sink for the
AR Block Sampler; every 'auto' asks for nothing, so the backbone family's value is used."""
import torch

from pack import N, conditioning, load


def settings(sampler="auto", context_noise=0.0, shot_rope_offset=-1.0, multi_shot_sink="auto"):
    return N["LongLiveRAG_SamplerSettings"].execute(sampler, context_noise, shot_rope_offset, multi_shot_sink).args[0]


def run(backbone, **kw):
    out = N["LongLiveRAG_ARBlockSampler"].execute(backbone, conditioning(), 96, 64, 25, 3, -1, 0, 0, "auto", 0.0, **kw)
    return out.args


def test_every_auto_asks_for_nothing():
    assert settings().fields() == {}
    assert settings("unipc", 10.0, 4.0, "off").fields() == {"sampler": "unipc", "context_noise": 10.0,
                                                            "shot_rope_offset": 4.0, "shot_sink": False}


def test_a_connected_settings_node_changes_the_run_and_the_info_says_so(models_dir):
    backbone, _ = load(models_dir)
    plain = run(backbone)
    same = run(backbone, settings=settings())
    assert torch.equal(plain[0]["samples"], same[0]["samples"])
    assert "continued from the previous run" in same[2]         # the same run: the memo replays it
    unipc = run(backbone, settings=settings("unipc"))
    assert "UniPC 4 steps" in unipc[2] and "steps 1000,750,500,250" in plain[2]
    assert not torch.equal(plain[0]["samples"], unipc[0]["samples"])
    shots = run(backbone, settings=settings(shot_rope_offset=8.0))
    assert "a cut line starts a new shot (RoPE offset 8" in shots[2] and "new shot" not in plain[2]
