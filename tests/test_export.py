"""`python -m vgrpo.export` on tiny FLUX and SD3 runs: the exported LoRA loaded by diffusers (and
peft) and the merged pipeline give vgrpo's trained transformer output, and diffusers' pipeline with
the export samples vgrpo's image; full fine-tuning round-trips exactly; refusals name the path."""

from __future__ import annotations

import copy
import json
import logging
import re
import shutil
from contextlib import contextmanager, nullcontext

import pytest
import torch

from tests.fixtures_tiny_models import RESOLUTION, T5_LENGTH, tiny_flux_dir, tiny_sd3_dir
from vgrpo.export import LORA_WEIGHTS, ExportError, export, main

PROMPTS = ["a photo of a cat", "a red cube on the left"]
FAMILIES = {"flux": (tiny_flux_dir, "FluxPipeline"), "sd3": (tiny_sd3_dir, "StableDiffusion3Pipeline")}
TEXT_ENCODER_NOTICE = re.compile(r"No LoRA keys associated to \w+ found with the prefix='text_encoder")
TOL = dict(rtol=1e-4, atol=1e-5)  # float32 everywhere: merged W + s BA vs unmerged Wx + s B(Ax)


def train(family: str, root, base=None, dtype="float32", **sections):
    """A 2-iteration run of the tiny `family` model (checkpoint at the end, EMA on); returns the Trainer."""
    from tests.trainer_setups import color_rewards, tiny_config
    from vgrpo.trainer.trainer import Trainer

    prompts = root / "prompts.txt"
    root.mkdir(parents=True, exist_ok=True)
    prompts.write_text("\n".join(PROMPTS) + "\n")
    sections = {
        "finetune": {"mode": "lora", "lora_rank": 4, "lora_alpha": 8.0}, "optim": {"lr": 1e-2, "ema_decay": 0.9},
        "model": {"name": family, "path": str(base or FAMILIES[family][0]()), "init": "pretrained",
                  "resolution": RESOLUTION, "max_sequence_length": T5_LENGTH, "dtype": dtype},
        "rollout": {"prompt_file": str(prompts)}, "checkpoint": {"every": 0}, **sections,
    }
    cfg = tiny_config(root, **sections)
    trainer = Trainer(cfg, reward_factory=color_rewards)
    trainer.train()
    return trainer


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def lora_run(request, tmp_path_factory):
    return request.param, train(request.param, tmp_path_factory.mktemp(f"{request.param}-lora"))


@contextmanager
def diffusers_warnings():
    """The warnings diffusers logs meanwhile (its loggers do not propagate to pytest's caplog)."""
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    handler, logger = Collect(logging.WARNING), logging.getLogger("diffusers")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def velocity_with(adapter, transformer, z, t, cond):
    """The adapter's velocity with `transformer` as its denoiser (same inputs, same conventions)."""
    own = adapter.denoiser
    adapter.denoiser = transformer
    try:
        with torch.no_grad():
            return adapter.velocity(z, t, cond).float()
    finally:
        adapter.denoiser = own


def probe(adapter, prompts=PROMPTS):
    """Two latents, timesteps and prompt encodings to compare transformers on."""
    z = torch.randn(2, *adapter.latent_shape, generator=torch.Generator().manual_seed(3))
    return z, torch.tensor([0.35, 0.8]), adapter.encode_prompts(prompts)


def pipeline(family: str, path, dtype=torch.float32):
    import diffusers

    cls = getattr(diffusers, FAMILIES[family][1])
    return cls.from_pretrained(str(path), dtype=dtype, local_files_only=True)


