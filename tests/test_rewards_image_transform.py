"""Device-side CLIP preprocessing against the PIL paths of the originals.

Stated tolerance (pixel units, before normalisation, on uint8-valued inputs): mean |diff| < 0.4/255
and max |diff| <= 1.5/255 against PIL (measured: mean 0.27-0.33/255, max 0.85-1.08/255) (transformers' CLIPImageProcessor, ImageReward's transform);
HPSv2's transform resizes a float tensor, which the device path reproduces to 1e-6.
"""

import pytest
import torch

from tests.original_hpsv2 import OPENAI_STD
from tests.original_hpsv2 import preprocess as hpsv2_preprocess
from tests.original_image_reward import preprocess as image_reward_preprocess
from vgrpo.rewards.hpsv2 import hpsv2_transform
from vgrpo.rewards.image_reward import image_reward_transform
from vgrpo.rewards.image_transform import ImageTransform, clip_processor_transform
from vgrpo.rewards.pil import to_pil_images

# (H, W, size): down- and up-sampling, odd excess (the crop rules differ), square, already at size.
SHAPES = [(40, 48, 32), (64, 37, 32), (21, 50, 32), (96, 96, 32), (32, 45, 32), (300, 211, 224), (512, 683, 224)]


def _uint8_images(h, w, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    smooth = torch.nn.functional.interpolate(torch.rand(batch, 3, h // 4 + 2, w // 4 + 2, generator=g), size=(h, w),
                                             mode="bilinear")
    noisy = (0.7 * smooth + 0.3 * torch.rand(batch, 3, h, w, generator=g)).clamp(0, 1)
    return (noisy * 255).round() / 255


def _pixel_diff(a, b):
    """|a - b| in [0, 1] pixel units of normalised tensors [.., 3, H, W]."""
    std = torch.tensor(OPENAI_STD).view(3, 1, 1)
    return ((a - b) * std).abs()


def _assert_pil_close(ours, theirs):
    diff = _pixel_diff(ours, theirs)
    assert ours.shape == theirs.shape
    assert diff.mean() < 0.4 / 255, f"mean diff {diff.mean() * 255:.3f}/255"
    assert diff.max() <= 1.5 / 255, f"max diff {diff.max() * 255:.3f}/255"


@pytest.mark.parametrize("h,w,size", SHAPES)
def test_matches_transformers_clip_image_processor(h, w, size, tmp_path):
    from transformers import CLIPImageProcessor

    processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    processor.save_pretrained(tmp_path)
    transform = clip_processor_transform(tmp_path)
    images = _uint8_images(h, w)
    theirs = processor(images=to_pil_images(images), return_tensors="pt")["pixel_values"]
    _assert_pil_close(transform(images), theirs)


@pytest.mark.parametrize("h,w,size", SHAPES)
def test_matches_image_reward_pil_transform(h, w, size):
    images = _uint8_images(h, w)
    theirs = torch.stack([image_reward_preprocess(im, size) for im in to_pil_images(images)])
    _assert_pil_close(image_reward_transform(size)(images), theirs)


@pytest.mark.parametrize("h,w,size", SHAPES)
def test_matches_hpsv2_float_tensor_transform(h, w, size):
    images = _uint8_images(h, w)
    theirs = torch.stack([hpsv2_preprocess(im, size) for im in to_pil_images(images)])
    torch.testing.assert_close(hpsv2_transform(size)(images), theirs, atol=1e-5, rtol=1e-5)


def test_crop_offsets_follow_each_original():
    """Excess 3 rows: transformers' crop starts at 3 // 2 = 1, torchvision's at round(1.5) = 2."""
    col = torch.arange(35.0).view(1, 1, 35, 1).expand(1, 3, 35, 32) / 255
    kwargs = dict(size=32, crop=(32, 32), mean=(0.0,) * 3, std=(1.0,) * 3, clamp=False)
    floor = ImageTransform(crop_offset="floor", **kwargs)(col)
    rounded = ImageTransform(crop_offset="round", **kwargs)(col)
    # 35 x 32 -> shorter edge already 32: no resize, only the crop.
    assert floor[0, 0, 0, 0] * 255 == pytest.approx(1.0) and rounded[0, 0, 0, 0] * 255 == pytest.approx(2.0)


def test_batch_equals_one_by_one_leaves_the_input_and_gives_the_dtype():
    images = _uint8_images(50, 41, batch=3)
    transform = ImageTransform(size=32, crop=(32, 32))
    untouched = images.clone()
    batch = transform(images, torch.bfloat16)
    assert torch.equal(images, untouched)  # the in-place steps work on a copy
    assert batch.dtype == torch.bfloat16 and batch.device == images.device
    single = torch.cat([transform(images[i : i + 1], torch.bfloat16) for i in range(3)])
    assert torch.equal(batch, single)


def test_quantize_rounds_to_uint8_levels_like_saved_images():
    images = torch.full((1, 3, 32, 32), 0.5019)  # 127.98 / 255 -> 128 / 255
    out = ImageTransform(size=32, crop=(32, 32), mean=(0.0,) * 3, std=(1.0,) * 3)(images)
    assert torch.allclose(out, torch.full_like(out, 128 / 255))


def test_bad_inputs_fail_with_the_problem_named(tmp_path):
    transform = ImageTransform(size=32, crop=(32, 32))
    with pytest.raises(ValueError, match=r"images must be \[B, 3, H, W\]"):
        transform(torch.rand(3, 32, 32))
    with pytest.raises(ValueError, match="must be float"):
        transform(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="crop .* larger than the resized image"):
        ImageTransform(size=16, crop=(32, 32))(torch.rand(1, 3, 40, 40))
    with pytest.raises(ValueError, match="crop_offset"):
        ImageTransform(size=32, crop=(32, 32), crop_offset="ceil")
    with pytest.raises(FileNotFoundError, match="no preprocessor_config.json or processor_config.json"):
        clip_processor_transform(tmp_path)


def test_pil_reference_sanity_the_tolerance_can_fail():
    """A bilinear resize is outside the bicubic tolerance: the comparison above is not vacuous."""
    images = _uint8_images(300, 211)
    bilinear = ImageTransform(size=224, crop=(224, 224), interpolation="bilinear", crop_offset="round")(images)
    theirs = torch.stack([image_reward_preprocess(im, 224) for im in to_pil_images(images)])
    with pytest.raises(AssertionError):
        _assert_pil_close(bilinear, theirs)

