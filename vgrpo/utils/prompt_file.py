"""Read a prompt file and check it, naming the file and line of a problem.

Two formats, told apart by the file name:
- text (any name not ending in ".jsonl"): one prompt per line;
- JSON Lines ("*.jsonl"): one JSON object per line with a "prompt" string; its other fields are the
  prompt's metadata (`PromptRecord.metadata`), handed to the rewards that take it (an OCR target
  "text", a GenEval-style object list, a "category" for per-category evaluation, ...).

A prompt file must be a UTF-8 text file (no NUL bytes) holding at least one non-blank line, each
prompt at most `MAX_PROMPT_CHARS` characters. Blank lines are skipped and prompts are stripped. The
same prompt may appear twice only with the same metadata (rewards look metadata up by prompt).
Messages quote at most `QUOTE_CHARS` characters of a line, so a 10 MB line is never echoed whole.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_PROMPT_CHARS = 1000
QUOTE_CHARS = 60


class PromptFileError(ValueError):
    """A prompt file is missing, not UTF-8 text, empty, or has an over-long line."""


def quote(text: str, limit: int = QUOTE_CHARS) -> str:
    """repr of `text`, cut to `limit` characters with the full length named when longer."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


@dataclass(frozen=True)
class PromptRecord:
    """One prompt of a prompt file and its metadata ({} for a text file's lines)."""

    prompt: str
    metadata: dict[str, Any] = field(default_factory=dict)


def read_prompt_file(path: str | Path) -> list[str]:
    """The prompts of `path` (text or JSONL); PromptFileError naming the file (and line) otherwise."""
    return [r.prompt for r in read_prompt_records(path)]


def read_prompt_records(path: str | Path) -> list[PromptRecord]:
    """The prompts of `path` with their metadata; PromptFileError naming the file (and line) otherwise."""
    path = Path(path)
    if not path.is_file():
        raise PromptFileError(f"prompt file {path} does not exist (or is not a file)")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise PromptFileError(f"prompt file {path} cannot be read ({e.strerror or e})") from None
    nul = data.find(b"\0")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise PromptFileError(f"prompt file {path} line {line}: NUL byte (a binary file?)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise PromptFileError(
            f"prompt file {path} line {line}: not UTF-8 (byte 0x{data[e.start]:02x}); save the file as UTF-8"
        ) from None
    jsonl = path.name.endswith(".jsonl")
    records: list[PromptRecord] = []
    seen: dict[str, tuple[int, dict[str, Any]]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        where = f"prompt file {path} line {number}"
        record = _json_record(line, where) if jsonl else PromptRecord(line)
        if len(record.prompt) > MAX_PROMPT_CHARS:
            raise PromptFileError(
                f"{where}: {len(record.prompt)} characters, more than {MAX_PROMPT_CHARS} "
                f"(starts {quote(record.prompt)})"
            )
        first = seen.setdefault(record.prompt, (number, record.metadata))
        if first[1] != record.metadata:
            raise PromptFileError(
                f"{where}: prompt {quote(record.prompt)} appeared on line {first[0]} with other metadata; "
                "a prompt may repeat only with the same metadata"
            )
        records.append(record)
    if not records:
        raise PromptFileError(f"prompt file {path} holds no prompts (only blank lines)")
    return records


def _json_record(line: str, where: str) -> PromptRecord:
    """One JSONL line as a PromptRecord: a JSON object with a non-empty "prompt" string."""
    try:
        value = json.loads(line)
    except ValueError as e:
        raise PromptFileError(f"{where}: not valid JSON ({e}): {quote(line)}") from None
    if not isinstance(value, dict):
        raise PromptFileError(f"{where}: a JSONL prompt file needs one JSON object per line, got {quote(line)}")
    prompt = value.pop("prompt", None)
    if not isinstance(prompt, str) or not prompt.strip():
        raise PromptFileError(f'{where}: no "prompt" field holding a non-empty string: {quote(line)}')
    return PromptRecord(prompt.strip(), value)
