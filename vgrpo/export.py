"""Export a run's trained model for diffusers and peft users (no GPU, nothing downloaded).

    python -m vgrpo.export --run runs/flux-lora --out exports/flux-lora --format lora
    python -m vgrpo.export --run runs/flux-lora --checkpoint step-000100 --out exports/flux --format merged --ema
    python -m vgrpo.export --config export.toml       (the same keys in a TOML / YAML file; --help lists them)

--format lora (LoRA runs): DIR/pytorch_lora_weights.safetensors in diffusers' LoRA format, the keys
    `transformer.<module path>.lora_A.weight` [r, in] and `.lora_B.weight` [out, r] in the trained
    dtype, with the LoRA config (r, lora_alpha, target_modules) in the file's `lora_adapter_metadata`,
    which diffusers reads: `pipe.load_lora_weights(DIR)` loads every key at the trained strength
    lora_alpha / r. Also DIR/adapter_config.json + adapter_model.safetensors for
    `peft.PeftModel.from_pretrained(transformer, DIR)`. A full fine-tuning run has no LoRA: use merged.
--format merged: for FLUX / SD3 a complete diffusers pipeline directory: model_index.json, the trained
    transformer (LoRA merged in float32, written with `save_pretrained` in the dtype of the base's
    transformer weights) and every other component of the base directory hard-linked (copied across
    file systems), never modified: `FluxPipeline.from_pretrained(DIR)` works unchanged. For the shapes
    world a model folder, as vgrpo/assets/shapes_base, that `--model.path` of `vgrpo.evaluate` and
    `--model` of `vgrpo.sample_grid` accept.
--ema: the checkpoint's EMA of the trainable parameters (`optim.ema_decay`) instead of the parameters.

Reads only the run's config.json and the checkpoint (DCP tensors, JSON), written by any number of
processes. Refused, with a message naming the path, before any weight is read: a run without
config.json, a checkpoint that fails its manifest check, a missing or incomplete base directory, and
an existing non-empty DIR (unless --overwrite). The export is written beside DIR and renamed into
place when complete, so an interrupted export never leaves a partial DIR. DIR/vgrpo_export.json
records where it came from.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import typing
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

from vgrpo.utils.offline import use_offline_environment

use_offline_environment()

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from torch import nn  # noqa: E402

from vgrpo.utils import hub  # noqa: E402
from vgrpo.utils.cli import parse  # noqa: E402

Format = Literal["lora", "merged"]
FORMATS = typing.get_args(Format)
LORA_WEIGHTS = "pytorch_lora_weights.safetensors"  # diffusers' LORA_WEIGHT_NAME_SAFE
PEFT_WEIGHTS = "adapter_model.safetensors"
LORA_METADATA_KEY = "lora_adapter_metadata"  # diffusers' LORA_ADAPTER_METADATA_KEY
PREFIX = "transformer"  # the pipeline component a LoRA file's keys and metadata belong to
RECORD = "vgrpo_export.json"
_PEFT_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<ab>[AB])\.default\.weight$")
_SAFETENSORS_DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}


class ExportError(ValueError):
    """The export cannot be made as asked; the message names the path or setting at fault."""


# ----------------------------------------------------------------------------- inputs


def run_config(run: Path):
    """The run's Config, from its config.json (JSON only)."""
    from vgrpo.trainer.config import Config

    file = run / "config.json"
    if not file.is_file():
        raise ExportError(f"--run {run}: no config.json (not a vgrpo run folder)")
    try:
        return Config.from_dict(json.loads(file.read_text()))
    except (ValueError, TypeError, AttributeError) as exc:
        raise ExportError(f"{file} is not a valid run config: {exc}") from None


def checked_checkpoint(run: Path, name: str | None) -> Path:
    """The named checkpoint of `run`, or its newest one that passes its manifest check."""
    from vgrpo.evaluate import find_checkpoint

    if name is not None and (m := re.fullmatch(r"step-(\d+)", name)):
        name = f"step-{int(m.group(1)):06d}"  # step-50 names step-000050
    try:
        found = find_checkpoint(str(run), name)
    except FileNotFoundError as exc:
        raise ExportError(str(exc)) from None
    if found is None:
        raise ExportError(f"run {run} has no complete checkpoint in {run / 'checkpoints'}")
    return found


