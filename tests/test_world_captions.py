"""Web-like captions: inside the grammar, shapes kept, each corruption at its stated rate."""

import numpy as np
import pytest

from vgrpo.world.captions import CaptionNoise, format_prompt, web_caption
from vgrpo.world.prompts import all_prompts, parse

ALL = [p for ps in all_prompts().values() for p in ps]


def test_without_noise_the_caption_is_the_prompt():
    rng = np.random.default_rng(0)
    none = CaptionNoise(0, 0, 0, 0, 0, 0, 0)
    assert [web_caption(p, rng, none) for p in ALL] == ALL
    assert all(format_prompt(parse(p).objects, parse(p).relation) == p for p in ALL)
    assert web_caption("", rng) == ""


def test_captions_parse_keep_shapes_and_are_seeded():
    a = [web_caption(p, np.random.default_rng(i)) for i, p in enumerate(ALL)]
    b = [web_caption(p, np.random.default_rng(i)) for i, p in enumerate(ALL)]
    assert a == b
    for p, c in zip(ALL, a):
        shapes = {o.shape for o in parse(p).objects}
        assert {o.shape for o in parse(c).objects} <= shapes, (p, c)


def test_each_corruption_happens_at_its_rate():
    rng = np.random.default_rng(1)
    n = 4000
    colored = [web_caption("a red circle", rng) for _ in range(n)]
    dropped = sum(c == "a circle" for c in colored) / n
    swapped = sum(c not in ("a circle", "a red circle") for c in colored) / n
    assert dropped == pytest.approx(0.3, abs=0.03) and swapped == pytest.approx(0.7 * 0.3, abs=0.03)
    rel = [web_caption("a circle left of a square", rng) for _ in range(n)]
    kept = sum(c == "a circle left of a square" for c in rel) / n
    # kept only if neither omitted (0.5), swapped (0.5 x 0.2) nor reduced to one object (0.2)
    assert kept == pytest.approx(0.5 * 0.8 * 0.8, abs=0.03)
    counts = [web_caption("three squares", rng) for _ in range(n)]
    assert sum(c == "a square" for c in counts) / n == pytest.approx(0.4, abs=0.03)


def test_bad_probabilities_are_named():
    with pytest.raises(ValueError, match="color_drop"):
        CaptionNoise(color_drop=1.5)
