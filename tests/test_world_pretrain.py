"""`python -m vgrpo.pretrain`: argument checks, a short run is reproducible from its seed and loads."""

import json

import pytest
import torch

from vgrpo.models.shapes import ShapesAdapter
from vgrpo.pretrain import lr_factor, main, parse_args


def test_schedule_warms_up_then_decays_to_a_tenth():
    assert lr_factor(0, 100, 10) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10) == pytest.approx(1.0)
    assert lr_factor(10, 100, 10) == pytest.approx(1.0)
    assert lr_factor(100, 100, 10) == pytest.approx(0.1)


def test_bad_arguments_are_rejected(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--steps", "0"])
    assert "--steps must be >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["--cfg-drop", "1.5"])


def test_short_runs_are_reproducible_and_loadable(tmp_path):
    torch.set_num_threads(2)
    args = ["--steps", "2", "--batch", "4", "--eval-samples", "0", "--threads", "2", "--warmup", "1"]
    main(args + ["--out", str(tmp_path / "a")])
    main(args + ["--out", str(tmp_path / "b")])
    a = ShapesAdapter.from_pretrained(tmp_path / "a")
    b = ShapesAdapter.from_pretrained(tmp_path / "b")
    for (k, va), vb in zip(a.denoiser.state_dict().items(), b.denoiser.state_dict().values()):
        assert torch.equal(va, vb), k
    fresh = ShapesAdapter.random(seed=0)
    assert not torch.equal(a.denoiser.proj_out.weight, fresh.denoiser.proj_out.weight)  # it trained
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config["trained_steps"] == 2 and config["recipe"]["seed"] == 0
