"""ImageReward on transformers' BLIP classes against a reference of the original BLIP / med.py forward.

Tiny random checkpoint in the original format (tests/tiny_reward_models.py). Tolerances: float32
scores to 1e-5 (same pixels) and 2e-2 through the PIL path of the original; bfloat16 to 5e-2.
"""

import json

import pytest
import torch

from tests import original_image_reward as original
from tests.tiny_reward_models import tiny_image_reward_dir
from vgrpo.rewards.blip_keys import convert_image_reward, image_reward_state_dict
from vgrpo.rewards.convert import main as convert_main
from vgrpo.rewards.image_reward import CHECKPOINT, MAX_PROMPT_TOKENS, MED_CONFIG, ImageRewardReward
from vgrpo.rewards.pil import to_pil_images

PROMPTS = ["a red circle", "two blue squares " * 20, "", "A Green TRIANGLE, left of a red circle!"]


@pytest.fixture(scope="module")
def images():
    return torch.rand(4, 3, 45, 38, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def reward():
    return ImageRewardReward(tiny_image_reward_dir(), batch_size=3)


def _reference_scores(reward, pixels, prompts):
    root = tiny_image_reward_dir()
    model = original.OriginalImageReward(json.loads((root / MED_CONFIG).read_text()))
    model.load_state_dict(torch.load(root / CHECKPOINT, weights_only=True))
    tokens = reward.tokenizer(prompts, padding="max_length", truncation=True, max_length=MAX_PROMPT_TOKENS,
                              return_tensors="pt")
    with torch.no_grad():
        return model.eval().score(pixels, tokens["input_ids"], tokens["attention_mask"])


def test_scores_equal_the_original_forward_on_the_same_pixels(reward, images):
    scores = reward(images, PROMPTS)
    expected = _reference_scores(reward, reward.transform(images), PROMPTS)
    assert scores.shape == (4,) and scores.dtype == torch.float32
    torch.testing.assert_close(scores, expected, atol=1e-5, rtol=1e-5)


def test_scores_match_the_original_pipeline_end_to_end(reward, images):
    pixels = torch.stack([original.preprocess(im, 32) for im in to_pil_images(images)])
    torch.testing.assert_close(reward(images, PROMPTS), _reference_scores(reward, pixels, PROMPTS), atol=2e-2, rtol=0)


def test_bfloat16_is_close_to_the_float32_original(images):
    reward = ImageRewardReward(tiny_image_reward_dir(), dtype=torch.bfloat16)
    expected = _reference_scores(reward, reward.transform(images), PROMPTS)
    torch.testing.assert_close(reward(images, PROMPTS), expected, atol=5e-2, rtol=0)


def test_tokenizer_is_blips_with_dec_and_enc_and_pads_to_35(reward):
    vocab_size = len((tiny_image_reward_dir() / "vocab.txt").read_text().split())
    assert reward.tokenizer.convert_tokens_to_ids(["[DEC]", "[ENC]"]) == [vocab_size, vocab_size + 1]
    ids = reward.tokenizer(["a red circle"], padding="max_length", truncation=True, max_length=35)["input_ids"][0]
    assert len(ids) == 35 and ids[0] == reward.tokenizer.cls_token_id and reward.tokenizer.unk_token_id not in ids


def test_converted_directory_scores_identically(reward, images, tmp_path):
    convert_main(["imagereward", str(tiny_image_reward_dir()), str(tmp_path / "ir")])
    files = {p.name for p in (tmp_path / "ir").iterdir()}
    assert {"config.json", "model.safetensors", "vocab.txt"} <= files and CHECKPOINT not in files
    converted = ImageRewardReward(tmp_path / "ir")
    torch.testing.assert_close(converted(images, PROMPTS), reward(images, PROMPTS), atol=1e-6, rtol=0)


def test_key_mapping_drops_unused_heads_and_refuses_unknown_keys():
    state = image_reward_state_dict(torch.load(tiny_image_reward_dir() / CHECKPOINT, weights_only=True))
    converted = convert_image_reward(state)
    assert not any("vision_proj" in k or "text_proj" in k or k.endswith("position_ids") for k in converted)
    assert torch.equal(converted["vision_model.embeddings.class_embedding"], state["blip.visual_encoder.cls_token"])
    assert convert_image_reward({**state, "blip.text_decoder.x": torch.zeros(1)}).keys() == converted.keys()
    bad = "blip.visual_encoder.blocks.0.attn.extra.weight"
    with pytest.raises(ValueError, match=rf"no counterpart: \['{bad}'\]"):
        convert_image_reward({**state, bad: torch.zeros(1)})
    with pytest.raises(ValueError, match="not an ImageReward checkpoint"):
        image_reward_state_dict({"visual.conv1.weight": torch.zeros(1)})


def test_missing_files_are_named_before_loading(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"ImageReward.pt"):
        ImageRewardReward(tmp_path)
    (tmp_path / "vocab.txt").write_text("[PAD]\n")
    torch.save({}, tmp_path / CHECKPOINT)
    with pytest.raises(FileNotFoundError, match=r"med_config.json"):
        ImageRewardReward(tmp_path)


def test_prompt_count_must_match(reward, images):
    with pytest.raises(ValueError, match="4 images but 1 prompts"):
        reward(images, ["x"])
