"""The command line of every entry point (vgrpo.utils.cli): typed option dataclasses, both key
forms, `-` or `_`, config files (TOML / YAML) under the command line, a generated --help and a
--print-config that checks nothing; and the options of pretrain, export, sample_grid, evaluate."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

import pytest

from vgrpo.utils import cli


@dataclass
class Group:
    k: int = 1
    """A key of a group."""


@dataclass
class Toy:
    out: str
    """Where to write."""
    per_prompt: int = 6
    """Samples per prompt."""
    names: list[str] = field(default_factory=lambda: ["a"])
    """Some names."""
    flag: bool = False
    """A switch."""
    mode: Literal["x", "v"] = "x"
    """A choice."""
    scale: float | None = None
    """Optional."""
    group: Group = field(default_factory=Group)
    """A group of keys."""


def parsed(argv, check=None) -> Toy:
    return cli.parse(Toy, argv, "Toy command.", check=check)


def exits(capsys, argv, code: int, check=None) -> str:
    with pytest.raises(SystemExit) as exc:
        parsed(argv, check)
    assert exc.value.code == code
    out = capsys.readouterr()
    return out.out if code == 0 else out.err


def test_both_key_forms_dashes_underscores_lists_and_switches_agree():
    spaced = parsed(["--out", "o", "--per-prompt", "3", "--names", "b", "c", "--flag", "--mode", "v",
                     "--scale", "-0.5", "--group.k", "4"])
    joined = parsed(["--out=o", "--per_prompt=3", "--names=b,c", "--flag=true", "--mode=v", "--scale=-0.5",
                     "--group.k=4"])
    assert spaced == joined == Toy("o", 3, ["b", "c"], True, "v", -0.5, Group(4))
    assert parsed(["--flag", "no", "--out", "o"]).flag is False  # a bool word after a switch is its value
    assert parsed(["--out", "o"]) == Toy("o")  # the defaults


@pytest.mark.parametrize("suffix", [".toml", ".yaml"])
def test_defaults_then_config_file_then_command_line(tmp_path, suffix):
    text = {".toml": 'out = "file"\nper-prompt = 2\nnames = ["p", "q"]\n[group]\nk = 7\n',
            ".yaml": "out: file\nper-prompt: 2\nnames: [p, q]\ngroup:\n  k: 7\n"}[suffix]
    path = tmp_path / f"opts{suffix}"
    path.write_text(text)
    o = parsed(["--config", str(path), "--per_prompt", "5"])
    assert (o.out, o.per_prompt, o.names, o.group.k, o.mode) == ("file", 5, ["p", "q"], 7, "x")


def test_help_lists_every_key_with_type_default_and_docstring(capsys):
    text = exits(capsys, ["--help"], 0)
    assert text.startswith("Toy command.\n")
    for line in ["--out str (required)", "      Where to write.", "--per_prompt int (default: 6)",
                 "--names list[str] (default: a)", "--flag bool (default: False)", "--mode x|v (default: x)",
                 "--scale float | None (default: None)", "--group.k int (default: 1)", "      A key of a group.",
                 "--config FILE", "--print-config"]:
        assert line in text, line


def test_print_config_checks_nothing(capsys):
    text = exits(capsys, ["--print-config", "--per-prompt", "0"], 0, check=lambda o: ["never reached"])
    assert json.loads(text) == {"out": None, "per_prompt": 0, "names": ["a"], "flag": False, "mode": "x",
                                "scale": None, "group": {"k": 1}}


@pytest.mark.parametrize("argv, message", [
    ([], "--out is required"),
    (["--out", "o", "--nope", "1"], "unknown option --nope; the options are --out, --per_prompt"),
    (["--out", "o", "--mode", "z"], "mode must be one of x|v, got 'z'"),
    (["--out", "o", "--per-prompt"], "--per_prompt needs a value"),
    (["--out", "o", "--per-prompt", "many"], "per_prompt: cannot parse 'many' as int"),
    (["--out", "o", "--group", "1"], "group is a group of keys"),
    (["o"], "unexpected argument 'o'"),
    (["--out", "o", "--per-prompt", "0"], "per_prompt must be >= 1"),
])
def test_bad_command_lines_exit_2_naming_the_key(capsys, argv, message):
    check = lambda o: [] if o.per_prompt >= 1 else ["per_prompt must be >= 1"]  # noqa: E731
    assert message in exits(capsys, argv, 2, check)


def test_a_bad_config_file_is_named(capsys, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("out = 'o'\nper_prompt = 1.5\n")
    assert "per_prompt: expected int, got 1.5" in exits(capsys, ["--config", str(path)], 2)
    path.write_text("out = 'o'\n[group]\nj = 1\n")
    assert "unknown config key group.j" in exits(capsys, ["--config", str(path)], 2)


# ----------------------------------------------------------------------------- entry points


def test_pretrain_old_and_new_spellings_and_its_recipe_in_help(capsys):
    from vgrpo.pretrain import PretrainOptions, parse_args

    old = parse_args(["--out", "o", "--t-mean", "0.2", "--cfg-drop", "0.2", "--save-every", "3", "--patch-size", "2"])
    new = parse_args(["--out=o", "--t_mean=0.2", "--cfg_drop=0.2", "--save_every=3", "--patch_size=2"])
    assert old == new == PretrainOptions(out="o", t_mean=0.2, cfg_drop=0.2, save_every=3, patch_size=2)
    with pytest.raises(SystemExit) as exc:
        parse_args(["--help"])
    text = capsys.readouterr().out
    assert exc.value.code == 0 and "Recipe (the defaults" in text and "resume    every save" in text
    assert "--patch_size 1|2|4|8 (default: 4)" in text and "--eval_samples int (default: 64)" in text
    with pytest.raises(SystemExit):
        parse_args(["--patch-size", "3"])
    assert "patch_size must be one of 1|2|4|8" in capsys.readouterr().err


def test_export_requires_its_three_options_and_lists_them(capsys):
    from vgrpo.export import main

    with pytest.raises(SystemExit) as exc:
        main(["--out", "x"])
    assert exc.value.code == 2
    assert "--run is required; --format is required" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["--run", "r", "--out", "o", "--format", "zip"])
    assert "format must be one of lora|merged" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    text = capsys.readouterr().out
    assert "--format lora|merged (required)" in text and "--ema bool (default: False)" in text


def test_sample_grid_takes_model_path_and_several_prompts(capsys):
    from vgrpo.sample_grid import SampleGridOptions, problems

    o = cli.parse(SampleGridOptions, ["--model.path=m", "--out", "g.png", "--prompts", "a red circle", "a blue square",
                                      "--per-prompt", "2"], "", check=problems, aliases={"model.path": "model"})
    assert (o.model, o.prompts, o.per_prompt) == ("m", ["a red circle", "a blue square"], 2)
    assert problems(SampleGridOptions("g.png", solver="rk9")) == [
        f"--solver must be one of {'|'.join(__import__('vgrpo.sampling.ode', fromlist=['SOLVERS']).SOLVERS)}, got 'rk9'"]


def test_evaluate_options_in_both_spellings_beside_config_overrides(capsys):
    from vgrpo.evaluate import parse_command_line

    a, cfg_a, _ = parse_command_line(["--rewards", "shapes,jpeg_compressibility", "--reward-paths", "none,none",
                                      "--images-per-prompt", "2", "--rollout.steps", "3"])
    b, cfg_b, _ = parse_command_line(["--rewards=shapes,jpeg_compressibility", "--reward_paths", "none", "none",
                                      "--images_per_prompt=2", "--rollout.steps=3"])
    assert a == b and a.reward_paths == ["none", "none"] and a.images_per_prompt == 2
    assert cfg_a.rollout.steps == cfg_b.rollout.steps == 3
    with pytest.raises(SystemExit) as exc:
        parse_command_line(["--rewards", "shapes", "--reward-paths", "a,b"])
    assert exc.value.code == 2 and "--reward_paths has 2 entries for 1 rewards" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        parse_command_line(["--help"])
    text = capsys.readouterr().out
    assert "--images_per_prompt int (default: 4)" in text and "--rollout.steps int" in text
