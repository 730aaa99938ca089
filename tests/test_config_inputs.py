"""Validation of hostile or unlucky inputs: non-finite numbers, prompt files, the output folder, key groups."""

from __future__ import annotations

import os

import pytest

from vgrpo.trainer.config import Config, ConfigError, apply_overrides, validate
from vgrpo.utils.prompt_file import MAX_PROMPT_CHARS, read_prompt_file


def _problems(tmp_path, overrides: list[str]) -> str:
    cfg = apply_overrides(Config(), [f"--job.output_dir={tmp_path}", *overrides])
    with pytest.raises(ConfigError) as info:
        validate(cfg)
    return str(info.value)


@pytest.mark.parametrize("override, key", [
    ("--optim.lr=inf", "optim.lr"),
    ("--algorithm.beta=inf", "algorithm.beta"),
    ("--reward.std_eps=inf", "reward.std_eps"),
    ("--rollout.shift=inf", "rollout.shift"),
    ("--finetune.lora_alpha=inf", "finetune.lora_alpha"),
    ("--reward.weights=nan", "reward.weights[0]"),
    ("--optim.max_grad_norm=-inf", "optim.max_grad_norm"),
    ("--reward.judge.score_max=inf", "reward.judge.score_max"),
    ("--parallel.timeout_s=inf", "parallel.timeout_s"),
    ("--model.guidance=nan", "model.guidance"),
])
def test_non_finite_floats_are_refused_naming_the_key(tmp_path, override, key):
    assert f"{key} must be a finite number" in _problems(tmp_path, [override])


def test_every_float_field_is_checked_without_a_list_of_keys(tmp_path):
    """The walk covers every float field of every section (and group): set each to NaN in turn."""
    import dataclasses
    import typing

    def float_keys(obj, where):
        hints = typing.get_type_hints(type(obj))
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                yield from float_keys(value, f"{where}.{f.name}")
            elif float in (hints[f.name], *typing.get_args(hints[f.name])):
                yield f"{where}.{f.name}" + ("[0]" if isinstance(value, list) else "")

    cfg = Config()
    keys = [k for s in dataclasses.fields(cfg) for k in float_keys(getattr(cfg, s.name), s.name)]
    assert len(keys) > 20
    for key in keys:
        override = f"--{key.removesuffix('[0]')}=nan"
        assert f"{key} must be a finite number, got nan" in _problems(tmp_path, [override]), key


@pytest.mark.parametrize("content, fragment", [
    (b"", "holds no prompts"),
    (b"\n  \n\t\n", "holds no prompts"),
    (b"a red circle\n\x00\x01\x02binary", "line 2: NUL byte"),
    (b"a red circle\ncaf\xe9 au lait\n", "line 2: not UTF-8 (byte 0xe9)"),
    (b"ok\n\n" + b"x" * (MAX_PROMPT_CHARS + 1) + b"\n", f"line 3: {MAX_PROMPT_CHARS + 1} characters, more than"),
])
def test_bad_prompt_files_are_refused_naming_file_and_line(tmp_path, content, fragment):
    path = tmp_path / "prompts.txt"
    path.write_bytes(content)
    text = _problems(tmp_path, [f"--rollout.prompt_file={path}"])
    assert f"rollout.prompt_file: prompt file {path}" in text and fragment in text


