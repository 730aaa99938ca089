"""Typed config: presets, `--section.key=value` overrides, validation before any model loads."""

from __future__ import annotations

import json

import pytest

from vgrpo.trainer.config import Config, ConfigError, apply_overrides, validate
from vgrpo.trainer.presets import DEFAULT_PRESET, PRESETS, load_config


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_validate(name, tmp_path):
    # Model presets need the user's weights folder and training prompts; the built-in world's presets need nothing.
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a cat\n")
    overrides = [] if name.startswith("shapes") else [f"--model.path={tmp_path}", f"--rollout.prompt_file={prompts}"]
    cfg = load_config(name, overrides)
    validate(cfg, world_size=1)


def test_default_preset_is_the_cpu_world():
    cfg = load_config()
    assert DEFAULT_PRESET == "shapes-cpu" and cfg.model.name == "shapes" and cfg.job.device == "auto"
    assert cfg.reward.names == ["shapes"]


def test_overrides_are_typed():
    cfg = apply_overrides(Config(), [
        "--algorithm.num_pairs=8", "--algorithm.clip_range=0.03", "--algorithm.stratified=false",
        "--reward.names=shapes,jpeg_compressibility", "--reward.weights=1,0.5", "--model.path=none",
        "optim.lr=3e-4",
    ])
    assert cfg.algorithm.num_pairs == 8 and cfg.algorithm.clip_range == 0.03
    assert cfg.algorithm.stratified is False
    assert cfg.reward.names == ["shapes", "jpeg_compressibility"] and cfg.reward.weights == [1.0, 0.5]
    assert cfg.model.path is None and cfg.optim.lr == 3e-4


@pytest.mark.parametrize(
    "override, message",
    [
        ("--algorithm.nmc=4", "unknown config key algorithm.nmc"),
        ("--algo.num_pairs=4", "unknown config section 'algo'"),
        ("--algorithm.num_pairs=four", "algorithm.num_pairs: cannot parse 'four' as int"),
        ("--algorithm.stratified=maybe", "algorithm.stratified: cannot parse 'maybe' as bool"),
        ("num_pairs=4", "must look like --section.key=value"),
    ],
)
def test_bad_overrides_name_the_problem(override, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(Config(), [override])


def test_validation_lists_every_problem():
    cfg = apply_overrides(Config(), [
        "--rollout.group_size=1", "--algorithm.sharing=prompt", "--reward.names=shapes,nope",
        "--reward.weights=1", "--algorithm.clip_range=-0.1", "--finetune.mode=qlora",
        "--reward.overlap=true", "--eval.solver=rk4", "--optim.schedule=linear", "--optim.final_lr_ratio=2",
        "--algorithm.kl_target=base",
    ])
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    text = str(err.value)
    for fragment in ("rollout.group_size must be >= 2", "algorithm.sharing must be batch|group|none",
                     "unknown reward 'nope'", "reward.weights has 1 entries for 2 rewards",
                     "algorithm.clip_range must be in [0, 1)", "finetune.mode must be lora|full",
                     "reward.overlap must be auto|on|off", "eval.solver must be euler|heun|dpm++2m",
                     "optim.schedule must be one of constant|cosine", "optim.final_lr_ratio must be in [0, 1]",
                     "algorithm.kl_target must be behaviour|reference"):
        assert fragment in text


def test_reference_kl_needs_lora():
    cfg = apply_overrides(Config(), ["--algorithm.beta=0.1", "--algorithm.kl_target=reference", "--finetune.mode=full"])
    with pytest.raises(ConfigError, match="algorithm.kl_target=reference with algorithm.beta=0.1 needs finetune.mode=lora"):
        validate(cfg)
    cfg.algorithm.kl_target = "behaviour"  # theta_old's stored predictions need no base model
    validate(cfg)


def test_batch_layout_must_fit_the_world():
    cfg = apply_overrides(Config(), ["--rollout.prompts_per_iteration=6", "--algorithm.minibatches=2"])
    validate(cfg, world_size=1)
    with pytest.raises(ConfigError, match=r"multiple of world size x algorithm.minibatches \(2 x 2 = 4\)"):
        validate(cfg, world_size=2)
    cfg = apply_overrides(Config(), ["--algorithm.micro_batch=5"])
    with pytest.raises(ConfigError, match="micro_batch \\(5\\) must divide"):
        validate(cfg)


def test_every_field_has_a_docstring():
    import ast
    import inspect

    import vgrpo.trainer.config as module

    tree = ast.parse(inspect.getsource(module))
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name.endswith("Config") and node.name != "Config":
            body = node.body
            for i, stmt in enumerate(body):
                if isinstance(stmt, ast.AnnAssign):
                    nxt = body[i + 1] if i + 1 < len(body) else None
                    assert isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant), (
                        f"{node.name}.{stmt.target.id} has no docstring")


def test_entry_point_rejects_bad_config_before_loading_a_model(capsys, monkeypatch):
    import sys

    from vgrpo import train

    monkeypatch.setitem(sys.modules, "vgrpo.trainer.trainer", None)  # importing it would fail
    assert train.main(["--rollout.group_size=1"]) == 2
    assert "rollout.group_size must be >= 2" in capsys.readouterr().err
    assert train.main(["--preset=nope"]) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err


def test_print_config_and_saved_config_round_trip(capsys, tmp_path):
    from vgrpo import train

    assert train.main(["--print-config", "--algorithm.beta=0.3"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["algorithm"]["beta"] == 0.3
    cfg = Config.from_dict(printed)
    assert cfg.to_dict() == printed
    cfg.save(tmp_path / "config.json")
    assert Config.from_dict(json.loads((tmp_path / "config.json").read_text())) == cfg


def test_docs_config_reference_is_generated_from_the_dataclasses():
    from pathlib import Path

    from vgrpo.trainer.config_reference import render

    doc = (Path(__file__).resolve().parents[1] / "docs" / "trainer.md").read_text()
    assert doc.endswith(render()), "docs/trainer.md is stale: python -m vgrpo.trainer.config_reference"
    assert "`sde_train_steps`" in render() and "`overlap`" in render()
