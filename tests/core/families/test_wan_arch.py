"""The Wan key template (core/families/wan_arch.py) matches the transformer's own state dict at several sizes."""
import torch

from core.formats import expected_shapes
from core.model.transformer import WanConfig, WanTransformer

from checkpoints import CFG, TINY


def test_the_wan_key_template_matches_the_model_at_several_sizes():
    for cfg in (CFG, TINY, WanConfig(dim=256, ffn_dim=320, num_layers=3, num_heads=2, text_dim=48, freq_dim=64,
                                          in_dim=16, out_dim=16)):
        with torch.device("meta"):
            model = WanTransformer(cfg)
        assert expected_shapes(cfg) == {k: tuple(v.shape) for k, v in model.state_dict().items()}
