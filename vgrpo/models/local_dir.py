"""Validate a local diffusers-format model directory before anything is loaded.

A FLUX.1-dev or SD 3.5 directory (as `huggingface-cli download` writes it) holds model_index.json
and one subfolder per pipeline component. `validate_model_dir` checks the layout in milliseconds
and raises `ModelDirError` naming the directory, what is missing or malformed, and the full list
of files expected, so a wrong `--model.path` fails at start instead of minutes into loading.

Files in the directory are data, never trusted as paths: a shard name read from an index's
`weight_map` must be a bare `*.safetensors` file name of the same folder (`../x`, `/x` and `a/b`
are refused), so no loader opens a file outside the directory because a JSON file said so. Symbolic
links the directory itself holds (as the hub cache writes them) are the owner's choice and are kept.
Malformed JSON (bad syntax, binary, nesting deep enough to overflow the parser, wrong types) raises
`ModelDirError` naming the file.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

from vgrpo.utils import hub


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


def read_json(path: Path) -> dict:
    """The JSON object in `path`; ModelDirError naming the file when it is unreadable or malformed."""
    try:
        data = json.loads(Path(path).read_bytes())
    except OSError as e:
        raise ModelDirError(f"{path} cannot be read ({e.strerror or e})") from None
    except (ValueError, RecursionError) as e:  # ValueError: bad JSON or not UTF-8
        reason = "nested too deeply" if isinstance(e, RecursionError) else str(e)[:200]
        raise ModelDirError(f"{path} is not valid JSON ({reason})") from None
    if not isinstance(data, dict):
        raise ModelDirError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


MAX_SAFETENSORS_HEADER = 100 * 2**20


def safetensors_header(path: str | Path) -> dict[str, dict]:
    """{tensor name: {"dtype", "shape", ...}} from a .safetensors file's header (the weights are not read).

    A safetensors file starts with an 8-byte little-endian header length and a JSON header. Raises
    ModelDirError naming the file when the header is not well formed (length, JSON, nesting, an
    entry without a string dtype and a list of non-negative integer dimensions).
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            raw = f.read(8)
            if len(raw) != 8:
                raise ModelDirError(f"{path} is not a safetensors file (shorter than its 8-byte header length)")
            (length,) = struct.unpack("<Q", raw)
            if length > MAX_SAFETENSORS_HEADER:
                raise ModelDirError(f"{path} is not a safetensors file (header length {length} bytes)")
            text = f.read(length)
    except OSError as e:
        raise ModelDirError(f"{path} cannot be read ({e.strerror or e})") from None
    try:
        header = json.loads(text)
    except (ValueError, RecursionError) as e:  # bad JSON, not UTF-8, or nested too deeply
        reason = "nested too deeply" if isinstance(e, RecursionError) else str(e)[:200]
        raise ModelDirError(f"{path} has a malformed safetensors header ({reason})") from None
    if not isinstance(header, dict):
        raise ModelDirError(f"{path} has a malformed safetensors header (a JSON {type(header).__name__}, not an object)")
    header.pop("__metadata__", None)
    for name, info in header.items():
        shape = info.get("shape") if isinstance(info, dict) else None
        if (not isinstance(shape, list) or not all(type(s) is int and s >= 0 for s in shape)
                or not isinstance(info.get("dtype"), str)):
            raise ModelDirError(
                f"{path} has a malformed safetensors header: tensor {name[:100]!r} needs a string \"dtype\" and a "
                "\"shape\" list of non-negative integers"
            )
    return header


def _shard_names(index: Path) -> list[str]:
    """The distinct shard file names of an index's weight_map, each a bare `*.safetensors` name."""
    weight_map = read_json(index).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise ModelDirError(f"{index} needs a non-empty \"weight_map\" object (tensor name -> shard file)")
    names: set[str] = set()
    for name in weight_map.values():
        if not (isinstance(name, str) and name.endswith(".safetensors") and Path(name).name == name
                and "\\" not in name and name != ".safetensors"):
            raise ModelDirError(
                f"{index}: weight_map names shard {str(name)[:200]!r}; a shard must be a *.safetensors file "
                "in the index's own folder (no path components)"
            )
        names.add(name)
    return sorted(names)


def weight_files(folder: Path) -> list[Path]:
    """The safetensors files of one weights subfolder (the shards of its indexes when it has any).

    Every index in the folder is checked (diffusers and transformers read different ones). Raises
    ModelDirError when an index is malformed, names a shard outside the folder or one not on disk.
    """
    indexes = sorted(folder.glob("*.safetensors.index.json"))
    if indexes:
        shards: set[str] = set()
        for index in indexes:
            names = _shard_names(index)
            missing = [s for s in names if not (folder / s).is_file()]
            if missing:
                raise ModelDirError(f"{index} names shards that are missing: {', '.join(missing)}")
            shards.update(names)
        return [folder / s for s in sorted(shards)]
    return sorted(folder.glob("*.safetensors"))


def _check_component(root: Path, c: Component) -> str | None:
    """None when `c` is complete, else what is wrong with it."""
    folder = root / c.name
    if not folder.is_dir():
        return f"missing folder {c.name}/"
    if c.kind == "weights":
        if not (folder / "config.json").is_file():
            return f"missing {c.name}/config.json"
        read_json(folder / "config.json")
        files = weight_files(folder)
        if not files:
            return f"no *.safetensors weights in {c.name}/"
        for file in files:
            safetensors_header(file)
    elif c.kind == "tokenizer":
        if not (folder / "tokenizer_config.json").is_file():
            return f"missing {c.name}/tokenizer_config.json"
        if not any((folder / f).is_file() for f in TOKENIZER_VOCAB_FILES):
            return f"no vocabulary file ({', '.join(TOKENIZER_VOCAB_FILES)}) in {c.name}/"
    else:
        if not (folder / "scheduler_config.json").is_file():
            return f"missing {c.name}/scheduler_config.json"
        read_json(folder / "scheduler_config.json")
    return None


def validate_model_dir(path: str | Path | None, kind: str) -> Path:
    """Check that `path` (a folder, or a hub id: `vgrpo.utils.hub`) is a complete diffusers-format
    directory of family `kind` ("flux" | "sd3").

    Returns the resolved directory. Raises ModelDirError naming the path, every problem found and
    the expected layout.
    """
    family = _family(kind)
    if path is None:
        raise ModelDirError(
            f"model family {kind!r} needs model.path: a local diffusers-format directory holding\n  "
            + expected_layout(kind)
        )
    try:
        path = hub.resolve(str(path), "model.path", hub.DIFFUSERS_FILES)
    except hub.HubIdError as exc:
        raise ModelDirError(str(exc)) from None
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
        cls = read_json(index).get("_class_name")
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