def test_lora_export_loads_in_diffusers_and_peft_at_the_trained_strength(lora_run, tmp_path):
    family, trainer = lora_run
    adapter = trainer.adapter
    out = export(trainer.run_dir, tmp_path / "lora", "lora")
    meta = json.loads((out / "vgrpo_export.json").read_text())
    assert meta["checkpoint"] == "step-000002" and meta["lora_rank"] == 4 and meta["lora_alpha"] == 8.0
    z, t, cond = probe(adapter)
    trained = velocity_with(adapter, adapter.denoiser, z, t, cond)

    pipe = pipeline(family, FAMILIES[family][0]())
    base = velocity_with(adapter, pipe.transformer, z, t, cond)
    with diffusers_warnings() as warned:
        pipe.load_lora_weights(str(out))
    # no "unexpected keys" / "missing keys"; only the notice that the file has no text-encoder LoRA,
    # which diffusers prints for every transformer-only LoRA (its own saves included)
    assert [w for w in warned if not TEXT_ENCODER_NOTICE.match(w)] == [], warned
    n_lora = sum(1 for n, p in pipe.transformer.named_parameters() if "lora_" in n)
    assert n_lora == sum(1 for n, p in adapter.denoiser.named_parameters() if p.requires_grad) > 0
    scales = {m.scaling["default_0"] for m in pipe.transformer.modules() if hasattr(m, "scaling")}
    assert scales == {8.0 / 4}  # the trained alpha / r, not diffusers' default alpha = r
    loaded = velocity_with(adapter, pipe.transformer, z, t, cond)
    torch.testing.assert_close(loaded, trained, **TOL)
    assert (base - trained).abs().max() > 1e3 * TOL["atol"]  # the LoRA does something: half of it would show

    from peft import PeftModel

    plain = pipeline(family, FAMILIES[family][0]()).transformer
    peft_model = PeftModel.from_pretrained(plain, str(out))
    torch.testing.assert_close(velocity_with(adapter, peft_model.base_model.model, z, t, cond), trained, **TOL)

    # --ema: the EMA, as the trainer's averaged model gives it
    ema_out = export(trainer.run_dir, tmp_path / "lora-ema", "lora", ema=True, checkpoint="step-2")
    with trainer.ema.averaged(adapter.denoiser):
        averaged = velocity_with(adapter, adapter.denoiser, z, t, cond)
    ema_pipe = pipeline(family, FAMILIES[family][0]())
    ema_pipe.load_lora_weights(str(ema_out))
    torch.testing.assert_close(velocity_with(adapter, ema_pipe.transformer, z, t, cond), averaged, **TOL)
    assert not torch.allclose(averaged, trained, **TOL)


