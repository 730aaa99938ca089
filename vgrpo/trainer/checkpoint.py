"""Checkpoints with torch distributed checkpoint (DCP), written atomically, checked, keep-last-k.

Layout of a run folder's `checkpoints/`:
    step-000010/            a complete checkpoint: DCP shards of model + optimizer and `.metadata`,
                            rng-rank<r>.safetensors, trainer_state.json, config.json,
                            fingerprint.json, and manifest.json (every other file's size and
                            sha256, written last)
    .tmp-step-000020/       being written; renamed to step-000020 only once every rank is done
    .trash-step-000008/     being deleted (keep-last-k renames a checkpoint away first)
A kill while saving or deleting leaves only a `.tmp-*` or `.trash-*` folder, which is ignored and
removed on the next start, so every `step-*` folder is whole. `problem(path)` re-checks a checkpoint
against its manifest before it is resumed (a truncated shard, a deleted `.metadata` or an edited
trainer_state.json fail). Only trainable parameters are saved (the LoRA adapters, or everything for
full fine-tuning); frozen base weights come from the model's own weights on resume. Nothing here
executes code from a file: tensors are safetensors / DCP, everything else JSON.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed.checkpoint as dcp
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_state_dict,
    set_state_dict,
)

from vgrpo.utils.distributed import World, all_reduce_mean, barrier
from vgrpo.trainer.ema import EMA
from vgrpo.utils.atomic import write_atomically

log = logging.getLogger(__name__)

_STEP = re.compile(r"^step-(\d+)$")
_OPTIONS = StateDictOptions(ignore_frozen_params=True)
MANIFEST = "manifest.json"
TRAINER_STATE = "trainer_state.json"


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """This process's global RNG streams (torch CPU/CUDA, numpy, python) as tensors + string metadata."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors.update({f"cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["numpy.keys"] = torch.from_numpy(keys.astype(np.int64))
    version, internal, gauss_next = random.getstate()
    tensors["python.state"] = torch.tensor(internal, dtype=torch.int64)
    meta = {"numpy": json.dumps([kind, int(pos), int(has_gauss), float(cached)]),
            "python": json.dumps([version, gauss_next])}
    return tensors, meta


def save_rng_state(path: str | Path) -> None:
    tensors, meta = rng_state()
    save_file(tensors, str(path), metadata=meta)


