"""The learning-rate multiplier: warm-up, constant, cosine decay to a floor."""

import math

import pytest

from vgrpo.trainer.lr_schedule import lr_multiplier


def factors(schedule, total, warmup=0, final=0.1):
    return [
        lr_multiplier(s, total_steps=total, warmup_steps=warmup, schedule=schedule, final_ratio=final)
        for s in range(total + 5)
    ]


def test_constant_is_one_after_the_warmup():
    f = factors("constant", 20, warmup=4)
    assert f[:4] == [0.25, 0.5, 0.75, 1.0]
    assert all(x == 1.0 for x in f[4:])


def test_cosine_runs_from_one_to_the_floor_at_the_last_step_and_holds_it():
    total, final = 41, 0.1
    f = factors("cosine", total, final=final)
    assert f[0] == 1.0
    assert f[total - 1] == pytest.approx(final, abs=1e-12)
    assert f[20] == pytest.approx((1 + final) / 2, abs=1e-12)  # half way
    assert all(a > b for a, b in zip(f[: total - 1], f[1:total]))  # strictly decreasing
    assert all(x == pytest.approx(final, abs=1e-12) for x in f[total:])  # a longer resumed run keeps the floor


def test_cosine_starts_after_the_warmup():
    f = factors("cosine", 30, warmup=10, final=0.0)
    assert f[9] == 1.0 and f[10] == 1.0
    assert f[29] == pytest.approx(0.0, abs=1e-12)
    assert f[20] == pytest.approx(0.5 * (1 + math.cos(math.pi * 10 / 19)), abs=1e-12)


def test_unknown_schedule_is_named():
    with pytest.raises(ValueError, match="unknown lr schedule 'linear'"):
        lr_multiplier(0, total_steps=10, warmup_steps=0, schedule="linear", final_ratio=0.1)
