"""Model paths that may be Hugging Face hub ids (`org/name`), resolved through the local HF cache.

A path that exists is a local folder and is used as it is. A path that does not exist and has the
shape of a hub id (`black-forest-labs/FLUX.1-dev`: one `/`, letters, digits, `-`, `_`, `.`) names a
hub repository:
- online (HF_HUB_OFFLINE unset or 0): `huggingface_hub.snapshot_download(id, allow_patterns=...)`
  fetches the files a loader reads (or finds them in the cache) and returns the snapshot folder;
- offline (HF_HUB_OFFLINE=1, the default of vgrpo's entry points): the snapshot `refs/main` points
  to in the cache (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else ~/.cache/huggingface/hub), or a
  `HubIdError` saying to download it (`huggingface-cli download ID`) or to set HF_HUB_OFFLINE=0.
Anything else (./foo, /abs/foo, a URL, "none") is not an id; a missing one keeps its
"does not exist" message of the caller. Nothing is downloaded by `problem` (config validation).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")

DIFFUSERS_FILES = ("*.json", "*.txt", "*.model", "*/*.safetensors")
"""A diffusers pipeline: configs, tokenizer vocabularies and each component's safetensors (not the
single-file checkpoints some repositories keep at the top, nor *.bin / *.onnx duplicates)."""

WEIGHTS_FILES = ("*.json", "*.txt", "*.model", "*.safetensors", "*.pt", "*.pth")
"""A model folder (reward models, the shapes model): configs, vocabularies, weights without the
*.bin / *.msgpack / *.h5 / *.onnx duplicates of other frameworks."""


class HubIdError(FileNotFoundError):
    """A hub id that cannot be used offline: not a local folder and not in the local HF cache."""


def is_hub_id(path: str | os.PathLike | None) -> bool:
    """True when `path` does not exist and looks like `org/name` (not ./x, /x, ~/x, a URL or x/../y)."""
    if path is None:
        return False
    text = str(path)
    return (HUB_ID.fullmatch(text) is not None and ".." not in text and "--" not in text
            and not text.endswith((".", "-")) and not Path(text).expanduser().exists())


def offline() -> bool:
    """HF_HUB_OFFLINE set to a true value (1, true, yes, on), as huggingface_hub reads it."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def cache_dir() -> Path:
    """The hub cache folder as huggingface_hub finds it, read from the environment now."""
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")) / "huggingface"
    return Path(home).expanduser() / "hub"


def cached_snapshot(repo_id: str, revision: str = "main") -> Path | None:
    """The cache's snapshot folder of `repo_id` at `revision` (a branch in refs/ or a commit), None if absent."""
    repo = cache_dir() / f"models--{repo_id.replace('/', '--')}"
    ref = repo / "refs" / revision
    commit = ref.read_text().strip() if ref.is_file() else revision
    folder = repo / "snapshots" / commit
    return folder if commit and folder.is_dir() else None


def offline_message(repo_id: str, what: str) -> str:
    return (f"{what} {repo_id!r} is not a local folder, and as a Hugging Face hub id it is not in the local "
            f"cache ({cache_dir()}) while HF_HUB_OFFLINE=1: download it first (huggingface-cli download "
            f"{repo_id}) or set HF_HUB_OFFLINE=0 to let the run download it")


def problem(path: str | None, what: str) -> str | None:
    """For config validation (nothing downloaded): the message when `path` is a hub id that cannot
    be resolved offline, else None (local paths are the caller's to check)."""
    if not is_hub_id(path) or not offline() or cached_snapshot(str(path)) is not None:
        return None
    return offline_message(str(path), what)


def path_problem(path: str | None, what: str) -> str | None:
    """For config validation: None for no path, an existing one or a usable hub id; else the
    offline message of an id, or "WHAT 'path' does not exist"."""
    if path is None or Path(path).expanduser().exists():
        return None
    if is_hub_id(path):
        return problem(path, what)
    return f"{what} {path!r} does not exist"


def resolve(path: str | None, what: str, allow_patterns: Sequence[str] = WEIGHTS_FILES) -> str | None:
    """`path` itself, or for a hub id the local snapshot folder holding its `allow_patterns` files
    (downloaded when online); HubIdError offline when the cache lacks it."""
    if not is_hub_id(path):
        return path
    repo_id = str(path)
    if offline():
        folder = cached_snapshot(repo_id)
        if folder is None:
            raise HubIdError(offline_message(repo_id, what))
        return str(folder)
    from huggingface_hub import snapshot_download

    return snapshot_download(repo_id, cache_dir=str(cache_dir()), allow_patterns=list(allow_patterns))
