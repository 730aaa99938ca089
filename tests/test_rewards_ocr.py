"""OCR reward: target extraction, edit distance, and the real RapidOCR engine on rendered text."""

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFont

from vgrpo.rewards.ocr import OcrReward, edit_distance, target_text, text_match


def test_edit_distance_and_text_match():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3
    assert text_match("OPEN 24", "open24") == 1.0
    assert text_match("xxOPEN24xx", "open 24") == 1.0  # target contained in the recognised text
    assert text_match("OPEM 24", "open 24") == pytest.approx(1 - 1 / 6)
    assert text_match("", "open") == 0.0
    assert text_match("something much longer", "ab") == 0.0


def test_target_text_needs_quotes():
    assert target_text('A neon sign that says "OPEN 24" at night') == "OPEN 24"
    with pytest.raises(ValueError, match="no text in double quotes"):
        target_text("a sign that says open")


def _render(text: str) -> torch.Tensor:
    image = Image.new("RGB", (256, 64), "white")
    ImageDraw.Draw(image).text((10, 10), text, fill="black", font=ImageFont.load_default(size=32))
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div(255)


def test_rapidocr_reads_rendered_text_and_scores_it():
    pytest.importorskip("rapidocr_onnxruntime")
    images = torch.stack([_render("HELLO"), _render("WORLD")])
    scores = OcrReward()(images, ['a sign that says "HELLO"', 'a sign that says "HELLO"'])
    assert scores[0] == 1.0
    assert scores[1] < 0.5
