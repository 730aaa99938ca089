"""Validate a local diffusers-format model directory before anything is loaded.

A FLUX.1-dev or SD 3.5 directory (as `huggingface-cli download` writes it) holds model_index.json
and one subfolder per pipeline component. `validate_model_dir` checks the layout in milliseconds
and raises `ModelDirError` naming the directory, what is missing or malformed, and the full list
of files expected, so a wrong `--model.path` fails at start instead of minutes into loading.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


class ModelDirError(ValueError):
    """A model directory is missing, incomplete or malformed."""


@dataclass(frozen=True)
class Component:
    """One pipeline subfolder.

    name: subfolder name ("transformer", "text_encoder_2", ...).
    kind: "weights" (config.json + *.safetensors, sharded or not), "tokenizer"
        (tokenizer_config.json + vocabulary files) or "config" (scheduler_config.json).
    """

    name: str
    kind: str


FAMILIES: dict[str, dict] = {
    "flux": {
        "pipeline": ("FluxPipeline",),
        "components": (
            Component("transformer", "weights"),
            Component("vae", "weights"),
            Component("text_encoder", "weights"),
            Component("text_encoder_2", "weights"),
            Component("tokenizer", "tokenizer"),
            Component("tokenizer_2", "tokenizer"),
            Component("scheduler", "config"),
        ),
    },
    "sd3": {
        "pipeline": ("StableDiffusion3Pipeline",),
        "components": (
            Component("transformer", "weights"),
            Component("vae", "weights"),
            Component("text_encoder", "weights"),
            Component("text_encoder_2", "weights"),
            Component("text_encoder_3", "weights"),
            Component("tokenizer", "tokenizer"),
            Component("tokenizer_2", "tokenizer"),
            Component("tokenizer_3", "tokenizer"),
            Component("scheduler", "config"),
        ),
    },
}

# Any one of these vocabulary files makes a tokenizer folder loadable.
TOKENIZER_VOCAB_FILES = ("tokenizer.json", "vocab.json", "spiece.model")


def expected_layout(kind: str) -> str:
    """Human-readable list of the files a `kind` directory must hold (for error messages and docs)."""
    family = _family(kind)
    lines = ["model_index.json"]
    for c in family["components"]:
        if c.kind == "weights":
            lines.append(
                f"{c.name}/config.json + {c.name}/*.safetensors (or a *.safetensors.index.json and its shards)"
            )
        elif c.kind == "tokenizer":
            lines.append(f"{c.name}/tokenizer_config.json + one of {c.name}/{{{', '.join(TOKENIZER_VOCAB_FILES)}}}")
        else:
            lines.append(f"{c.name}/scheduler_config.json")
    return "\n  ".join(lines)


def _family(kind: str) -> dict:
    if kind not in FAMILIES:
        raise ModelDirError(f"unknown model family {kind!r}; expected one of {sorted(FAMILIES)}")
    return FAMILIES[kind]


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ModelDirError(f"{path} is not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise ModelDirError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def weight_files(folder: Path) -> list[Path]:
    """The safetensors files of one weights subfolder (the shards of an index when there is one).

    Raises ModelDirError when an index names a shard that is not on disk.
    """
    indexes = sorted(folder.glob("*.safetensors.index.json"))
    if indexes:
        shards = sorted(set(_read_json(indexes[0]).get("weight_map", {}).values()))
        if not shards:
            raise ModelDirError(f"{indexes[0]} has an empty weight_map")
        missing = [s for s in shards if not (folder / s).is_file()]
        if missing:
            raise ModelDirError(f"{indexes[0]} names shards that are missing: {', '.join(missing)}")
        return [folder / s for s in shards]
    return sorted(folder.glob("*.safetensors"))


def _check_component(root: Path, c: Component) -> str | None:
    """None when `c` is complete, else what is wrong with it."""
    folder = root / c.name
    if not folder.is_dir():
        return f"missing folder {c.name}/"
    if c.kind == "weights":
        if not (folder / "config.json").is_file():
            return f"missing {c.name}/config.json"
        _read_json(folder / "config.json")
        if not weight_files(folder):
            return f"no *.safetensors weights in {c.name}/"
    elif c.kind == "tokenizer":
        if not (folder / "tokenizer_config.json").is_file():
            return f"missing {c.name}/tokenizer_config.json"
        if not any((folder / f).is_file() for f in TOKENIZER_VOCAB_FILES):
            return f"no vocabulary file ({', '.join(TOKENIZER_VOCAB_FILES)}) in {c.name}/"
    else:
        if not (folder / "scheduler_config.json").is_file():
            return f"missing {c.name}/scheduler_config.json"
        _read_json(folder / "scheduler_config.json")
    return None


def validate_model_dir(path: str | Path | None, kind: str) -> Path:
    """Check that `path` is a complete diffusers-format directory of family `kind` ("flux" | "sd3").

    Returns the resolved directory. Raises ModelDirError naming the path, every problem found and
    the expected layout.
    """
    family = _family(kind)
    if path is None:
        raise ModelDirError(
            f"model family {kind!r} needs model.path: a local diffusers-format directory holding\n  "
            + expected_layout(kind)
        )
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ModelDirError(
            f"model directory {root} does not exist (or is not a directory); expected a diffusers-format "
            f"{kind} directory holding\n  " + expected_layout(kind)
        )
    problems: list[str] = []
    index = root / "model_index.json"
    if not index.is_file():
        problems.append("missing model_index.json")
    else:
        cls = _read_json(index).get("_class_name")
        if cls not in family["pipeline"]:
            expected = " or ".join(family["pipeline"])
            problems.append(f"model_index.json names pipeline {cls!r}, but family {kind!r} expects {expected}")
    for c in family["components"]:
        problem = _check_component(root, c)
        if problem:
            problems.append(problem)
    if problems:
        raise ModelDirError(
            f"model directory {root} is not a complete {kind} diffusers directory:\n  - "
            + "\n  - ".join(problems)
            + "\nexpected files:\n  "
            + expected_layout(kind)
        )
    return root.resolve()
