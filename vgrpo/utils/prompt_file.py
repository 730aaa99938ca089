"""Read a prompt file (one prompt per line) and check it, naming the file and line of a problem.

A prompt file must be a UTF-8 text file (no NUL bytes) holding at least one non-blank line, each at
most `MAX_PROMPT_CHARS` characters. Blank lines are skipped and prompts are stripped. Messages quote
at most `QUOTE_CHARS` characters of a line, so a 10 MB line is never echoed whole.
"""

from __future__ import annotations

from pathlib import Path

MAX_PROMPT_CHARS = 1000
QUOTE_CHARS = 60


class PromptFileError(ValueError):
    """A prompt file is missing, not UTF-8 text, empty, or has an over-long line."""


def quote(text: str, limit: int = QUOTE_CHARS) -> str:
    """repr of `text`, cut to `limit` characters with the full length named when longer."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


def read_prompt_file(path: str | Path) -> list[str]:
    """The stripped non-blank lines of `path`; PromptFileError naming the file (and line) otherwise."""
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
    prompts = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if len(line) > MAX_PROMPT_CHARS:
            raise PromptFileError(
                f"prompt file {path} line {number}: {len(line)} characters, more than {MAX_PROMPT_CHARS} "
                f"(starts {quote(line)})"
            )
        if line:
            prompts.append(line)
    if not prompts:
        raise PromptFileError(f"prompt file {path} holds no prompts (only blank lines)")
    return prompts
