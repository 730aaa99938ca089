"""Several rewards at once: weights, names, and failure isolation."""

import math

import pytest
import torch

from vgrpo.rewards.base import RewardSet


class Brightness:
    name = "brightness"

    def __call__(self, images, prompts):
        return images.mean(dim=(1, 2, 3))


class FailsOnDarkImages:
    """Raises for a batch holding a dark image and returns NaN for a dark single image."""

    name = "fragile"

    def __call__(self, images, prompts):
        dark = images.mean(dim=(1, 2, 3)) < 0.1
        if images.shape[0] > 1 and bool(dark.any()):
            raise RuntimeError("model crashed")
        return torch.where(dark, torch.tensor(math.nan), torch.ones(images.shape[0]))


def test_a_failing_reward_marks_only_its_samples_invalid():
    images = torch.full((4, 3, 4, 4), 0.5)
    images[2] = 0.0
    out = RewardSet([Brightness(), FailsOnDarkImages()], [1.0, 0.5])(images, ["p"] * 4)
    assert out.names == ["brightness", "fragile"]
    assert out.valid.tolist() == [True, True, False, True]
    torch.testing.assert_close(out.scores[:, 0], torch.tensor([0.5, 0.5, 0.0, 0.5]))
    assert math.isnan(out.scores[2, 1]) and out.scores[0, 1] == 1.0
    assert out.per_reward_means()["fragile"] == 1.0


def test_reward_set_arguments_are_checked():
    with pytest.raises(ValueError, match="2 weights for 1 rewards"):
        RewardSet([Brightness()], [1.0, 2.0])
    with pytest.raises(ValueError, match="names must be unique"):
        RewardSet([Brightness(), Brightness()])
    with pytest.raises(ValueError, match="at least one reward"):
        RewardSet([])


def test_a_reward_returning_the_wrong_count_is_isolated_per_image():
    class WrongCount:
        name = "wrong"

        def __call__(self, images, prompts):
            return torch.ones(3)

    out = RewardSet([WrongCount()])(torch.rand(2, 3, 4, 4), ["a", "b"])
    assert not bool(out.valid.any())


class NeedsMetadata:
    """Scores metadata["n"]; raises on a batch holding n < 0 (so the one-by-one fallback runs)."""

    name = "needs_metadata"

    def __call__(self, images, prompts, *, metadata=None):
        n = torch.tensor([float(m["n"]) for m in metadata])
        if len(n) > 1 and bool((n < 0).any()):
            raise RuntimeError("bad batch")
        return n


def test_metadata_reaches_only_the_rewards_that_take_it_aligned_with_the_images():
    images = torch.rand(4, 3, 4, 4)
    images[1, 0, 0, 0] = math.nan  # invalid image: not shown, its metadata dropped with it
    metadata = [{"n": 0}, {"n": 1}, {"n": -2}, {"n": 3}]
    out = RewardSet([Brightness(), NeedsMetadata()])(images, ["p"] * 4, metadata=metadata)
    assert out.valid.tolist() == [True, False, True, True]
    assert out.scores[:, 1].tolist()[0] == 0 and out.scores[2:, 1].tolist() == [-2, 3]  # per-image fallback
    with pytest.raises(ValueError, match="3 metadata entries for 4 images"):
        RewardSet([Brightness()])(images, ["p"] * 4, metadata=metadata[:3])