def test_a_huge_prompt_line_is_never_echoed_whole(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("fine\n" + "y" * 10_000_000 + "\n")
    text = _problems(tmp_path, [f"--rollout.prompt_file={path}"])
    assert "line 2: 10000000 characters" in text and len(text) < 1000


def test_a_good_prompt_file_is_read_stripped_without_blank_lines(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("  a red circle \n\n\u00e9t\u00e9 \u2014 a blue square\n", encoding="utf-8")
    assert read_prompt_file(path) == ["a red circle", "\u00e9t\u00e9 \u2014 a blue square"]
    validate(apply_overrides(Config(), [f"--job.output_dir={tmp_path}", f"--rollout.prompt_file={path}"]))
    assert "does not exist" in _problems(tmp_path, [f"--rollout.prompt_file={tmp_path}/missing.txt"])


def test_output_dir_that_cannot_be_written_is_refused(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    text = _problems(tmp_path, [f"--job.output_dir={blocker}/runs"])
    assert f"job.output_dir '{blocker}/runs' cannot be created: {blocker} is not a folder" in text
    validate(apply_overrides(Config(), [f"--job.output_dir={tmp_path}/new/deeper"]))  # creatable: fine


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_read_only_output_dir_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert "is not writable" in _problems(tmp_path, [f"--job.output_dir={locked}/runs"])


def test_groups_of_keys_in_overrides():
    cfg = apply_overrides(Config(), ["--reward.judge.score_max=10", "--reward.judge.model=judge-7b"])
    assert cfg.reward.judge.score_max == 10.0 and cfg.reward.judge.model == "judge-7b"
    with pytest.raises(ConfigError, match="reward.judge is a group of keys"):
        apply_overrides(Config(), ["--reward.judge=x"])
    with pytest.raises(ConfigError, match="reward.std_eps has no sub-keys"):
        apply_overrides(Config(), ["--reward.std_eps.x=1"])
    with pytest.raises(ConfigError, match="unknown config key reward.judge.key"):
        apply_overrides(Config(), ["--reward.judge.key=sk-1"])
    assert Config.from_dict(cfg.to_dict()) == cfg


def test_fail_fast_and_timeout_settings_are_checked(tmp_path):
    text = _problems(tmp_path, ["--job.max_skipped_iterations=-1", "--parallel.timeout_s=0"])
    assert "job.max_skipped_iterations must be >= 0" in text and "parallel.timeout_s must be > 0" in text


@pytest.mark.parametrize("content, fragment", [
    ('{"prompt": "a cat"}\n{"prompt": "a dog",\n', 'line 2: not valid JSON'),
    ('{"prompt": "a cat"}\n\n{"text": "OPEN"}\n', 'line 3: no "prompt" field'),
    ('{"prompt": ""}\n', 'line 1: no "prompt" field'),
    ('{"prompt": 7}\n', 'line 1: no "prompt" field'),
    ('["a cat"]\n', "line 1: a JSONL prompt file needs one JSON object per line"),
    ('{"prompt": "a cat", "text": "A"}\n{"prompt": "a cat", "text": "B"}\n', "line 2: prompt 'a cat' appeared on line 1"),
])
@pytest.mark.parametrize("key", ["rollout.prompt_file", "eval.prompt_file"])
def test_bad_jsonl_prompt_files_are_refused_naming_file_and_line(tmp_path, content, fragment, key):
    path = tmp_path / "prompts.jsonl"
    path.write_text(content)
    text = _problems(tmp_path, [f"--{key}={path}"])
    assert f"{key}: prompt file {path} {fragment}" in text


def test_jsonl_prompt_records_carry_their_metadata(tmp_path):
    from vgrpo.utils.prompt_file import PromptRecord, read_prompt_records

    path = tmp_path / "prompts.jsonl"
    path.write_text('{"prompt": " a sign that says \\"OPEN\\" ", "text": "OPEN"}\n\n'
                    '{"prompt": "two cats", "include": [{"class": "cat", "count": 2}]}\n'
                    '{"prompt": "two cats", "include": [{"class": "cat", "count": 2}]}\n')
    assert read_prompt_records(path) == [
        PromptRecord('a sign that says "OPEN"', {"text": "OPEN"}),
        PromptRecord("two cats", {"include": [{"class": "cat", "count": 2}]}),
        PromptRecord("two cats", {"include": [{"class": "cat", "count": 2}]}),
    ]
    assert read_prompt_file(path) == ['a sign that says "OPEN"', "two cats", "two cats"]
    text_file = tmp_path / "prompts.txt"  # only *.jsonl is read as JSON
    text_file.write_text('{"prompt": "x"}\n')
    assert read_prompt_records(text_file) == [PromptRecord('{"prompt": "x"}', {})]


def test_eval_rewards_and_switches_are_validated(tmp_path):
    text = _problems(tmp_path, ["--eval.rewards=pickscore,nope", "--eval.reward_paths=a", "--eval.images_per_prompt=0",
                                "--eval.use_ema=true", "--logging.wandb_mode=sometimes"])
    assert "eval.rewards: unknown reward 'nope'" in text
    assert "eval.reward_paths has 1 entries for 2 rewards" in text
    assert "eval.images_per_prompt must be >= 1" in text
    assert "eval.use_ema=true needs an EMA" in text
    assert "logging.wandb_mode must be online|offline|disabled" in text


def test_logging_wandb_without_the_package_is_refused_with_the_install_hint(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` now fails as if not installed
    assert "logging.wandb=true needs the wandb package: pip install 'vgrpo[wandb]'" in _problems(
        tmp_path, ["--logging.wandb=true"])