def load_rng_state(path: str | Path) -> None:
    """Restore the streams written by `save_rng_state`; ValueError naming the file if it is malformed."""
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        kind, pos, has_gauss, cached = json.loads(meta["numpy"])
        version, gauss_next = json.loads(meta["python"])
        torch.set_rng_state(tensors["torch"])
        np.random.set_state((kind, tensors["numpy.keys"].numpy().astype(np.uint32), pos, has_gauss, cached))
        random.setstate((version, tuple(tensors["python.state"].tolist()), gauss_next))
    except Exception as exc:  # noqa: BLE001 - any malformation is reported the same way
        raise ValueError(f"{path} is not a valid RNG state file: {type(exc).__name__}: {exc}") from None
    cuda = [tensors[k] for k in sorted((k for k in tensors if k.startswith("cuda.")), key=lambda k: int(k[5:]))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def write_manifest(folder: Path) -> None:
    """manifest.json: {"files": {relative path: {"bytes": n, "sha256": hex}}} of every file in `folder`."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    entries = {str(p.relative_to(folder)): {"bytes": p.stat().st_size, "sha256": file_sha256(p)} for p in files}
    text = json.dumps({"files": entries}, indent=2) + "\n"
    write_atomically(folder / MANIFEST, lambda tmp: tmp.write_text(text))


def problem(path: str | Path) -> str | None:
    """Why checkpoint folder `path` must not be resumed, or None when it is whole and consistent.

    Checks every file against manifest.json (present, size, sha256) and that trainer_state.json's
    iteration and step are non-negative integers, the iteration matching a `step-<n>` folder name.
    """
    path = Path(path)
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        files = manifest["files"]
        if not isinstance(files, dict):
            raise TypeError("'files' is not an object")
    except FileNotFoundError:
        return f"no {MANIFEST} (it is written last: the save did not finish)"
    except (ValueError, KeyError, TypeError) as exc:
        return f"{MANIFEST} is malformed ({exc})"
    for name in (".metadata", TRAINER_STATE):
        if name not in files:
            return f"{MANIFEST} does not list {name}"
    for name, entry in files.items():
        f = path / name
        if not f.is_file() or Path(name).is_absolute() or ".." in Path(name).parts:
            return f"{name} is missing"
        if f.stat().st_size != entry.get("bytes"):
            return f"{name} has {f.stat().st_size} bytes, the manifest says {entry.get('bytes')}"
        if file_sha256(f) != entry.get("sha256"):
            return f"{name} does not match its sha256 in the manifest"
    try:
        state = json.loads((path / TRAINER_STATE).read_text())
        it, step = state.get("iteration"), state.get("step")
    except (ValueError, AttributeError) as exc:
        return f"{TRAINER_STATE} is malformed ({exc})"
    if not (isinstance(it, int) and isinstance(step, int) and it >= 0 and step >= 0):
        return f"{TRAINER_STATE} has iteration {it!r} and step {step!r}; both must be integers >= 0"
    m = _STEP.match(path.name)
    if m and int(m.group(1)) != it:
        return f"{TRAINER_STATE} says iteration {it}, the folder name says {int(m.group(1))}"
    return None


def saved_tensor_shapes(path: str | Path, key: str) -> dict[str, tuple[torch.Size, torch.dtype]]:
    """{name: (full shape, dtype)} of the tensors a DCP checkpoint holds under top-level `key`
    ("model", "ema"); {} when it holds none. Reads only the `.metadata` file."""
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    prefix = key + "."
    entries = FileSystemReader(str(path)).read_metadata().state_dict_metadata
    return {fqn[len(prefix):]: (m.size, m.properties.dtype) for fqn, m in entries.items()
            if fqn.startswith(prefix) and isinstance(m, TensorStorageMetadata)}


def read_tensors(path: str | Path, key: str) -> dict[str, torch.Tensor]:
    """The whole (unsharded) CPU tensors saved under `key` ("model": the trainable parameters,
    "ema": their EMA) in DCP checkpoint `path`, written by any number of processes; read in this
    process alone (no process group needed). Non-tensor entries (optimizer hyper-parameters) are
    never read, so nothing is unpickled."""
    tensors = {n: torch.empty(shape, dtype=dtype) for n, (shape, dtype) in saved_tensor_shapes(path, key).items()}
    if tensors:
        dcp.load({key: tensors}, checkpoint_id=str(path), no_dist=True)
    return tensors


def parameters_finite(model: nn.Module) -> bool:
    """Whether every trainable parameter is finite on every rank (one collective)."""
    ok = True
    for p in model.parameters():
        if p.requires_grad:
            local = p.to_local() if hasattr(p, "to_local") else p
            ok = ok and bool(torch.isfinite(local).all())
    flag = torch.tensor([0.0 if ok else 1.0])
    return float(all_reduce_mean(flag)) == 0.0


class Checkpointer:
    """Saves and restores model, optimizer, RNG streams and trainer state under `folder`."""

    def __init__(self, folder: str | Path, world: World, keep_last: int = 2):
        self.folder = Path(folder)
        self.world = world
        self.keep_last = keep_last

    def complete(self) -> list[Path]:
        """Complete checkpoints, oldest first."""
        if not self.folder.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.folder.iterdir() if (m := _STEP.match(p.name)) and p.is_dir()]
        return [p for _, p in sorted(found)]

    def latest(self) -> Path | None:
        done = self.complete()
        return done[-1] if done else None

    def remove_partial(self) -> None:
        """Delete `.tmp-*` / `.trash-*` folders left by an interrupted save or deletion (rank 0)."""
        if self.world.is_main and self.folder.is_dir():
            for p in [*self.folder.glob(".tmp-step-*"), *self.folder.glob(".trash-step-*")]:
                log.warning("removing leftover %s of an interrupted save or deletion", p)
                shutil.rmtree(p, ignore_errors=True)
        barrier()

    def _discard(self, path: Path) -> None:
        """Delete a checkpoint atomically: rename it to `.trash-*` (no longer a checkpoint), then remove."""
        trash = self.folder / f".trash-{path.name}"
        shutil.rmtree(trash, ignore_errors=True)
        path.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)

    def save(
        self,
        iteration: int,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        trainer_state: dict[str, Any],
        config: dict[str, Any],
        fingerprint: dict[str, Any] | None = None,
        ema: EMA | None = None,
    ) -> Path | None:
        """Write checkpoint `step-<iteration>` atomically; returns its path, or None when refused.

        A model with non-finite parameters is never written (the previous checkpoint stays).
        `fingerprint` (the settings that shape the trajectory) is stored as fingerprint.json; `ema`
        (if any) goes into the DCP state beside the model.
        """
        if not parameters_finite(model):
            log.error("not saving checkpoint at iteration %d: parameters are not finite", iteration)
            return None
        final = self.folder / f"step-{iteration:06d}"
        tmp = self.folder / f".tmp-step-{iteration:06d}"
        if self.world.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        barrier()
        model_sd, optim_sd = get_state_dict(model, optimizer, options=_OPTIONS)
        state = {"model": model_sd, "optim": optim_sd}
        if ema is not None:
            state["ema"] = ema.state_dict()
        dcp.save(state, checkpoint_id=str(tmp))
        save_rng_state(tmp / f"rng-rank{self.world.rank}.safetensors")
        barrier()
        if self.world.is_main:
            records = {TRAINER_STATE: trainer_state, "config.json": config, "fingerprint.json": fingerprint}
            for name, value in records.items():
                if value is not None:
                    (tmp / name).write_text(json.dumps(value, indent=2) + "\n")
            write_manifest(tmp)
            if final.exists():
                self._discard(final)
            tmp.rename(final)
            for old in self.complete()[: -self.keep_last]:
                self._discard(old)
        barrier()
        return final

    def load(
        self, path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer, ema: EMA | None = None
    ) -> dict[str, Any]:
        """Restore model, optimizer, `ema` and this rank's RNG streams; return the trainer state.

        A checkpoint saved without an EMA (optim.ema_decay changed on resume, an allowed change)
        restarts `ema` from the restored parameters.
        """
        path = Path(path)
        if not (path / TRAINER_STATE).is_file():
            raise FileNotFoundError(f"{path} is not a complete checkpoint (no trainer_state.json)")
        model_sd, optim_sd = get_state_dict(model, optimizer, options=_OPTIONS)
        state = {"model": model_sd, "optim": optim_sd}
        ema_saved = ema is not None and bool(saved_tensor_shapes(path, "ema"))
        if ema_saved:
            state["ema"] = ema.state_dict()
        try:
            dcp.load(state, checkpoint_id=str(path))
            set_state_dict(
                model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"],
                options=StateDictOptions(ignore_frozen_params=True, strict=False),
            )
        except (Exception, CheckpointException) as exc:  # noqa: BLE001 - DCP raises several kinds; the cause is kept
            causes = getattr(exc, "failures", None) or {self.world.rank: exc}  # DCP: rank -> (error, trace)
            errors = [c[0] if isinstance(c, tuple) else c for c in causes.values()]
            detail = "; ".join(f"{type(e).__name__}: {e}" for e in errors)
            raise RuntimeError(
                f"checkpoint {path} does not fit this model and optimizer (a changed model or fine-tuning "
                f"setting?): {detail[:500]}"
            ) from exc
        if ema_saved:
            ema.load_state_dict(state["ema"])
        elif ema is not None:
            log.warning("%s holds no EMA; the EMA restarts from its parameters", path)
            ema.restart(model)
        rng_file = path / f"rng-rank{self.world.rank}.safetensors"
        if rng_file.is_file():
            load_rng_state(rng_file)
        else:
            log.warning("%s has no RNG state for rank %d (saved with another world size)", path, self.world.rank)
        return json.loads((path / TRAINER_STATE).read_text())