def trained_tensors(checkpoint: Path, ema: bool) -> dict[str, torch.Tensor]:
    """{parameter name (peft's, as trained): whole tensor} of the checkpoint's trainable parameters
    or, with `ema`, of their EMA; ExportError when absent or not finite."""
    from vgrpo.trainer.checkpoint import read_tensors
    from vgrpo.trainer.ema import NUM_UPDATES

    tensors = read_tensors(checkpoint, "ema" if ema else "model")
    tensors.pop(NUM_UPDATES, None)
    if not tensors:
        what = "EMA (the run had optim.ema_decay=0; export without --ema)" if ema else "model parameters"
        raise ExportError(f"checkpoint {checkpoint} holds no {what}")
    bad = [n for n, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise ExportError(f"checkpoint {checkpoint} holds non-finite values in {bad[:3]}")
    return tensors


def base_directory(cfg) -> Path | None:
    """The checked base model directory of the run (None: the shapes model shipped with vgrpo, or
    seeded random weights); ExportError naming the path when it is missing or incomplete."""
    m = cfg.model
    if m.name == "shapes":
        try:
            path = hub.resolve(m.path, "model.path of the run")
        except hub.HubIdError as exc:
            raise ExportError(str(exc)) from None
        if path is not None and not (Path(path) / "config.json").is_file():
            raise ExportError(f"base model folder {m.path} (model.path of the run) is missing or has no config.json")
        return None if path is None else Path(path)
    from vgrpo.models.local_dir import ModelDirError, validate_model_dir

    try:
        return validate_model_dir(m.path, m.name)
    except ModelDirError as exc:
        raise ExportError(f"base model of the run: {exc}") from None


def output_folder(out: Path, overwrite: bool, protected: Sequence[Path]) -> Path:
    """The temporary folder to build the export in (beside `out`); ExportError when `out` exists
    and is not empty (unless `overwrite`) or would hold or replace the run or the base model."""
    target = out.resolve()
    for p in protected:
        p = p.resolve()
        if target == p or target in p.parents or p in target.parents:
            raise ExportError(f"--out {out} overlaps {p}, which the export reads; choose another folder")
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ExportError(f"--out {out} exists and is not empty; pass --overwrite to replace it")
    tmp = out.parent / f".{out.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def finish(tmp: Path, out: Path) -> None:
    """Move the complete export from `tmp` to `out` (replacing an earlier one)."""
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)


# ----------------------------------------------------------------------------- LoRA


