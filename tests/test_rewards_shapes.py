"""The exact shapes verifier: ground truth scores 1, deliberately wrong images score low."""

import numpy as np
import pytest
import torch

from vgrpo.rewards import Reward, RewardSet
from vgrpo.rewards.shapes import ShapesReward, per_category_accuracy, per_category_score, score, verdicts
from vgrpo.world.detect import detect
from vgrpo.world.prompts import all_prompts, heldout_prompts, parse, train_prompts
from vgrpo.world.render import OBJECT_SIDES, draw, render_batch, sample_layout

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


def test_objects_are_as_large_as_their_number_allows():
    """Every object's box side lies in OBJECT_SIDES for its image's object count, both ends occur,
    and fewer objects never means smaller ones."""
    rng = np.random.default_rng(0)
    seen: dict[int, set[int]] = {n: set() for n in OBJECT_SIDES}
    for p in ALL * 4:
        layout = sample_layout(parse(p), rng)
        seen[len(layout)].update(side for *_, side in layout)
    for n, (lo, hi) in OBJECT_SIDES.items():
        assert seen[n] == set(range(lo, hi + 1)), (n, sorted(seen[n]))
    assert [lo for lo, _ in OBJECT_SIDES.values()] == sorted((lo for lo, _ in OBJECT_SIDES.values()), reverse=True)
    assert min(OBJECT_SIDES[2]) >= 12  # the objects the shape requirement mostly judges are >= 12 px


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


def _img(*objs):
    return torch.from_numpy(draw(list(objs)))[None]


def test_partial_credit_for_each_kind_of_mistake():
    # Wrong color: the shape is right, the color requirement fails.
    v = verdicts(_img(("circle", "green", 5, 5, 10)), ["a red circle"])[0]
    assert v.requirements == {"count": 1.0, "color": 0.0, "shape": 1.0}
    # Wrong shape: count and color right, the shape requirement fails.
    v = verdicts(_img(("square", "red", 5, 5, 10)), ["a red circle"])[0]
    assert v.requirements == {"count": 1.0, "color": 1.0, "shape": 0.0}
    # Miscount: three circles for "two circles".
    v = verdicts(_img(("circle", "red", 1, 1, 8), ("circle", "red", 12, 1, 8), ("circle", "red", 1, 14, 8)), ["two circles"])[0]
    assert v.requirements == {"count": 0.5, "shape": 1.0} and not v.satisfied
    # Wrong relation: the square is left of the circle.
    two = _img(("square", "red", 2, 10, 9), ("circle", "blue", 20, 10, 9))
    assert score(two, ["a square left of a circle"]).item() == 1.0
    v = verdicts(two, ["a circle left of a square"])[0]
    assert v.requirements == {"count": 1.0, "shape": 1.0, "relation:left of": 0.0}
    assert verdicts(two, ["a blue circle right of a red square"])[0].satisfied
    assert verdicts(two, ["a blue circle left of a red square"])[0].requirements["relation:left of"] == 0.0
    # Attribute swap: colors bound to the wrong shapes keep the color credit, lose the shape credit.
    v = verdicts(two, ["a blue square and a red circle"])[0]
    assert v.requirements == {"count": 1.0, "color": 1.0, "shape": 0.0} and not v.satisfied
    # An unrequested object costs count credit, whatever its shape.
    v = verdicts(_img(("circle", "red", 2, 2, 9), ("triangle", "red", 18, 18, 9)), ["a circle"])[0]
    assert v.requirements == {"count": 0.0, "shape": 1.0} and v.score == 0.5


def _other(word, options):
    return options[(options.index(word) + 1) % len(options)]


