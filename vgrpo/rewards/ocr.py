"""OCR reward (as in Flow-GRPO): how well the text rendered in an image matches the quoted text.

The target is the prompt's metadata "text" when given (a JSONL prompt file's field), else the text
between double quotes in the prompt ('A sign that says "OPEN 24"').
Both strings are lower-cased with spaces removed; reward = 1 - min(edit distance, len(target)) /
len(target), and 1 when the target appears inside the recognised text. The default engine is
RapidOCR (ONNX runtime, models inside the wheel: the `ocr` extra); any callable
`engine(image uint8 [H, W, 3]) -> str` can replace it.
"""

from __future__ import annotations

import re
from typing import Callable, Sequence

import numpy as np
import torch

from vgrpo.rewards.pil import to_pil_images

_QUOTED = re.compile(r'"([^"]+)"')


def target_text(prompt: str) -> str:
    """The quoted text of an OCR prompt; ValueError naming the prompt if there is none."""
    match = _QUOTED.search(prompt)
    if match is None:
        raise ValueError(f'OCR prompt has no text in double quotes: {prompt!r}')
    return match.group(1)


def _metadata_text(metadata: dict, prompt: str) -> str:
    text = metadata["text"]
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f'OCR metadata "text" of prompt {prompt!r} must be a non-empty string, got {text!r}')
    return text


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions of one character)."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def text_match(recognised: str, target: str) -> float:
    """1 - normalised edit distance in [0, 1] after lower-casing and removing spaces."""
    rec = recognised.replace(" ", "").lower()
    tgt = target.replace(" ", "").lower()
    if not tgt:
        raise ValueError("OCR target text is empty")
    if tgt in rec:
        return 1.0
    return 1.0 - min(edit_distance(rec, tgt), len(tgt)) / len(tgt)


def rapidocr_engine() -> Callable[[np.ndarray], str]:
    """RapidOCR as an engine: the recognised lines joined in reading order."""
    try:
        from rapidocr_onnxruntime import RapidOCR
    except ImportError as exc:
        raise ImportError("the OCR reward needs RapidOCR: pip install 'vgrpo[ocr]'") from exc
    ocr = RapidOCR()

    def engine(image: np.ndarray) -> str:
        result, _ = ocr(image)
        return "".join(line[1] for line in (result or []))

    return engine


class OcrReward:
    """OCR text-match reward per image ([B] float32 in [0, 1])."""

    name = "ocr"

    def __init__(self, engine: Callable[[np.ndarray], str] | None = None):
        self.engine = engine or rapidocr_engine()

    def __call__(
        self, images: torch.Tensor, prompts: Sequence[str], *, metadata: Sequence[dict] | None = None
    ) -> torch.Tensor:
        metadata = metadata or [{}] * len(prompts)
        # fail on a bad prompt before any OCR work
        targets = [_metadata_text(m, p) if m and "text" in m else target_text(p) for p, m in zip(prompts, metadata)]
        scores = [
            text_match(self.engine(np.asarray(im)), target)
            for im, target in zip(to_pil_images(images), targets)
        ]
        return torch.tensor(scores, dtype=torch.float32)
