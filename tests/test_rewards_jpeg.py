"""JPEG compressibility rewards."""

import pytest
import torch

from vgrpo.rewards import JpegCompressibility, JpegIncompressibility, Reward, RewardSet
from vgrpo.rewards.jpeg import jpeg_sizes_kb


def _flat_and_noisy():
    flat = torch.full((1, 3, 32, 32), 0.5)
    noisy = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    return torch.cat([flat, noisy])


def test_flat_images_compress_better_than_noise():
    sizes = jpeg_sizes_kb(_flat_and_noisy())
    assert sizes.shape == (2,) and sizes.dtype == torch.float32
    assert sizes[0] < sizes[1] / 2
    c = JpegCompressibility()(_flat_and_noisy(), ["", ""])
    i = JpegIncompressibility()(_flat_and_noisy(), ["", ""])
    assert c[0] > c[1] and i[1] > i[0]
    torch.testing.assert_close(c, -i)


def test_rewards_follow_the_protocol_and_combine_with_weights():
    c, i = JpegCompressibility(), JpegIncompressibility()
    assert isinstance(c, Reward) and isinstance(i, Reward)
    out = RewardSet([c, i], [1.0, 0.5])(_flat_and_noisy(), ["a", "b"])
    assert out.names == ["jpeg_compressibility", "jpeg_incompressibility"] and bool(out.valid.all())


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        jpeg_sizes_kb(torch.rand(3, 32, 32))
    with pytest.raises(ValueError, match="float"):
        jpeg_sizes_kb(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="quality"):
        jpeg_sizes_kb(torch.rand(1, 3, 8, 8), quality=0)
