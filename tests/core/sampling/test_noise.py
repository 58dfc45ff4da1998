"""The noise contract: a block's noise depends only on the seed and the block."""
import torch

from core.sampling.noise import NoiseSource, block_seed


def test_noise_of_a_block_depends_only_on_seed_and_block():
    a = NoiseSource("per-block", 5, (1, 16, 30, 8, 12), 4)
    b = NoiseSource("per-block", 5, (1, 16, 9, 8, 12), 4)
    x = a.block_noise(2, 6, 3), [a.renoise(3) for _ in range(3)]
    y = b.block_noise(2, 6, 3), [b.renoise(3) for _ in range(3)]
    assert torch.equal(x[0], y[0]) and all(torch.equal(p, q) for p, q in zip(x[1], y[1]))
    assert not torch.equal(a.block_noise(3, 9, 3), x[0])
    assert block_seed(5, 2) != block_seed(2, 5) and block_seed(5, 2) == block_seed(5, 2)
