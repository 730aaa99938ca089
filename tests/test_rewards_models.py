"""Reward models loaded from local directories: tiny random CLIP models in the real layouts."""

import pytest
import torch

from tests.tiny_clip import make_tiny_clip_dir
from vgrpo.rewards.aesthetic import CLIP_SUBDIR, MLP_FILE, AestheticReward
from vgrpo.rewards.clip_similarity import ClipScoreReward, PickScoreReward
from vgrpo.rewards.mlp_head import ScoreMLP
from vgrpo.rewards.pil import to_pil_images
from vgrpo.rewards.registry import RewardSpec, build_reward, build_reward_set

PROMPTS = ["a red circle", "two blue squares", "a green triangle left of a red circle"]


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return make_tiny_clip_dir(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="module")
def images():
    return torch.rand(3, 3, 40, 48, generator=torch.Generator().manual_seed(0))


def _reference_logits(clip_dir, images, prompts):
    """logits_per_image of the plain transformers pipeline (PIL processor + CLIPModel.forward).

    The rewards preprocess on the device instead (within 1.1/255 of the processor's pixels,
    tests/test_rewards_image_transform.py), so scores agree to about 1e-2 on these tiny models."""
    from transformers import CLIPModel, CLIPProcessor

    processor = CLIPProcessor.from_pretrained(clip_dir, local_files_only=True)
    model = CLIPModel.from_pretrained(clip_dir, local_files_only=True).eval()
    inputs = processor(images=to_pil_images(images), text=prompts, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(**inputs)
    return out.logits_per_image.diagonal(), model.logit_scale.exp()


def test_pil_conversion_rounds_to_uint8_and_checks_shape():
    pil = to_pil_images(torch.tensor([[[[0.0, 1.0]], [[0.5, 0.2]], [[1.2, -0.1]]]]))
    assert pil[0].size == (2, 1) and pil[0].mode == "RGB"
    assert list(pil[0].getpixel((0, 0))) == [0, 128, 255] and list(pil[0].getpixel((1, 0))) == [255, 51, 0]
    with pytest.raises(ValueError, match=r"images must be \[B, 3, H, W\]"):
        to_pil_images(torch.rand(3, 8, 8))


def test_transform_gives_clip_sized_normalised_pixels(clip_dir, images):
    reward = PickScoreReward(clip_dir)
    pixels = reward.transform(images)
    assert pixels.shape == (3, 3, 32, 32)
    assert pixels.min() < -1.0 and pixels.max() > 1.0  # mean/std normalised, not [0, 1]


def test_pickscore_is_the_logit_scaled_cosine_of_the_public_pipeline(clip_dir, images):
    scores = PickScoreReward(clip_dir, batch_size=2)(images, PROMPTS)
    expected, _ = _reference_logits(clip_dir, images, PROMPTS)
    assert scores.shape == (3,) and scores.dtype == torch.float32
    torch.testing.assert_close(scores, expected, rtol=0, atol=2e-2)


def test_pickscore_on_the_same_pixels_is_the_model_exactly(clip_dir, images):
    from transformers import CLIPModel

    reward = PickScoreReward(clip_dir)
    model = CLIPModel.from_pretrained(clip_dir, local_files_only=True).eval()
    tokens = reward.tokenizer(PROMPTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(pixel_values=reward.transform(images), **tokens)
    torch.testing.assert_close(reward(images, PROMPTS), out.logits_per_image.diagonal(), rtol=1e-5, atol=1e-5)


def test_clipscore_is_100_times_clamped_cosine(clip_dir, images):
    scores = ClipScoreReward(clip_dir)(images, PROMPTS)
    logits, scale = _reference_logits(clip_dir, images, PROMPTS)
    torch.testing.assert_close(scores, 100 * (logits / scale).clamp(min=0), rtol=0, atol=1e-1)


def test_aesthetic_is_the_mlp_of_normalised_clip_image_embeddings(clip_dir, images, tmp_path):
    import shutil

    from transformers import CLIPModel

    shutil.copytree(clip_dir, tmp_path / CLIP_SUBDIR)
    torch.manual_seed(3)
    mlp = ScoreMLP(embed_dim=16)
    torch.save(mlp.state_dict(), tmp_path / MLP_FILE)
    scores = AestheticReward(tmp_path, batch_size=2)(images, PROMPTS)

    pixels = PickScoreReward(clip_dir).transform(images)
    clip = CLIPModel.from_pretrained(clip_dir, local_files_only=True).eval()
    with torch.no_grad():
        emb = clip.get_image_features(pixel_values=pixels).pooler_output
        expected = mlp.eval()(emb / emb.norm(dim=-1, keepdim=True)).squeeze(1)
    torch.testing.assert_close(scores, expected, rtol=1e-4, atol=1e-5)


def test_missing_directory_names_the_path_and_expected_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"pickscore model: directory .*nowhere does not exist"):
        PickScoreReward(tmp_path / "nowhere")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"is missing \['model.safetensors\|pytorch_model.bin'\]"):
        ClipScoreReward(tmp_path)
    with pytest.raises(FileNotFoundError, match="sac\\+logos\\+ava1-l14-linearMSE.pth"):
        AestheticReward(tmp_path)


@pytest.mark.parametrize("name,expected", [("hpsv2", "HPS_v2.1_compressed.pt"), ("imagereward", "ImageReward.pt")])
def test_converted_rewards_check_their_directory_first(name, expected, tmp_path):
    with pytest.raises(FileNotFoundError, match=expected):
        build_reward(name, str(tmp_path))


def test_registry_builds_weighted_sets_and_rejects_unknown_names(clip_dir, images):
    rewards = build_reward_set(
        [RewardSpec("pickscore", weight=2.0, path=str(clip_dir)), RewardSpec("clipscore", path=str(clip_dir))]
    )
    assert rewards.names == ["pickscore", "clipscore"] and rewards.weights == [2.0, 1.0]
    out = rewards(images, PROMPTS)
    assert out.scores.shape == (3, 2) and bool(out.valid.all())
    with pytest.raises(ValueError, match="unknown rewards \\['hps'\\]"):
        build_reward_set([RewardSpec("hps")])
