"""Model presets: the paper's FLUX.1-dev and SD 3.5 M recipes resolve and validate before any load."""

import pytest

from vgrpo.models.recipes import FLUX_DEV_RECIPE, SD35M_STAGE1_RECIPE
from vgrpo.trainer.config import ConfigError, validate
from vgrpo.trainer.presets import load_config


@pytest.mark.parametrize("preset,recipe", [("flux-dev", FLUX_DEV_RECIPE), ("sd35m-stage1", SD35M_STAGE1_RECIPE)])
def test_recipe_presets_carry_the_recipe_and_validate_with_a_model_path(preset, recipe, tmp_path):
    cfg = load_config(preset, [f"--model.path={tmp_path}"])
    for dotted, value in recipe.items():
        section, key = dotted.split(".", 1)
        assert getattr(getattr(cfg, section), key) == value, dotted
    assert cfg.eval.every >= 0 and cfg.eval.prompt_file is None  # evaluated once a prompt file is given
    with pytest.raises(ConfigError, match="rollout.prompt_file is required for model.name="):
        validate(cfg, world_size=1)  # these families have no built-in prompts: never the shapes world's
    train = tmp_path / "train.txt"
    train.write_text("a cat\n")
    validate(load_config(preset, [f"--model.path={tmp_path}", f"--rollout.prompt_file={train}"]), world_size=1)
    prompts = tmp_path / "eval.jsonl"
    prompts.write_text('{"prompt": "a cat", "category": "animals"}\n')
    validate(load_config(preset, [f"--model.path={tmp_path}", f"--rollout.prompt_file={train}",
                                  f"--eval.prompt_file={prompts}"]), world_size=1)


def test_recipe_preset_without_model_path_fails_before_loading():
    with pytest.raises(ConfigError, match="model.path must name the local diffusers directory"):
        validate(load_config("sd35m-stage1"))


def test_speed_switches_and_prompt_file_are_validated(tmp_path):
    cfg = load_config("shapes-cpu", ["--parallel.attention=xformers", f"--rollout.prompt_file={tmp_path}/none.txt"])
    with pytest.raises(ConfigError) as info:
        validate(cfg)
    assert "parallel.attention must be sdpa|flash" in str(info.value)
    assert "rollout.prompt_file" in str(info.value)


def test_shapes_cpu_adapts_every_listed_module_of_the_shapes_denoiser():
    """Each of shapes-cpu's LoRA targets names linears of the built-in denoiser (a misspelt target
    would silently train nothing), and the adapter covers both streams' attention and MLPs."""
    from vgrpo.models.shapes import ShapesAdapter
    from vgrpo.trainer.parallelize import apply_finetune_mode
    from vgrpo.trainer.presets import SHAPES_LORA_TARGETS

    cfg = load_config("shapes-cpu")
    assert cfg.finetune.lora_targets == SHAPES_LORA_TARGETS and cfg.optim.lr == 3e-4
    denoiser = ShapesAdapter.random(seed=0).denoiser
    apply_finetune_mode(denoiser, cfg.finetune)
    adapted = {name.rsplit(".lora_A", 1)[0] for name, _ in denoiser.named_modules() if name.endswith(".lora_A")}
    for target in SHAPES_LORA_TARGETS:
        assert any(name.endswith("." + target) for name in adapted), target
    trainable = [n for n, p in denoiser.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert not any("norm" in name or "proj_out" == name.split(".")[-1] for name in adapted)  # not AdaLN / output