def test_clean_renders_of_the_wrong_thing_lose_exactly_that_credit():
    """For many prompts: replace one shape / color / count / relation word, render the altered
    prompt cleanly and score it against the original: that requirement gets 0 (count: < 1)."""
    from vgrpo.world.prompts import COLORS, COUNTS, RELATIONS, SHAPES

    checked = {"shape": 0, "color": 0, "count": 0, "relation": 0}
    for p in ALL:
        words = p.split()
        for i, w in enumerate(words):
            if w in SHAPES or w[:-1] in SHAPES and w.endswith("s"):
                base = w if w in SHAPES else w[:-1]
                alt = _other(base, SHAPES) + ("" if w in SHAPES else "s")
                kind = "shape"
            elif w in COLORS:
                alt, kind = _other(w, COLORS), "color"
            elif w in COUNTS:
                alt, kind = _other(w, tuple(COUNTS)), "count"
            else:
                continue
            altered = " ".join(words[:i] + [alt] + words[i + 1:])
            if len({o.shape for o in parse(altered).objects}) < len(parse(altered).objects):
                continue  # two phrases of one shape: the original asks for distinct shapes
            v = verdicts(render_batch([altered], seed=i), [p])[0]
            if kind == "count":
                assert v.requirements["count"] < 1.0, (p, altered)
            elif kind == "color" and sum(o.color is not None for o in parse(p).objects) == 2 and alt in p:
                continue  # swapping to the other phrase's color is a binding error: the shape pays
            else:
                assert v.requirements[kind] <= 0.5 + 1e-6 and not v.satisfied, (p, altered, v)
            checked[kind] += 1
        rel = parse(p).relation
        if rel is not None:
            opposite = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}[rel]
            altered = p.replace(f" {rel} ", f" {opposite} ")
            v = verdicts(render_batch([altered], seed=1), [p])[0]
            assert v.requirements[f"relation:{rel}"] == 0.0, (p, altered)
            checked["relation"] += 1
    assert min(checked.values()) >= 9, checked


def _blur(x, sigma):
    r = torch.arange(-2, 3, dtype=torch.float32)
    g = torch.exp(-r.square() / (2 * sigma**2))
    g = g / g.sum()
    k = (g[:, None] * g[None]).expand(3, 1, 5, 5)
    return torch.nn.functional.conv2d(torch.nn.functional.pad(x, (2, 2, 2, 2), mode="replicate"), k, groups=3)


@pytest.mark.parametrize("kind", ["blur", "pixel_noise", "color_scale", "shift"])
def test_slightly_perturbed_ground_truth_keeps_full_credit(kind):
    images = render_batch(ALL, seed=6)
    g = torch.Generator().manual_seed(0)
    if kind == "blur":  # Gaussian, sigma 0.5 px
        images = _blur(images, 0.5)
    elif kind == "pixel_noise":  # independent N(0, 0.05^2) per pixel and channel
        images = (images + 0.05 * torch.randn(images.shape, generator=g)).clamp(0, 1)
    elif kind == "color_scale":  # every channel of an image scaled by U(0.85, 1.15)
        images = (images * (0.85 + 0.3 * torch.rand(images.shape[0], 3, 1, 1, generator=g))).clamp(0, 1)
    else:  # the whole image moved by one pixel right and down
        images = torch.nn.functional.pad(images, (1, 0, 1, 0))[..., :32, :32]
    s = score(images, ALL)
    assert float(s.min()) == 1.0, [ALL[i] for i in torch.nonzero(s < 1).flatten().tolist()[:5]]


def test_shape_credit_is_graded_between_shapes():
    """A square with its corners shaved off by one pixel, then two: square credit falls, circle credit rises."""
    from vgrpo.world.verify import shape_credit

    img = _img(("square", "red", 10, 10, 10))
    credits = []
    for cut in (0, 1, 2, 3):
        x = img.clone()
        for dy in range(cut):
            for dx in range(cut - dy):
                for yy, xx in ((10 + dy, 10 + dx), (10 + dy, 19 - dx), (19 - dy, 10 + dx), (19 - dy, 19 - dx)):
                    x[0, :, yy, xx] = 0.0
        (obj,) = detect(x)[0]
        credits.append((shape_credit(obj, "square"), shape_credit(obj, "circle")))
    assert credits[0] == (1.0, 0.0)
    squares, circles = zip(*credits)
    assert list(squares) == sorted(squares, reverse=True) and list(circles) == sorted(circles)
    assert squares[-1] < 1.0 and circles[-1] > 0.0


def test_a_speckle_counts_as_a_fraction_of_an_object():
    img = _img(("circle", "red", 2, 2, 10))
    img[0, :, 25:29, 25:28] = torch.tensor([0.9, 0.12, 0.12])[:, None, None]  # a 12-pixel red speckle
    v = verdicts(img, ["a red circle"])[0]
    assert 0.8 < v.requirements["count"] < 1.0 and v.requirements["shape"] == 1.0