def lora_pairs(tensors: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{module path: (A [r, in], B [out, r])} from peft's parameter names (adapter "default"); the
    model's persistent buffers, saved beside the LoRA weights, are skipped."""
    found: dict[str, dict[str, torch.Tensor]] = {}
    for name, t in tensors.items():
        m = _PEFT_KEY.match(name)
        if m is None and "lora_" not in name:
            continue  # a buffer (e.g. SD3's pos_embed), not trained
        if m is None:
            raise ExportError(f"checkpoint parameter {name!r} is not a LoRA A/B weight of the default adapter")
        found.setdefault(m["module"], {})[m["ab"]] = t
    incomplete = [k for k, ab in found.items() if set(ab) != {"A", "B"}]
    if incomplete:
        raise ExportError(f"LoRA modules without both A and B: {incomplete[:3]}")
    if not found:
        raise ExportError("the checkpoint holds no LoRA weights")
    return {k: (ab["A"], ab["B"]) for k, ab in sorted(found.items())}


def write_lora(folder: Path, pairs: dict[str, tuple[torch.Tensor, torch.Tensor]], finetune) -> None:
    """pytorch_lora_weights.safetensors (diffusers, config in its metadata), and adapter_config.json +
    adapter_model.safetensors (peft)."""
    from vgrpo.trainer.parallelize import lora_config

    config = lora_config(finetune)
    kwargs = {"r": config.r, "lora_alpha": config.lora_alpha, "lora_dropout": config.lora_dropout,
              "target_modules": sorted(config.target_modules)}
    diffusers_sd, peft_sd = {}, {}
    for module, (a, b) in pairs.items():
        for ab, t in (("A", a), ("B", b)):
            diffusers_sd[f"{PREFIX}.{module}.lora_{ab}.weight"] = t.contiguous()
            peft_sd[f"base_model.model.{module}.lora_{ab}.weight"] = t.contiguous()
    metadata = {"format": "pt", LORA_METADATA_KEY: json.dumps({f"{PREFIX}.{k}": v for k, v in kwargs.items()},
                                                              indent=2, sort_keys=True)}
    save_file(diffusers_sd, str(folder / LORA_WEIGHTS), metadata=metadata)
    save_file(peft_sd, str(folder / PEFT_WEIGHTS), metadata={"format": "pt"})
    config.save_pretrained(str(folder))


# ----------------------------------------------------------------------------- merged


@torch.no_grad()
def apply_trained(denoiser: nn.Module, tensors: dict[str, torch.Tensor], finetune) -> None:
    """Put the trained weights into the plain (peft-free) `denoiser` in place: LoRA merged as
    W <- W + (alpha / r) B A computed in float32 and rounded once to W's dtype, or, for full
    fine-tuning, every parameter replaced."""
    if finetune.mode == "full":
        params = {**dict(denoiser.named_buffers()), **dict(denoiser.named_parameters())}
        params = {n: params[n] for n in denoiser.state_dict()}  # parameters and persistent buffers
        missing, unexpected = sorted(params.keys() - tensors.keys()), sorted(tensors.keys() - params.keys())
        if missing or unexpected:
            raise ExportError(f"checkpoint does not fit the base transformer: missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]}")
        for name, p in params.items():
            if p.shape != tensors[name].shape:
                raise ExportError(f"{name}: checkpoint shape {tuple(tensors[name].shape)}, model {tuple(p.shape)}")
            p.copy_(tensors[name])
        return
    scale = finetune.lora_alpha / finetune.lora_rank
    for module, (a, b) in lora_pairs(tensors).items():
        try:
            linear = denoiser.get_submodule(module)
        except AttributeError:
            linear = None
        if not isinstance(linear, nn.Linear) or linear.weight.shape != (b.shape[0], a.shape[1]):
            raise ExportError(f"LoRA module {module!r} of the checkpoint is not a matching linear layer of the base")
        w = linear.weight
        w.copy_((w.float() + scale * (b.float() @ a.float())).to(w.dtype))


def stored_dtype(folder: Path) -> torch.dtype:
    """The dtype most tensors of a weights folder's safetensors files are stored in."""
    from vgrpo.models.local_dir import safetensors_header, weight_files

    counts = Counter(info["dtype"] for f in weight_files(folder) for info in safetensors_header(f).values())
    name = counts.most_common(1)[0][0]
    if name not in _SAFETENSORS_DTYPES:
        raise ExportError(f"{folder} stores its weights as {name}; export handles {sorted(_SAFETENSORS_DTYPES)}")
    return _SAFETENSORS_DTYPES[name]


def link_tree(src: Path, dst: Path) -> None:
    """Every file under `src` hard-linked (copied when linking fails) under `dst`; symlinks followed."""
    for f in sorted(src.rglob("*")):
        if f.is_file():
            target = dst / f.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(f, target)
            except OSError:
                shutil.copy2(f, target)


def write_merged_pipeline(folder: Path, base: Path, tensors: dict[str, torch.Tensor], finetune) -> None:
    """model_index.json, the trained transformer and the base's other components into `folder`."""
    import diffusers

    from vgrpo.models.hf_components import load_module
    from vgrpo.models.local_dir import read_json

    index = read_json(base / "model_index.json")
    components = [k for k, v in index.items() if not k.startswith("_") and isinstance(v, list) and v[0] is not None]
    for name in components:
        if Path(name).name != name or name in ("", ".", ".."):
            raise ExportError(f"{base / 'model_index.json'} names a component {name!r} that is not a folder name")
    library, class_name = index["transformer"]
    cls = getattr(diffusers, class_name, None) if library == "diffusers" else None
    if cls is None:
        raise ExportError(f"{base / 'model_index.json'}: transformer class {library}.{class_name} is not a diffusers model")
    transformer = load_module(cls, base, "transformer", stored_dtype(base / "transformer"))
    apply_trained(transformer, tensors, finetune)
    transformer.save_pretrained(str(folder / "transformer"), safe_serialization=True)
    shutil.copy2(base / "model_index.json", folder / "model_index.json")
    for name in components:
        if name != "transformer" and (base / name).is_dir():
            link_tree(base / name, folder / name)


def write_merged_shapes(folder: Path, cfg, tensors: dict[str, torch.Tensor]) -> None:
    """The shapes world's model folder (config.json, denoiser / text encoder safetensors)."""
    from vgrpo.trainer.trainer import build_adapter

    adapter = build_adapter(cfg, torch.device("cpu"))
    apply_trained(adapter.denoiser, tensors, cfg.finetune)
    adapter.save_pretrained(folder)


# ----------------------------------------------------------------------------- entry


def export(run: str | Path, out: str | Path, fmt: str, *, checkpoint: str | None = None, ema: bool = False,
           overwrite: bool = False) -> Path:
    """Export checkpoint `checkpoint` (default: the newest passing its check) of `run` to `out`."""
    run, out = Path(run), Path(out)
    if fmt not in FORMATS:
        raise ExportError(f"--format must be one of {FORMATS}, got {fmt!r}")
    cfg = run_config(run)
    if fmt == "lora" and cfg.finetune.mode != "lora":
        raise ExportError(f"run {run} is a full fine-tuning run (finetune.mode={cfg.finetune.mode!r}): it has no "
                          "LoRA to export; use --format merged")
    path = checked_checkpoint(run, checkpoint)
    base = base_directory(cfg)
    tensors = trained_tensors(path, ema)
    if fmt == "lora":
        lora_pairs(tensors)  # refuse non-LoRA parameters before anything is written
    tmp = output_folder(out, overwrite, [run] + ([base] if base is not None else []))
    try:
        if fmt == "lora":
            write_lora(tmp, lora_pairs(tensors), cfg.finetune)
        elif cfg.model.name == "shapes":
            write_merged_shapes(tmp, cfg, tensors)
        else:
            write_merged_pipeline(tmp, base, tensors, cfg.finetune)
        record = {"run": str(run), "checkpoint": path.name, "format": fmt, "ema": ema, "model": cfg.model.name,
                  "base": None if base is None else str(base), "finetune": cfg.finetune.mode}
        if cfg.finetune.mode == "lora":
            record.update(lora_rank=cfg.finetune.lora_rank, lora_alpha=cfg.finetune.lora_alpha)
        (tmp / RECORD).write_text(json.dumps(record, indent=2) + "\n")
        finish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


@dataclass
class ExportOptions:
    """The options of `python -m vgrpo.export` (see the module docstring)."""

    run: str
    """Run folder (its config.json and checkpoints/)."""
    out: str
    """Output folder (must not exist or be empty, unless --overwrite)."""
    format: Format
    """lora: diffusers / peft LoRA files; merged: a full model."""
    checkpoint: str | None = None
    """Checkpoint folder name in <run>/checkpoints (step-50 names step-000050); None = the newest that passes its check."""
    ema: bool = False
    """Export the EMA of the trained parameters (optim.ema_decay) instead of the parameters."""
    overwrite: bool = False
    """Replace an existing non-empty --out."""


def main(argv: Sequence[str] | None = None) -> int:
    o = parse(ExportOptions, argv, __doc__)
    try:
        out = export(o.run, o.out, o.format, checkpoint=o.checkpoint, ema=o.ema, overwrite=o.overwrite)
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({o.format}{', EMA' if o.ema else ''})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
