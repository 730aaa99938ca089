"""Evaluation during training for any model: a tiny FLUX run evaluated on a JSONL prompt file, the
shapes world's held-out verifier evaluation through the same interface (metrics as the verifier
computes them), metadata reaching the rewards, the EMA hook, and the sample grid."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tests.fixtures_tiny_models import RESOLUTION, T5_LENGTH, tiny_flux_dir, tiny_sd3_dir
from tests.trainer_setups import ColorBalanceReward, color_rewards, tiny_adapter, tiny_config
from vgrpo.rewards.base import RewardSet
from vgrpo.trainer.metrics import read_metrics


class MetadataRecorder:
    """ColorBalanceReward that records every (prompt, metadata) pair it is shown."""

    name = "recorder"

    def __init__(self):
        self.seen: list[tuple[str, dict | None]] = []

    def __call__(self, images, prompts, *, metadata=None):
        self.seen += list(zip(prompts, metadata or [None] * len(prompts)))
        return ColorBalanceReward()(images, prompts)


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.mark.parametrize("model, directory", [("flux", tiny_flux_dir), ("sd3", tiny_sd3_dir)])
def test_tiny_flux_and_sd3_runs_evaluate_a_jsonl_prompt_file_with_metadata(tmp_path, model, directory):
    train_file = _jsonl(tmp_path / "train.jsonl", [
        {"prompt": "a photo of a cat", "objects": ["cat"]},
        {"prompt": "a red cube on the left", "objects": ["cube"], "text": "CUBE"},
    ])
    eval_file = _jsonl(tmp_path / "eval.jsonl", [
        {"prompt": "a blue sphere", "category": "colors"},
        {"prompt": "a dog and a cat", "category": "two"},
        {"prompt": "a green dog", "category": "colors"},
    ])
    recorder = MetadataRecorder()
    cfg = tiny_config(
        tmp_path, finetune={"mode": "lora"},
        model={"name": model, "path": str(directory()), "init": "pretrained", "resolution": RESOLUTION,
               "max_sequence_length": T5_LENGTH},
        rollout={"prompt_file": train_file},
        eval={"every": 1, "prompt_file": eval_file, "images_per_prompt": 2, "grid_images": 4,
              "rewards": ["recorder", "jpeg_compressibility"], "reward_paths": ["none", "none"]},
        logging={"tensorboard": True},
    )
    from vgrpo.trainer.config import validate
    from vgrpo.trainer.trainer import Trainer

    with pytest.raises(Exception, match="eval.rewards: unknown reward 'recorder'"):
        validate(cfg)  # eval rewards come from the registry ...
    cfg.eval.rewards, cfg.eval.reward_paths = ["jpeg_compressibility"], []
    trainer = Trainer(cfg, reward_factory=lambda c, d: RewardSet([recorder]))
    trainer.evaluator.rewards = RewardSet([recorder, *trainer.evaluator.rewards.rewards])  # ... plus the recorder
    trainer.train()
    folder = trainer.run_dir

    files = sorted(p.name for p in (folder / "eval").glob("*.json"))
    assert files == ["iter-000000.json", "iter-000001.json", "iter-000002.json"]
    first = json.loads((folder / "eval" / "iter-000000.json").read_text())
    for name in ("recorder", "jpeg_compressibility"):
        assert math.isfinite(first[f"reward/{name}"])
        assert {f"reward/{name}/colors", f"reward/{name}/two"} <= set(first)
    assert first["valid_fraction"] == 1.0
    evals = read_metrics(folder / "metrics.jsonl", "eval")
    assert [e["iteration"] for e in evals] == [0, 1, 2] and "reward/jpeg_compressibility" in evals[0]
    assert evals[-1]["reward/recorder"] != first["reward/recorder"]  # the trained LoRA moved the images
    assert sorted(p.name for p in (folder / "samples").glob("*.png")) == [
        "iter-000000.png", "iter-000001.png", "iter-000002.png"]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = EventAccumulator(str(folder / "tensorboard"), size_guidance={"images": 0})
    tb.Reload()
    assert len(tb.Images("eval/samples")) >= 3

    # metadata reached the reward: rollouts carry the training records', evaluation the eval file's
    train_meta = {"a photo of a cat": {"objects": ["cat"]}, "a red cube on the left": {"objects": ["cube"], "text": "CUBE"}}
    eval_meta = {"a blue sphere": {"category": "colors"}, "a dog and a cat": {"category": "two"},
                 "a green dog": {"category": "colors"}}
    assert recorder.seen and all(m == {**train_meta, **eval_meta}[p] for p, m in recorder.seen)
    assert {p for p, _ in recorder.seen} == set(train_meta) | set(eval_meta)


def test_shapes_evaluation_is_the_verifier_on_fixed_noise_images(tmp_path):
    """The held-out evaluation through the Evaluator interface reports exactly what the verifier's
    per-category functions compute on the fixed-noise images, under the keys and order of before."""
    from vgrpo.rewards.shapes import REQUIREMENTS, per_category_accuracy, per_category_requirements, per_category_score
    from vgrpo.utils.distributed import STREAM_EVAL_NOISE
    from vgrpo.sampling.rollout import generate, initial_noise
    from vgrpo.trainer.trainer import Trainer
    from vgrpo.world.prompts import heldout_prompts_by_category

    # the shipped base model: its verifier scores are not all zero
    # (sampled, decoded and scored 5 images at a time: chunks 5, 5, 2)
    cfg = tiny_config(tmp_path, model=dict(init="pretrained"), rollout=dict(batch_size=5),
                      eval=dict(every=0, images_per_category=2, grid_images=6))
    trainer = Trainer(cfg, reward_factory=color_rewards)
    metrics = trainer.evaluate(0)
    cats = list(heldout_prompts_by_category())
    assert list(metrics) == [f"{k}/{c}" for c in cats for k in ("score", "accuracy")] + [
        "score/overall", "accuracy/overall"] + [f"requirement/{r}" for r in REQUIREMENTS] + ["time_eval_s"]

    prompts = trainer.evaluator.prompts
    assert len(prompts) == 2 * len(cats) and prompts[: len(cats)] == [ps[0] for ps in heldout_prompts_by_category().values()]
    noise = initial_noise(trainer.adapter.latent_shape, cfg.job.seed, STREAM_EVAL_NOISE, 0, torch.arange(len(prompts)))
    chunks = []
    with torch.no_grad():  # sampled in the evaluator's chunks: the model's numerics depend on the batch size
        for lo in range(0, len(prompts), cfg.rollout.batch_size):
            part = slice(lo, lo + cfg.rollout.batch_size)
            x0 = generate(trainer.adapter, trainer.adapter.encode_prompts(prompts[part]), noise[part],
                          steps=cfg.rollout.steps, solver=cfg.rollout.solver, shift=cfg.rollout.shift)
            chunks.append(trainer.adapter.decode(x0).float().clamp(0, 1))
    images = torch.cat(chunks)
    score, accuracy = per_category_score(images, prompts), per_category_accuracy(images, prompts)
    assert 0 < score["overall"] < 1
    for c in cats + ["overall"]:  # bit for bit: the same sums in the same order
        assert (metrics[f"score/{c}"], metrics[f"accuracy/{c}"]) == (score[c], accuracy[c]), c
    need = per_category_requirements(images, prompts)["overall"]
    assert {r: metrics[f"requirement/{r}"] for r in REQUIREMENTS} == pytest.approx(need, abs=1e-12)
    saved = json.loads((trainer.run_dir / "eval" / "iter-000000.json").read_text())
    assert saved == metrics
    trainer.run_folder.release()


class ZeroLoraEMA:
    """The EMA interface the trainer uses (`averaged(model)`): here the LoRA B matrices at zero,
    i.e. the base model, restored on exit."""

    def __init__(self):
        self.entered = 0

    def averaged(self, model):
        import contextlib

        @contextlib.contextmanager
        def swap():
            params = [p for n, p in model.named_parameters() if "lora_B" in n]
            saved = [p.detach().clone() for p in params]
            with torch.no_grad():
                for p in params:
                    p.zero_()
            self.entered += 1
            try:
                yield model
            finally:
                with torch.no_grad():
                    for p, s in zip(params, saved):
                        p.copy_(s)

        return swap()


def test_eval_use_ema_evaluates_with_the_ema_weights_swapped_in(tmp_path):
    from vgrpo.trainer.trainer import Trainer

    prompts = tmp_path / "eval.txt"
    prompts.write_text("a red circle\na blue square\n")
    cfg = tiny_config(tmp_path, eval=dict(every=0, prompt_file=str(prompts), images_per_prompt=2))
    trainer = Trainer(cfg, adapter_factory=tiny_adapter, reward_factory=color_rewards)
    trainer.train()
    evals = read_metrics(trainer.run_dir / "metrics.jsonl", "eval")
    base, trained = evals[0]["reward/color_balance"], evals[-1]["reward/color_balance"]
    assert base != trained
    trainer.cfg.eval.use_ema = True
    with pytest.raises(RuntimeError, match="keeps no EMA"):
        trainer.evaluate(2)
    trainer.ema = ZeroLoraEMA()
    assert trainer.evaluate(2)["reward/color_balance"] == base and trainer.ema.entered == 1
    trainer.cfg.eval.use_ema = False
    assert trainer.evaluate(2)["reward/color_balance"] == trained  # trained weights restored


def test_flux_without_an_eval_prompt_file_is_not_evaluated(tmp_path, caplog):
    from vgrpo.trainer.evaluation import build_evaluator
    from vgrpo.trainer.presets import load_config

    cfg = load_config("flux-dev", [f"--model.path={tmp_path}"])
    with caplog.at_level("WARNING"):
        assert build_evaluator(cfg, RewardSet([ColorBalanceReward()])) is None
    assert "set eval.prompt_file" in caplog.text


def test_eval_rewards_reuse_a_loaded_training_reward_and_join_the_shapes_verifier(tmp_path):
    from vgrpo.rewards.jpeg import JpegCompressibility
    from vgrpo.trainer.evaluation import build_evaluator

    jpeg = JpegCompressibility()
    train = RewardSet([jpeg, ColorBalanceReward()])
    cfg = tiny_config(tmp_path, reward=dict(names=["jpeg_compressibility", "shapes"]),
                      eval=dict(every=0, images_per_category=1, rewards=["jpeg_compressibility", "jpeg_incompressibility"]))
    evaluator = build_evaluator(cfg, train)
    assert evaluator.rewards.rewards[0] is jpeg  # the training instance, not a second load
    assert evaluator.rewards.names == ["jpeg_compressibility", "jpeg_incompressibility"]
    n = len(evaluator.prompts)
    values = evaluator.score(torch.rand(n, 3, 32, 32), list(range(n)))
    metrics = evaluator.summarise(values)
    first_category = evaluator.metadata[0]["category"]
    assert {"score/overall", "accuracy/overall", "reward/jpeg_compressibility", "valid_fraction",
            f"reward/jpeg_incompressibility/{first_category}"} <= set(metrics)
    assert metrics["reward/jpeg_compressibility"] == pytest.approx(-metrics["reward/jpeg_incompressibility"])


def test_shapes_evaluation_reports_each_requirement():
    """Renders of the held-out prompts meet every requirement; blank images meet none (the report
    names which requirement holds a model back)."""
    from vgrpo.tasks.shapes import ShapesEvaluator
    from vgrpo.world.render import render_batch

    evaluator = ShapesEvaluator(images_per_category=4)
    n = len(evaluator.prompts)
    perfect = evaluator.summarise(evaluator.score(render_batch(evaluator.prompts, 0), list(range(n))))
    blank = evaluator.summarise(evaluator.score(torch.zeros(n, 3, 32, 32), list(range(n))))
    names = {f"requirement/{r}" for r in ("count", "color", "shape", "relation")}
    assert {k: perfect[k] for k in names} == dict.fromkeys(names, 1.0)
    assert {k: blank[k] for k in names} == dict.fromkeys(names, 0.0)
