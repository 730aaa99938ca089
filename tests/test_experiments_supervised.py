"""`python -m vgrpo.experiments.supervised`: the supervised control scores what the trainer scores."""

import json

import pytest
import torch

from vgrpo.experiments.supervised import main, parse_args, score
from vgrpo.models.shapes import ShapesAdapter
from vgrpo.tasks.shapes import ShapesEvaluator


def test_rows_start_from_the_untouched_model_and_record_the_training(tmp_path):
    torch.set_num_threads(2)
    before = ShapesAdapter.from_pretrained()  # the shipped base model: it scores above 0
    base = score(before, ShapesEvaluator(2))
    rows = main(["--steps", "3", "--evals", "1", "--batch", "4", "--images-per-category", "2",
                 "--threads", "2", "--out", str(tmp_path / "out")])

    assert [r["step"] for r in rows] == [0, 3]
    assert base["score/overall"] > 0
    assert {k: v for k, v in rows[0].items() if "/" in k} == base  # same evaluation, same noise
    assert rows[0]["loss"] is None and rows[1]["train_seconds"] > 0 and rows[1]["loss"] > 0
    assert all(0.0 <= r["score/overall"] <= 1.0 for r in rows)
    assert json.loads((tmp_path / "out" / "supervised.json").read_text()) == rows
    after = ShapesAdapter.from_pretrained()  # the model folder is left alone
    assert torch.equal(after.denoiser.proj_out.weight, before.denoiser.proj_out.weight)


def test_bad_arguments_are_rejected(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--steps", "2", "--evals", "3"])
    assert "--evals (3) must be <= --steps (2)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["--lr", "0"])
    assert "--lr must be > 0" in capsys.readouterr().err
