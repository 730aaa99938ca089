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


def test_metadata_text_is_the_target_and_the_quoted_text_the_fallback():
    from vgrpo.rewards.base import RewardSet

    reward = OcrReward(engine=lambda image: "OPEN 24")
    images = torch.rand(3, 3, 8, 8)
    prompts = ['a sign that says "CLOSED"', 'a sign that says "OPEN 24"', "a shop sign"]
    scores = RewardSet([reward])(images, prompts, metadata=[{"text": "OPEN 24"}, {}, {"text": "open"}]).scores[:, 0]
    assert scores.tolist() == [1.0, 1.0, 1.0]  # metadata wins over the quotes; no quotes needed with it
    assert reward(images[:1], prompts[:1]).tolist() == [text_match("OPEN 24", "CLOSED")] != [1.0]
    with pytest.raises(ValueError, match='OCR metadata "text"'):
        reward(images[:1], prompts[:1], metadata=[{"text": 3}])
