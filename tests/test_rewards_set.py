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