def test_per_requirement_means_name_the_requirement_that_fails():
    from vgrpo.rewards.shapes import per_category_requirements

    ps = ["a red circle", "a red circle", "a circle left of a square"]
    images = torch.cat([_img(("circle", "green", 5, 5, 10)), _img(("square", "red", 5, 5, 10)),
                        render_batch(["a circle right of a square"], 0)])
    out = per_category_requirements(images, ps)
    assert out["colors"] == {"count": 1.0, "color": 0.5, "shape": 0.5}
    assert out["position"] == {"count": 1.0, "shape": 1.0, "relation": 0.0}
    assert out["overall"] == {"count": 1.0, "color": 0.5, "shape": 0.75, "relation": 0.0}


def test_per_category_reports_only_present_categories():
    ps = ["a circle", "two squares"]
    out = per_category_score(render_batch(ps, 0), ps)
    assert out == {"single_object": 1.0, "counting": 1.0, "overall": 1.0}


def test_category_report_detects_once_and_gives_each_view(monkeypatch):
    import vgrpo.rewards.shapes as shapes

    calls = []
    monkeypatch.setattr(shapes, "detect", lambda images: calls.append(len(images)) or detect(images))
    ps = ["a red circle", "a red circle", "a circle left of a square"]
    images = torch.cat([_img(("circle", "green", 5, 5, 10)), _img(("circle", "red", 5, 5, 10)),
                        render_batch(["a circle right of a square"], 0)])
    report = shapes.category_report(images, ps)
    assert calls == [3]
    found = verdicts(images, ps)
    assert report["score"] == {"colors": (found[0].score + found[1].score) / 2, "position": found[2].score,
                               "overall": ((found[0].score + found[1].score) / 2 + found[2].score) / 2}
    assert report["accuracy"] == {"colors": 0.5, "position": 0.0, "overall": 0.25}
    assert report["requirements"]["colors"] == {"count": 1.0, "color": 0.5, "shape": 1.0}


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


def _red_mask(mask):
    """Image [1, 3, 32, 32] of one red object covering `mask` [32, 32] (bool)."""
    x = torch.zeros(1, 3, 32, 32)
    x[0] = torch.tensor([0.9, 0.12, 0.12])[:, None, None] * mask.float()
    return x


def test_dense_training_reward_keeps_the_verdicts_on_clean_renders_and_grades_blobs():
    """shapes_dense (wider shape ramps): every render still scores 1 and a clean render of another shape
    still gets 0, while a blob between two shapes, which the verifier gives 0 for both, gets partial
    credit for each; an elongated object gets none; dense credit is never below the verifier's."""
    from vgrpo.rewards.registry import RewardSpec, build_reward_set
    from vgrpo.rewards.shapes import DenseShapesReward
    from vgrpo.world.prompts import SHAPES
    from vgrpo.world.verify import DENSE_RAMPS, shape_credit

    dense = DenseShapesReward()
    assert dense.name == "shapes_dense" and float(dense(render_batch(ALL, seed=5), ALL).min()) == 1.0
    assert build_reward_set([RewardSpec("shapes_dense")]).names == ["shapes_dense"]
    for size in (32, 64):
        for s in SHAPES:
            (obj,) = detect(torch.from_numpy(draw([(s, "red", 4, 4, size // 2)], size=size))[None])[0]
            assert [shape_credit(obj, t, DENSE_RAMPS) for t in SHAPES] == [float(t == s) for t in SHAPES]
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    between = ((yy - 16) / 7).abs() ** 3 + ((xx - 16) / 7).abs() ** 3 <= 1  # superellipse: circle-square
    elongated = ((yy - 16) / 5) ** 2 + ((xx - 16) / 8) ** 2 <= 1
    (blob,) = detect(_red_mask(between))[0]
    (long,) = detect(_red_mask(elongated))[0]
    assert shape_credit(blob, "circle") == 0.0 and 0.2 < shape_credit(blob, "circle", DENSE_RAMPS) < 0.8
    assert 0.0 < shape_credit(blob, "square") < shape_credit(blob, "square", DENSE_RAMPS) < 1.0
    assert all(shape_credit(long, s, DENSE_RAMPS) == 0.0 for s in SHAPES)
    noisy = (render_batch(ALL[:64], seed=2) + 0.25 * torch.randn(64, 3, 32, 32)).clamp(0, 1)
    assert bool((dense(noisy, ALL[:64]) >= score(noisy, ALL[:64])).all())
