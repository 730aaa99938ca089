"""The exact shapes verifier: ground truth scores 1, deliberately wrong images score low."""

import numpy as np
import pytest
import torch

from vgrpo.rewards import Reward, RewardSet
from vgrpo.rewards.shapes import ShapesReward, per_category_accuracy, per_category_score, score, verdicts
from vgrpo.world.detect import detect
from vgrpo.world.prompts import all_prompts, heldout_prompts, train_prompts
from vgrpo.world.render import draw, render_batch

ALL = train_prompts() + heldout_prompts()


def test_every_prompt_renders_to_a_perfect_score():
    images = render_batch(ALL, seed=3)
    assert images.shape == (len(ALL), 3, 32, 32) and images.min() >= 0 and images.max() <= 1
    s = score(images, ALL)
    assert s.shape == (len(ALL),) and s.dtype == torch.float32
    assert float(s.min()) == 1.0
    acc = per_category_accuracy(images, ALL)
    assert all(v == 1.0 for v in acc.values()) and set(acc) == set(all_prompts()) | {"overall"}


def test_renders_at_64px_also_score_perfectly():
    ps = [ps[0] for ps in all_prompts().values()] + [ps[-1] for ps in all_prompts().values()]
    assert float(score(render_batch(ps, seed=1, size=64), ps).min()) == 1.0


def test_detector_reads_back_the_layout():
    layout = [("circle", "red", 2, 3, 10), ("triangle", "blue", 18, 18, 9), ("square", "yellow", 20, 2, 8)]
    objs = sorted(detect(torch.from_numpy(draw(layout))[None])[0], key=lambda o: o.shape)
    assert [(o.shape, o.color) for o in objs] == [("circle", "red"), ("square", "yellow"), ("triangle", "blue")]
    assert objs[0].center == (7.0, 8.0)


def test_mismatched_images_score_low():
    images = render_batch(ALL, seed=4)
    perm = torch.from_numpy(np.random.default_rng(0).permutation(len(ALL)))
    shuffled = score(images[perm], ALL)
    assert float(shuffled.mean()) < 0.5
    assert per_category_accuracy(images[perm], ALL)["overall"] < 0.15


def test_empty_and_noise_images_score_zero():
    ps = ["a circle", "two squares", "a red circle left of a blue square", "a green square and a red triangle"]
    assert torch.equal(score(torch.zeros(4, 3, 32, 32), ps), torch.zeros(4))
    noise = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert float(score(noise, ps).max()) <= 0.5


def test_partial_credit_for_each_kind_of_mistake():
    img = lambda *objs: torch.from_numpy(draw(list(objs)))[None]  # noqa: E731
    # Wrong color: the shape is right, the color requirement fails.
    v = verdicts(img(("circle", "green", 5, 5, 10)), ["a red circle"])[0]
    assert v.requirements == {"count:circle": 1.0, "color:red circle": 0.0} and v.score == 0.5
    # Miscount: three circles for "two circles".
    v = verdicts(img(("circle", "red", 1, 1, 8), ("circle", "red", 12, 1, 8), ("circle", "red", 1, 14, 8)), ["two circles"])[0]
    assert v.requirements["count:circle"] == 0.5 and not v.satisfied
    # Wrong relation: the square is left of the circle.
    two = img(("square", "red", 2, 10, 9), ("circle", "blue", 20, 10, 9))
    assert score(two, ["a square left of a circle"]).item() == 1.0
    v = verdicts(two, ["a circle left of a square"])[0]
    assert v.requirements["relation:left of"] == 0.0 and v.score == pytest.approx(2 / 3)
    # Attribute swap: colors bound to the wrong shapes.
    v = verdicts(two, ["a blue square and a red circle"])[0]
    assert v.score == 0.5 and not v.satisfied
    # An unrequested object halves the score.
    v = verdicts(img(("circle", "red", 2, 2, 9), ("triangle", "red", 18, 18, 9)), ["a circle"])[0]
    assert v.extras == 1 and v.score == 0.5


def test_per_category_reports_only_present_categories():
    ps = ["a circle", "two squares"]
    out = per_category_score(render_batch(ps, 0), ps)
    assert out == {"single_object": 1.0, "counting": 1.0, "overall": 1.0}


def test_bad_prompts_and_shapes_are_named():
    x = torch.zeros(1, 3, 32, 32)
    with pytest.raises(ValueError, match="'hexagon'"):
        score(x, ["a hexagon"])
    with pytest.raises(ValueError, match="left"):
        score(x, ["a circle left a square"])
    with pytest.raises(ValueError, match="2 prompts"):
        score(x, ["a circle", "a square"])
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        score(torch.zeros(3, 32, 32), ["a circle"])


def test_reward_protocol_and_failure_isolation():
    r = ShapesReward()
    assert isinstance(r, Reward) and r.name == "shapes"
    ps = ["a circle", "a hexagon"]
    out = RewardSet([r])(render_batch(["a circle"], 0).repeat(2, 1, 1, 1), ps)
    assert out.valid.tolist() == [True, False] and out.scores[0, 0] == 1.0
