"""HPSv2.1 on transformers' CLIPModel against a reference of the original OpenCLIP forward.

Tiny random checkpoint in the original format (tests/tiny_reward_models.py). Tolerances: float32
scores to 1e-5 (same pixels) and 2e-3 through the PIL path of the original; bfloat16 to 3e-2.
"""

import json

import pytest
import torch

from tests import original_hpsv2 as original
from tests.tiny_reward_models import tiny_hpsv2_dir
from vgrpo.rewards.convert import main as convert_main
from vgrpo.rewards.hpsv2 import CHECKPOINT, HPSv2Reward
from vgrpo.rewards.open_clip_keys import convert_open_clip, open_clip_state_dict
from vgrpo.rewards.pil import to_pil_images

PROMPTS = ["a red circle", "two blue squares " * 30, "", "A Green TRIANGLE, left of a red circle!"]


@pytest.fixture(scope="module")
def images():
    return torch.rand(4, 3, 40, 53, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def reward():
    return HPSv2Reward(tiny_hpsv2_dir(), batch_size=3)


def _reference_model(tokenizer):
    state = torch.load(tiny_hpsv2_dir() / CHECKPOINT, weights_only=True)["state_dict"]
    model = original.OriginalCLIP(vocab_size=len(tokenizer.get_vocab()))
    model.load_state_dict(state)
    return model.eval()


def _reference_scores(reward, pixels, prompts):
    with torch.no_grad():
        return _reference_model(reward.tokenizer).score(pixels, original.tokenize(reward.tokenizer, prompts))


def test_scores_equal_the_original_forward_on_the_same_pixels(reward, images):
    scores = reward(images, PROMPTS)
    expected = _reference_scores(reward, reward.transform(images), PROMPTS)
    assert scores.shape == (4,) and scores.dtype == torch.float32
    torch.testing.assert_close(scores, expected, atol=1e-5, rtol=1e-5)


def test_scores_match_the_original_pipeline_end_to_end(reward, images):
    pixels = torch.stack([original.preprocess(im, 32) for im in to_pil_images(images)])
    torch.testing.assert_close(reward(images, PROMPTS), _reference_scores(reward, pixels, PROMPTS), atol=2e-3, rtol=0)


def test_bfloat16_is_close_to_the_float32_original(images):
    reward = HPSv2Reward(tiny_hpsv2_dir(), dtype=torch.bfloat16)
    expected = _reference_scores(reward, reward.transform(images), PROMPTS)
    torch.testing.assert_close(reward(images, PROMPTS), expected, atol=3e-2, rtol=0)


def test_converted_directory_scores_identically_and_holds_no_pickle(reward, images, tmp_path):
    convert_main(["hpsv2", str(tiny_hpsv2_dir()), str(tmp_path / "hps")])
    files = {p.name for p in (tmp_path / "hps").iterdir()}
    assert {"config.json", "model.safetensors", "vocab.json", "merges.txt"} <= files and CHECKPOINT not in files
    assert json.loads((tmp_path / "hps" / "config.json").read_text())["vision_config"]["num_attention_heads"] == 2
    converted = HPSv2Reward(tmp_path / "hps")
    torch.testing.assert_close(converted(images, PROMPTS), reward(images, PROMPTS), atol=1e-6, rtol=0)


def test_key_mapping_splits_in_proj_and_transposes_projections():
    state = _reference_model(HPSv2Reward(tiny_hpsv2_dir()).tokenizer).state_dict()
    hf = convert_open_clip(state)
    w = state["transformer.resblocks.1.attn.in_proj_weight"]
    d = w.shape[1]
    for i, name in enumerate("qkv"):
        assert torch.equal(hf[f"text_model.encoder.layers.1.self_attn.{name}_proj.weight"], w[i * d : (i + 1) * d])
    assert torch.equal(hf["visual_projection.weight"], state["visual.proj"].t())
    assert torch.equal(hf["text_projection.weight"], state["text_projection"].t())
    assert torch.equal(hf["vision_model.pre_layrnorm.weight"], state["visual.ln_pre.weight"])


def test_unknown_or_foreign_keys_are_refused():
    with pytest.raises(ValueError, match="not an OpenCLIP ViT checkpoint"):
        open_clip_state_dict({"state_dict": {"blip.visual_encoder.cls_token": torch.zeros(1)}})
    state = open_clip_state_dict({"state_dict": {"module.visual.conv1.weight": torch.zeros(1), "visual.attn_pool.q": torch.zeros(1)}})
    with pytest.raises(ValueError, match=r"no transformers CLIP counterpart: \['visual.attn_pool.q'\]"):
        convert_open_clip(state)


def test_missing_files_are_named_before_loading(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"HPS_v2.1_compressed.pt"):
        HPSv2Reward(tmp_path)
    torch.save({"state_dict": {}}, tmp_path / CHECKPOINT)
    with pytest.raises(FileNotFoundError, match=r"tokenizer.json\|vocab.json"):
        HPSv2Reward(tmp_path)


def test_checkpoint_is_read_without_executing_code(tmp_path):
    """weights_only=True refuses pickled objects that are not tensors / containers."""
    import shutil

    for name in ("vocab.json", "merges.txt"):
        shutil.copy(tiny_hpsv2_dir() / name, tmp_path / name)
    torch.save({"state_dict": {}, "hook": _Unsafe()}, tmp_path / CHECKPOINT)
    with pytest.raises(Exception, match="Weights only load failed"):
        HPSv2Reward(tmp_path)


class _Unsafe:
    pass
