"""The evaluation command: prompt sets, checkpoint weights, JSON + Markdown tables."""

import json

import pytest
import torch

from vgrpo.evaluate import find_checkpoint, load_prompts, load_trainable_weights, main


def test_evaluates_the_base_model_on_a_prompt_file(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\n\na blue square left of a green triangle\n")
    code = main([
        "--prompts", str(prompts), "--rewards", "shapes,jpeg_compressibility", "--images-per-prompt", "2",
        "--out", str(tmp_path / "out"), "--rollout.steps=2",
    ])
    assert code == 0
    result = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert result["num_prompts"] == 2 and result["images_per_prompt"] == 2
    assert result["rewards"]["shapes"]["count"] == 4 and 0 <= result["rewards"]["shapes"]["mean"] <= 1
    assert result["rewards"]["jpeg_compressibility"]["mean"] < 0  # minus the JPEG size in kB
    assert set(result["categories"]) == {"colors", "position", "overall"}
    assert set(result["categories"]["colors"]["requirements"]) == {"count", "color", "shape"}
    assert set(result["categories"]["position"]["requirements"]) == {"count", "color", "shape", "relation"}
    table = (tmp_path / "out" / "eval.md").read_text()
    assert "| shapes |" in table and "| position |" in table
    assert "| category | verifier score | accuracy | count | color | shape | relation |" in table
    assert table.split("| colors |")[1].split("\n")[0].endswith("| - |")  # colors have no relation


def test_bad_prompt_sets_and_runs_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither 'heldout', 'train' nor an existing file"):
        load_prompts(str(tmp_path / "missing.txt"))
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(ValueError, match="holds no prompts"):
        load_prompts(str(tmp_path / "empty.txt"))
    assert len(load_prompts("heldout")) > 0
    with pytest.raises(FileNotFoundError, match="not a vgrpo run folder"):
        main(["--run", str(tmp_path)])
    with pytest.raises(FileNotFoundError, match="not a complete checkpoint"):
        find_checkpoint(str(tmp_path), "step-000001")
    assert find_checkpoint(str(tmp_path), None) is None


def test_checkpoint_weights_are_loaded_into_a_fresh_model(tmp_path):
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    trained, fresh = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    trained.bias.requires_grad_(False)  # frozen parameters are not in a checkpoint
    with torch.no_grad():
        trained.weight.mul_(3.0)
    state = get_model_state_dict(trained, options=StateDictOptions(ignore_frozen_params=True))
    dcp.save({"model": state}, checkpoint_id=str(tmp_path / "ckpt"))
    fresh.bias.requires_grad_(False)
    bias_before = fresh.bias.clone()
    load_trainable_weights(fresh, tmp_path / "ckpt")
    assert torch.equal(fresh.weight, trained.weight)
    assert torch.equal(fresh.bias, bias_before)
    with torch.no_grad():
        trained.weight[0, 0] = float("nan")
    dcp.save({"model": get_model_state_dict(trained, options=StateDictOptions(ignore_frozen_params=True))},
             checkpoint_id=str(tmp_path / "nan"))
    with pytest.raises(ValueError, match="nan holds non-finite parameters"):
        load_trainable_weights(fresh, tmp_path / "nan")


def test_the_newest_checkpoint_that_passes_its_check_is_scored(tmp_path, capsys):
    from tests.trainer_setups import run, tiny_config

    trainer = run(tiny_config(tmp_path, checkpoint=dict(every=1)))
    (trainer.run_dir / "checkpoints/step-000002/.metadata").unlink()
    assert find_checkpoint(str(trainer.run_dir), None).name == "step-000001"
    assert "skipping checkpoint" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match=".metadata is missing"):
        find_checkpoint(str(trainer.run_dir), "step-000002")


def test_a_jsonl_prompt_set_hands_its_metadata_to_the_rewards(tmp_path, monkeypatch):
    from vgrpo.evaluate import load_prompts_and_metadata
    from vgrpo.rewards import registry

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "a red circle", "text": "RED"}\n{"prompt": "a blue square"}\n')
    assert load_prompts_and_metadata(str(prompts)) == (["a red circle", "a blue square"], [{"text": "RED"}, {}])
    seen = []

    class Recorder:
        name = "ocr"

        def __call__(self, images, prompts, *, metadata=None):
            seen.extend(metadata)
            return torch.zeros(len(prompts))

    monkeypatch.setitem(registry.BUILDERS, "ocr", lambda path, device, **options: Recorder())
    assert main(["--prompts", str(prompts), "--rewards", "ocr", "--images-per-prompt", "2",
                 "--out", str(tmp_path / "out"), "--rollout.steps=1"]) == 0
    assert seen == [{"text": "RED"}, {"text": "RED"}, {}, {}]
