"""`python -m vgrpo.pretrain`: argument checks, a short run is reproducible from its seed and loads."""

import json

import pytest
import torch

from vgrpo.models.shapes import ShapesAdapter
from vgrpo.models.shapes import velocity_from_output
from vgrpo.pretrain import caption_noise, flow_matching_loss, lr_factor, main, parse_args
from vgrpo.world.captions import CaptionNoise


def test_schedule_warms_up_then_decays_to_a_tenth():
    assert lr_factor(0, 100, 10) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10) == pytest.approx(1.0)
    assert lr_factor(10, 100, 10) == pytest.approx(1.0)
    assert lr_factor(100, 100, 10) == pytest.approx(0.1)


def test_x_prediction_loss_is_the_velocity_loss_with_a_capped_weight():
    g = torch.Generator().manual_seed(0)
    x0, eps, out = (torch.randn(4, 3, 8, 8, generator=g, dtype=torch.float64) for _ in range(3))
    t = torch.tensor([0.9, 0.5, 0.05, 0.01], dtype=torch.float64)
    z = (1 - t.view(-1, 1, 1, 1)) * x0 + t.view(-1, 1, 1, 1) * eps
    per_sample_v = (velocity_from_output(out, z, t, "x") - (eps - x0)).square().mean((1, 2, 3))
    capped = per_sample_v * (t / t.clamp_min(0.05)).square()  # the same as v-space for t >= 0.05
    torch.testing.assert_close(capped[:3], per_sample_v[:3])
    torch.testing.assert_close(flow_matching_loss(out, x0, eps, t, "x"), capped.mean())
    torch.testing.assert_close(flow_matching_loss(out, x0, eps, t, "v"), (out - (eps - x0)).square().mean())