def test_merged_export_is_a_pipeline_giving_the_trained_output_and_image(lora_run, tmp_path):
    family, trainer = lora_run
    adapter, base_dir = trainer.adapter, FAMILIES[family][0]()
    before = {str(f.relative_to(base_dir)): f.read_bytes() for f in base_dir.rglob("*") if f.is_file()}
    out = export(trainer.run_dir, tmp_path / "merged", "merged")
    pipe = pipeline(family, out)  # a complete pipeline directory
    assert not any("lora" in n for n, _ in pipe.transformer.named_parameters())
    z, t, cond = probe(adapter)
    torch.testing.assert_close(velocity_with(adapter, pipe.transformer, z, t, cond),
                               velocity_with(adapter, adapter.denoiser, z, t, cond), **TOL)
    for name, data in before.items():  # the base is untouched; its other components are the same files
        assert (base_dir / name).read_bytes() == data
        if not name.startswith("transformer/") and name != "model_index.json":
            assert (out / name).read_bytes() == data

    # diffusers' pipeline (Euler, fixed noise) equals vgrpo's own Euler sampler with the trained model.
    # vgrpo's grid is t_i = shift(1 - i / N); FluxPipeline uses it by default, the SD3 pipeline's default
    # ends at its training schedule's smallest sigma instead, so both get it as `sigmas` (shifted inside).
    from vgrpo.sampling.rollout import generate

    steps = 3
    noise = torch.randn(2, *adapter.latent_shape, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        image = pipe(prompt=PROMPTS, height=RESOLUTION, width=RESOLUTION, num_inference_steps=steps,
                     sigmas=[1 - i / steps for i in range(steps)], guidance_scale=3.5 if family == "flux" else 1.0,
                     max_sequence_length=T5_LENGTH, latents=noise.clone(), output_type="pt").images
        x0 = generate(adapter, cond, noise, steps=steps, solver="euler", shift=adapter.sampling["shift"])
        ours = adapter.decode(x0)
    assert image.shape == ours.shape == (2, 3, RESOLUTION, RESOLUTION)
    torch.testing.assert_close(image.float(), ours, rtol=1e-4, atol=1e-4)


def test_bfloat16_run_exports_in_bfloat16_within_its_tolerance(tmp_path):
    """A bf16 base trained in bf16: merged weights stay bf16; outputs agree to bf16 precision."""
    from vgrpo.models.local_dir import safetensors_header

    base = tmp_path / "flux-bf16"
    pipeline("flux", tiny_flux_dir(), torch.bfloat16).save_pretrained(str(base))
    trainer = train("flux", tmp_path / "run", base=base, dtype="bfloat16", optim={"lr": 5e-2, "ema_decay": 0.0})
    adapter = trainer.adapter
    assert adapter.dtype == torch.bfloat16
    z, t, cond = probe(adapter)
    trained = velocity_with(adapter, adapter.denoiser, z, t, cond)
    merged = pipeline("flux", export(trainer.run_dir, tmp_path / "merged", "merged"), torch.bfloat16)
    files = list((tmp_path / "merged" / "transformer").glob("*.safetensors"))
    assert files and {v["dtype"] for f in files for v in safetensors_header(f).values()} == {"BF16"}
    bf16 = dict(rtol=1.6e-2, atol=1.6e-2)  # 2 bf16 ulps at 1: merged W + s BA (measured: 1 ulp) vs W x + s B (A x)
    torch.testing.assert_close(velocity_with(adapter, merged.transformer, z, t, cond), trained, **bf16)
    lora = pipeline("flux", base, torch.bfloat16)
    base_out = velocity_with(adapter, lora.transformer, z, t, cond)
    lora.load_lora_weights(str(export(trainer.run_dir, tmp_path / "lora", "lora")))
    torch.testing.assert_close(velocity_with(adapter, lora.transformer, z, t, cond), trained, **bf16)
    assert (base_out - trained).abs().max() > 10 * bf16["atol"]


def test_full_finetuning_export_round_trips_exactly(tmp_path):
    trainer = train("sd3", tmp_path / "run", finetune={"mode": "full"}, optim={"lr": 1e-3, "ema_decay": 0.0})
    with pytest.raises(ExportError, match="full fine-tuning.*use --format merged"):
        export(trainer.run_dir, tmp_path / "lora", "lora")
    with pytest.raises(ExportError, match="holds no EMA.*optim.ema_decay=0"):
        export(trainer.run_dir, tmp_path / "ema", "merged", ema=True)
    out = export(trainer.run_dir, tmp_path / "merged", "merged")
    transformer = pipeline("sd3", out).transformer
    trained = dict(trainer.adapter.denoiser.named_parameters())
    base = pipeline("sd3", tiny_sd3_dir()).transformer.state_dict()
    changed = 0
    for name, p in transformer.named_parameters():
        assert torch.equal(p, trained[name].detach()), name
        changed += not torch.equal(p, base[name])
    assert changed > 0


def test_refusals_name_the_path(lora_run, tmp_path):
    family, trainer = lora_run
    run = tmp_path / "copy"
    shutil.copytree(trainer.run_dir, run, ignore=shutil.ignore_patterns(".lock"))
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("keep")
    with pytest.raises(ExportError, match=re.escape(str(tmp_path / "busy")) + ".*--overwrite"):
        export(run, tmp_path / "busy", "lora")
    assert (tmp_path / "busy" / "x").read_text() == "keep"
    out = export(run, tmp_path / "busy", "lora", overwrite=True)
    assert (out / LORA_WEIGHTS).is_file() and not (out / "x").exists()
    with pytest.raises(ExportError, match="overlaps"):
        export(run, run / "export", "lora")
    with pytest.raises(ExportError, match=re.escape(str(tmp_path / "nothing")) + ".*no config.json"):
        export(tmp_path / "nothing", tmp_path / "o1", "lora")
    # a missing base directory
    cfg = json.loads((run / "config.json").read_text())
    cfg["model"]["path"] = str(tmp_path / "gone")
    (run / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ExportError, match=re.escape(str(tmp_path / "gone"))):
        export(run, tmp_path / "o3", "merged")
    cfg["model"]["path"] = str(FAMILIES[family][0]())
    (run / "config.json").write_text(json.dumps(cfg))
    # a corrupt checkpoint: a shard one byte shorter fails the manifest check
    shard = next((run / "checkpoints" / "step-000002").glob("*.distcp"))
    shard.write_bytes(shard.read_bytes()[:-1])
    with pytest.raises(ExportError, match=re.escape(str(run / "checkpoints" / "step-000002")) + ".*bytes"):
        export(run, tmp_path / "o2", "lora", checkpoint="step-000002")
    with pytest.raises(ExportError, match="no complete checkpoint"):
        export(run, tmp_path / "o2", "lora")
    assert not any(p.name.startswith(".o") for p in tmp_path.iterdir())  # no partial exports left
    assert main(["--run", str(run), "--out", str(tmp_path / "o4"), "--format", "lora"]) == 2


def test_shapes_merged_export_is_a_model_folder_evaluate_and_sample_grid_accept(tmp_path):
    from tests.trainer_setups import color_rewards, tiny_config
    from vgrpo import evaluate, sample_grid
    from vgrpo.models.shapes import ShapesAdapter
    from vgrpo.trainer.trainer import Trainer

    base = tmp_path / "base"
    ShapesAdapter.random(seed=0, num_layers=1).save_pretrained(base)
    cfg = tiny_config(tmp_path, model={"init": "pretrained", "path": str(base)}, checkpoint={"every": 0},
                      optim={"lr": 1e-2, "ema_decay": 0.9})
    trainer = Trainer(cfg, reward_factory=color_rewards)
    trainer.train()
    adapter = trainer.adapter
    z, t, cond = probe(adapter, ["a red circle", "two blue squares"])
    for ema in (False, True):
        out = export(trainer.run_dir, tmp_path / f"merged-{ema}", "merged", ema=ema)
        merged = ShapesAdapter.from_pretrained(out)
        with trainer.ema.averaged(adapter.denoiser) if ema else nullcontext():
            want = velocity_with(adapter, adapter.denoiser, z, t, cond)
        torch.testing.assert_close(velocity_with(adapter, merged.denoiser, z, t, cond), want, **TOL)
        assert not torch.allclose(velocity_with(adapter, ShapesAdapter.from_pretrained(base).denoiser, z, t, cond),
                                  want, **TOL)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\n")
    assert evaluate.main(["--preset", "shapes-cpu", f"--model.path={out}", "--prompts", str(prompts),
                          "--images-per-prompt", "2", "--out", str(tmp_path / "eval")]) == 0
    assert str(out) in json.loads((tmp_path / "eval" / "eval.json").read_text())["model"]
    sample_grid.main([f"--model.path={out}", "--out", str(tmp_path / "grid.png"), "--prompts", "a red circle",
                      "--per-prompt", "1", "--steps", "2"])
    assert (tmp_path / "grid.png").is_file()


def test_merge_rounds_once_to_the_weight_dtype():
    """apply_trained on awkward shapes in bfloat16 against peft's unmerged layer computed in float64."""
    from types import SimpleNamespace

    from peft import LoraConfig, inject_adapter_in_model
    from torch import nn

    from vgrpo.export import apply_trained

    torch.manual_seed(0)
    finetune = SimpleNamespace(mode="lora", lora_rank=3, lora_alpha=5.0)
    model = nn.Sequential(nn.Linear(7, 13), nn.GELU(), nn.Linear(13, 5)).to(torch.bfloat16)
    reference = inject_adapter_in_model(LoraConfig(r=3, lora_alpha=5.0, target_modules=["0", "2"]),
                                        copy.deepcopy(model).double())
    tensors = {}
    for name, p in reference.named_parameters():
        if "lora_" in name:
            with torch.no_grad():
                p.copy_(torch.randn_like(p).to(torch.bfloat16))  # values a bf16 checkpoint can hold
            tensors[name] = p.detach().to(torch.bfloat16)
    tensors["0.some_buffer"] = torch.full((2,), float("nan"))  # buffers beside the LoRA are skipped
    apply_trained(model, tensors, finetune)
    assert model[0].weight.dtype == torch.bfloat16
    w_ref = reference[0].base_layer.weight + 5.0 / 3 * reference[0].lora_B.default.weight @ reference[0].lora_A.default.weight
    assert torch.equal(model[0].weight, w_ref.to(torch.bfloat16))  # one rounding of the exact sum
    x = torch.randn(4, 7, dtype=torch.float64)
    torch.testing.assert_close(model.double()(x), reference(x), rtol=2e-2, atol=2e-2)
    with pytest.raises(ExportError, match="not a matching linear"):
        apply_trained(model, {"9.lora_A.default.weight": torch.zeros(3, 7), "9.lora_B.default.weight": torch.zeros(5, 3)},
                      finetune)
