"""The training command line: preset < config file (TOML / YAML) < overrides, both override forms,
a generated --help, and --print-config for any preset without checking paths."""

from __future__ import annotations

import dataclasses
import json
import sys

import pytest

from vgrpo import train
from vgrpo.trainer.cli import help_text, parse_command
from vgrpo.trainer.config import Config, ConfigError


def printed(capsys, argv: list[str]) -> dict:
    assert train.main(["--print-config", *argv]) == 0
    return json.loads(capsys.readouterr().out)


def test_both_override_forms_give_the_same_config(capsys):
    spaced = printed(capsys, ["--optim.lr", "1e-4", "--reward.names", "jpeg_compressibility,shapes",
                              "--preset", "shapes-cpu-full"])
    joined = printed(capsys, ["--optim.lr=1e-4", "--reward.names=jpeg_compressibility,shapes",
                              "--preset=shapes-cpu-full"])
    assert spaced == joined
    assert spaced["optim"]["lr"] == 1e-4 and spaced["job"]["name"] == "shapes-cpu-full"
    assert spaced["reward"]["names"] == ["jpeg_compressibility", "shapes"]


def test_negative_values_and_bare_boolean_switches():
    cmd = parse_command(["--optim.final_lr_ratio", "-0.5", "--job.overwrite", "--checkpoint.every", "-1"])
    assert cmd.overrides == ["optim.final_lr_ratio=-0.5", "job.overwrite=true", "checkpoint.every=-1"]


@pytest.mark.parametrize("suffix", [".toml", ".yaml"])
def test_precedence_preset_then_file_then_overrides(capsys, tmp_path, suffix):
    text = {
        ".toml": 'preset = "shapes-cpu-flowgrpo"\n[optim]\nlr = 2e-4\nwarmup_steps = 3\n'
                 '[reward]\nnames = ["jpeg_compressibility"]\n[reward.judge]\ntimeout_s = 5\n',
        ".yaml": "preset: shapes-cpu-flowgrpo\noptim:\n  lr: 2.0e-4\n  warmup_steps: 3\n"
                 "reward:\n  names: [jpeg_compressibility]\n  judge:\n    timeout_s: 5\n",
    }[suffix]
    path = tmp_path / f"run{suffix}"
    path.write_text(text)
    out = printed(capsys, ["--config", str(path), "--optim.warmup_steps=7"])
    assert out["algorithm"]["name"] == "flowgrpo"  # from the file's preset
    assert out["optim"]["lr"] == 2e-4  # the file over the preset
    assert out["optim"]["warmup_steps"] == 7  # the command line over the file
    assert out["reward"]["names"] == ["jpeg_compressibility"] and out["reward"]["judge"]["timeout_s"] == 5.0
    # a preset on the command line wins over the file's
    assert printed(capsys, ["--config", str(path), "--preset=shapes-cpu"])["algorithm"]["name"] == "vgrpo"


@pytest.mark.parametrize("text, message", [
    ("[optim]\nlr = \"fast\"\n", "optim.lr: cannot parse 'fast' as float"),
    ("[optim]\nwarmup_steps = 1.5\n", "optim.warmup_steps: expected int, got 1.5"),
    ("[optim]\nnope = 1\n", "optim.nope"),
    ("lr = 1\n", "'lr' is not a section table"),
    ("[optim\n", "not valid TOML"),
])
def test_bad_config_files_are_named(capsys, tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert train.main(["--print-config", "--config", str(path)]) == 2
    assert message in capsys.readouterr().err


def test_bad_command_lines_are_named(capsys, tmp_path):
    for argv, message in [(["--optim.lr"], "--optim.lr needs a value"), (["--lr=1"], "unknown option --lr"),
                          (["lr"], "unexpected argument 'lr'"), (["--config", str(tmp_path / "x.toml")], "is not a file"),
                          (["--config", str(tmp_path)], "is not a file")]:
        assert train.main(argv) == 2
        assert message in capsys.readouterr().err


def test_print_config_prints_a_preset_whose_paths_are_unset(capsys):
    out = printed(capsys, ["--preset=flux-dev"])
    assert out["model"]["name"] == "flux" and out["model"]["path"] is None


def test_help_lists_every_key_with_type_default_and_meaning(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "vgrpo.trainer.trainer", None)  # help loads no model
    assert train.main(["--help"]) == 0
    text = capsys.readouterr().out
    assert f"--optim.lr float (default: {Config().optim.lr})" in text
    assert "--reward.judge.timeout_s float (default: 60.0)" in text
    assert "--model.path str | None (default: None)" in text
    cfg = Config()
    for section in dataclasses.fields(cfg):
        for f in dataclasses.fields(getattr(cfg, section.name)):
            if not dataclasses.is_dataclass(getattr(getattr(cfg, section.name), f.name)):
                assert f"--{section.name}.{f.name} " in text
    assert text == help_text(train.__doc__)


def test_errors_are_config_errors():
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        parse_command(["--preset", "nope"]).config()


def test_evaluate_reads_the_same_command_line(capsys, tmp_path):
    """vgrpo.evaluate takes --config and both override forms too (its own options stay as they are)."""
    from vgrpo import evaluate

    path = tmp_path / "eval.yaml"
    path.write_text("preset: shapes-cpu-flowgrpo\nrollout:\n  steps: 5\n")
    assert evaluate.main(["--config", str(path), "--rollout.solver", "heun", "--seed", "3", "--print-config"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["algorithm"]["name"] == "flowgrpo" and out["rollout"]["steps"] == 5 and out["rollout"]["solver"] == "heun"
    with pytest.raises(SystemExit) as exc:
        evaluate.main(["--rollout.nope=1", "--print-config"])
    assert exc.value.code == 2 and "rollout.nope" in capsys.readouterr().err