def test_bad_arguments_are_rejected(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--steps", "0"])
    assert "--steps must be >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["--cfg-drop", "1.5"])


def test_web_noise_sets_the_caption_probabilities_by_name(capsys):
    args = parse_args(["--captions", "web", "--web-noise", "color_swap=0.6", "object_drop=0"])
    assert caption_noise(args) == CaptionNoise(color_swap=0.6, object_drop=0.0)
    assert caption_noise(parse_args(["--captions", "web"])) == CaptionNoise()
    for bad, message in [(["--captions", "web", "--web-noise", "colour_swap=0.6"], "'colour_swap=0.6': expected NAME=P"),
                         (["--captions", "web", "--web-noise", "color_swap"], "expected NAME=P with NAME one of color_drop|"),
                         (["--captions", "web", "--web-noise", "color_swap=high"], "'color_swap=high'"),
                         (["--captions", "web", "--web-noise", "color_swap=1.5"], "CaptionNoise.color_swap must be a probability"),
                         (["--web-noise", "color_swap=0.6"], "--web_noise needs --captions web")]:
        with pytest.raises(SystemExit):
            parse_args(bad)
        assert message in capsys.readouterr().err, bad


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
    assert config["prediction"] == "x" and a.prediction == "x"
    assert not (tmp_path / "a" / "pretrain_state.pt").exists()  # removed once the final model is saved


def test_web_caption_fine_tuning_starts_from_the_given_model(tmp_path):
    torch.set_num_threads(2)
    ShapesAdapter.random(seed=3, num_layers=1).save_pretrained(tmp_path / "init")
    args = ["--steps", "2", "--batch", "4", "--eval-samples", "0", "--threads", "2", "--warmup", "1",
            "--init", str(tmp_path / "init"), "--captions", "web"]
    main(args + ["--out", str(tmp_path / "web")])
    main(args[:-1] + ["clean", "--out", str(tmp_path / "clean")])
    init = ShapesAdapter.from_pretrained(tmp_path / "init")
    web = ShapesAdapter.from_pretrained(tmp_path / "web")
    clean = ShapesAdapter.from_pretrained(tmp_path / "clean")
    assert len(web.denoiser.transformer_blocks) == 1  # the init model's architecture, not the defaults
    assert web.prediction == init.prediction == "v"
    diff = (web.denoiser.proj_out.weight - init.denoiser.proj_out.weight).abs().max()
    assert 0 < diff < 0.05  # fine-tuned from init, not from scratch
    assert not torch.equal(web.denoiser.proj_out.weight, clean.denoiser.proj_out.weight)  # captions differ
    assert json.loads((tmp_path / "web" / "config.json").read_text())["recipe"]["captions"] == "web"


def test_a_frozen_text_encoder_stays_bit_for_bit_while_the_denoiser_learns(tmp_path, capsys):
    torch.set_num_threads(2)
    ShapesAdapter.random(seed=3, num_layers=1).save_pretrained(tmp_path / "init")
    main(["--steps", "3", "--batch", "4", "--eval-samples", "0", "--threads", "2", "--warmup", "1",
          "--init", str(tmp_path / "init"), "--captions", "web", "--freeze-text-encoder",
          "--out", str(tmp_path / "web")])
    init = ShapesAdapter.from_pretrained(tmp_path / "init")
    web = ShapesAdapter.from_pretrained(tmp_path / "web")
    for (k, va), vb in zip(init.text_encoder.state_dict().items(), web.text_encoder.state_dict().values()):
        assert torch.equal(va, vb), k
    assert not torch.equal(init.denoiser.proj_out.weight, web.denoiser.proj_out.weight)
    assert json.loads((tmp_path / "web" / "config.json").read_text())["recipe"]["freeze_text_encoder"] is True
    with pytest.raises(SystemExit):
        parse_args(["--freeze-text-encoder"])
    assert "--freeze_text_encoder needs --init" in capsys.readouterr().err


def test_a_killed_run_resumes_bit_for_bit_and_refuses_another_recipe(tmp_path, monkeypatch):
    """Kill a 4-step run inside step 3 (after the save at step 2); re-running continues exactly."""
    import vgrpo.pretrain as pretrain

    torch.set_num_threads(2)
    args = ["--steps", "4", "--batch", "4", "--eval-samples", "0", "--threads", "2", "--warmup", "1",
            "--save-every", "2", "--prediction", "v", "--t-mean", "0.5"]
    main(args + ["--out", str(tmp_path / "whole")])

    real_update, calls = pretrain.ema_update, []

    def dies_in_step_three(ema, live, decay):
        calls.append(1)
        if len(calls) == 5:  # two EMA updates per step: the first of step 3
            raise KeyboardInterrupt
        real_update(ema, live, decay)

    monkeypatch.setattr(pretrain, "ema_update", dies_in_step_three)
    with pytest.raises(KeyboardInterrupt):
        main(args + ["--out", str(tmp_path / "killed")])
    monkeypatch.setattr(pretrain, "ema_update", real_update)
    state = torch.load(tmp_path / "killed" / "pretrain_state.pt", weights_only=False)
    assert state["step"] == 2
    assert json.loads((tmp_path / "killed" / "config.json").read_text())["trained_steps"] == 2

    with pytest.raises(SystemExit, match="another recipe.*t_mean: saved 0.5 vs now 0.2"):
        main([a if a != "0.5" else "0.2" for a in args] + ["--out", str(tmp_path / "killed")])
    main(args + ["--out", str(tmp_path / "killed")])
    whole = ShapesAdapter.from_pretrained(tmp_path / "whole")
    resumed = ShapesAdapter.from_pretrained(tmp_path / "killed")
    assert resumed.prediction == "v"
    for (k, va), vb in zip(whole.denoiser.state_dict().items(), resumed.denoiser.state_dict().values()):
        assert torch.equal(va, vb), k
    for (k, va), vb in zip(whole.text_encoder.state_dict().items(), resumed.text_encoder.state_dict().values()):
        assert torch.equal(va, vb), k
    assert not (tmp_path / "killed" / "pretrain_state.pt").exists()
